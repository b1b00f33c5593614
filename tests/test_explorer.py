"""The explorer's pure functions, and its widget wiring without a browser (tests/test_browser.py drives it in one)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from matplotlib.backends.backend_agg import FigureCanvasAgg

from moe_reduce import explorer as ex
from moe_reduce import launch_table
from moe_reduce.results import Row, Run, find_results, load_runs, newest
from moe_reduce.traffic import bytes_moved


def row(n_tokens: int, median_us: float, impl: str = "kernel_vec_k", dtype: str = "float32") -> Row:
    """A measured row at h = 2048, top_k = 8, residual and shared expert on."""
    b = bytes_moved(n_tokens, 8, 2048, dtype, gate_dtype="float32")
    return Row("GPU X", "cuda", impl, dtype, n_tokens, 2048, 8, True, True, b, median_us, median_us, median_us,
               b / median_us / 1e3, b / median_us / 1e3 / 10, 1e-8, 10, 4)


GPU_RUN = Run([row(1, 10.0), row(1024, 50.0), row(1024, 90.0, "kernel_scalar")],
              {"device": "GPU X", "gpu": "GPU X", "dtypes": ["float32"], "date": "2026-01-01",
               "ceiling_gbps": {"gpu": 1000.0}}, "gpu-x-2026-01-01")
CPU_RUN = Run([], {"device": "CPU Y", "gpu": None, "dtypes": ["float32"], "date": "2026-01-02",
                   "ceiling_gbps": {"cpu": 20.0}})


def test_devices_this_machine_then_gpu_runs_then_presets():
    found = ex.devices(CPU_RUN, [CPU_RUN, GPU_RUN])
    assert [d.label for d in found[:3]] == ["this machine: CPU Y", "GPU X, float32 run of 2026-01-01",
                                            "CPU Y, float32 run of 2026-01-02"]
    assert found[3:] == list(ex.PRESETS) and len({d.label for d in found}) == len(found)
    assert (found[0].gbps, found[1].gbps) == (20.0, 1000.0) and found[1].basis == "measured ceiling"
    assert ex.default_device(found) == found[0]  # this machine's run, as the notebook's comment says
    committed = ex.devices(None, [CPU_RUN, GPU_RUN])
    assert ex.default_device(committed) == committed[0] == found[1]  # else a GPU run holding the dtype
    assert ex.default_device(committed, "bfloat16") == committed[0]  # else the first device


def test_presets_are_datasheet_figures_with_sources():
    by = {d.label: d for d in ex.PRESETS}
    assert by["NVIDIA H100 SXM (datasheet)"].gbps == 3350 and by["NVIDIA H200 (datasheet)"].gbps == 4800
    assert all(d.basis == "datasheet peak" and d.source.startswith("https://") and d.run is None for d in ex.PRESETS)


def test_bytes_intensity_and_prediction():
    c = ex.Choice(n_tokens=1, h=2048, top_k=8, dtype="float32")
    assert ex.call_bytes(c) == 90_148 == (8 + 3) * 2048 * 4 + (8 + 1) * 4
    assert ex.call_bytes(c._replace(dtype="bfloat16")) == (8 + 3) * 2048 * 2 + (8 + 1) * 4  # gates stay float32
    assert ex.call_bytes(c._replace(residual=False, shared=False)) == (8 + 1) * 2048 * 4 + 8 * 4
    assert ex.intensity(c) == pytest.approx(2048 * (2 * 8 + 3) / 90_148)
    assert ex.predicted_us(c, ex.PRESETS[0]) == pytest.approx(90_148 / 3350e9 * 1e6)


def test_measured_point_and_curve_come_from_the_chosen_variant():
    d = ex.run_device(GPU_RUN, "gpu")
    c = ex.Choice(n_tokens=1024, variant="vec_k")
    assert ex.measured(c, d).median_us == 50.0 and ex.measured(c._replace(variant="scalar"), d).median_us == 90.0
    assert [r.n_tokens for r in ex.curve(c, d)] == [1, 1024]
    assert ex.measured(c._replace(n_tokens=2), d) is None and ex.measured(c, ex.PRESETS[1]) is None


def test_readout_says_what_each_number_rests_on():
    d = ex.run_device(GPU_RUN, "gpu")
    c = ex.Choice(n_tokens=1024)
    lines = ex.readout(c, d)
    assert lines["bytes"] == f"{ex.call_bytes(c):,} bytes per call"
    assert lines["predicted"] == f"{ex.call_bytes(c) / 1e6:,.2f} µs at 1,000.0 GB/s (measured ceiling)"
    assert lines["measured"].startswith("50.0 µs per call") and lines["source"] == "gpu-x-2026-01-01"
    assert "not measured in this run" in ex.readout(c._replace(h=1000), d)["measured"]
    assert ex.readout(c, ex.PRESETS[0])["measured"] == "no run: datasheet figures only"


def test_committed_h200_point_is_the_csv_row():
    run = newest(load_runs(find_results()), "NVIDIA H200", "float32")
    if run is None:
        pytest.skip("no committed NVIDIA H200 float32 run under results/")
    d = ex.run_device(run, "h200")
    (want,) = run.select(impl="kernel_vec_k", dtype="float32", n_tokens=4096, h=2048, top_k=8)
    assert ex.measured(ex.Choice(n_tokens=4096), d) == want


@pytest.mark.parametrize("variant,dtype,shape,threads", [("scalar", "float32", (2, 3, 8, 1), 16),
                                                          ("vec", "float32", (2, 3, 8, 4), 4),
                                                          ("vec_k", "bfloat16", (2, 3, 16, 8), 4)])
def test_thread_map_is_a_small_version_of_the_shape(variant, dtype, shape, threads):
    c = ex.Choice(variant=variant, dtype=dtype)
    assert ex.map_shape(c) == shape and ex.map_threads(c) == threads
    assert ex.map_shape(ex.Choice(n_tokens=1, h=1, top_k=1, variant="scalar")) == (1, 1, 1, 1)


def test_figures_render_and_mark_the_choice():
    d = ex.run_device(GPU_RUN, "gpu")
    fig = ex.throughput_figure(ex.Choice(n_tokens=1024), d)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["kernel_vec_k", "1,000 GB/s (measured ceiling)", "measured at this size"]
    assert "this size (not measured)" in ex.throughput_figure(ex.Choice(n_tokens=2), d).axes[0].get_legend_handles_labels()[1]
    tmap = ex.thread_map_figure(ex.Choice(variant="scalar"), 99)
    assert tmap.axes[0].get_title(loc="left").endswith("thread 15")  # clamped to the last thread
    assert ex.png(tmap).startswith(b"\x89PNG")


def test_variants_offered_are_the_kernels_and_auto():
    from moe_reduce import kernels  # imports MLX: here only, as the explorer itself does not

    assert ex.VARIANTS == ("auto", "scalar", "scalar_k", "vec", "vec_k", "row")
    assert ex.ROW_BYTES == {name: v.row_bytes for name, v in kernels.VARIANTS.items()}


def test_auto_launches_the_tables_entry_on_the_devices_card():
    entry = next(e for e in launch_table.load_table()["cards"]["H200"]
                 if (e["dtype"], e["n_tokens"], e["h"], e["top_k"]) == ("float32", 1, 2048, 8))
    c = ex.Choice(n_tokens=1, h=2048, top_k=8, variant="auto")
    h200 = ex.launch(c, ex.PRESETS[1])
    assert (h200.variant, h200.threads) == (entry["variant"], entry["threads"]) and "table: H200" in h200.source
    assert ex.launched(c, ex.PRESETS[1]).variant == entry["variant"]
    apple = ex.launch(c, ex.PRESETS[2])  # no card measured on Metal: the rule
    assert (apple.variant, apple.threads) == launch_table.RULE and apple.source.startswith("rule")
    assert ex.launch(c._replace(variant="vec"), ex.PRESETS[1]) == launch_table.Choice("vec", 256, "asked")
    assert ex.readout(c, ex.PRESETS[1])["launch"] == f"{h200.variant}, {h200.threads} threads per threadgroup " \
                                                      f"({h200.source})"
    with pytest.raises(KeyError):
        ex.map_shape(c)  # the map needs the variant that runs: launched(c, device)


def test_legend_covers_no_point():
    d = ex.run_device(GPU_RUN, "gpu")
    for n in (1, 1024, 16384):
        fig = ex.throughput_figure(ex.Choice(n_tokens=n), d)
        renderer = FigureCanvasAgg(fig).get_renderer()
        ax = fig.axes[0]
        assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def test_widget_opens_on_this_machine_and_steps_tokens_in_powers_of_two():
    box = ex.explorer(CPU_RUN, [GPU_RUN])
    controls = {c._dom_classes[0]: c for c in box.children[0].children[0].children}
    assert controls["moe-explorer-device"].value == "this machine: CPU Y"
    steps = controls["moe-explorer-n-tokens"].options
    assert steps[0] == 1 and all(b == 2 * a for a, b in zip(steps, steps[1:])) and steps[-1] == 16384
    assert controls["moe-explorer-variant"].options == ex.VARIANTS


def test_widget_shows_the_pure_functions_values_after_a_change():
    box = ex.explorer(None, [GPU_RUN])
    controls = {c._dom_classes[0]: c for c in box.children[0].children[0].children}
    readout = controls["moe-explorer-readout"]
    controls["moe-explorer-n-tokens"].value = 1024
    want = ex.readout(ex.Choice(n_tokens=1024), ex.run_device(GPU_RUN, "GPU X, float32 run of 2026-01-01"))
    assert all(value in readout.value for value in want.values())
    controls["moe-explorer-variant"].value = "scalar"
    assert "90.0 µs per call" in readout.value
    controls["moe-explorer-device"].value = ex.PRESETS[1].label
    assert ex.readout(ex.Choice(n_tokens=1024, variant="scalar"), ex.PRESETS[1])["predicted"] in readout.value


def test_import_runs_nothing_slow():
    code = "import sys, moe_reduce.explorer; print(sorted(m for m in ('ipywidgets', 'mlx.core') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
