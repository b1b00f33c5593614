"""moe_reduce.probes reads the committed H100 probes: per-call timeline figures, the best row per kernel, and the
Nsight Compute rows matched to round1.py's order (a row out of order is refused)."""
from __future__ import annotations

import dataclasses
import shutil

import pytest

from moe_reduce import plots, probes, results


def test_per_call_divides_by_kernels():
    raw = probes.load_json("timeline_summary.json")["ours (MLX) n=8192"]
    got = probes.per_call()["ours (MLX) n=8192"]
    assert got["idle"] == pytest.approx(raw["device_idle_us"] / raw["kernels"])
    assert got["busy"] + got["idle"] == pytest.approx(got["span"])


def test_best_is_the_fastest_over_threads():
    rows = probes.candidates()
    best = probes.best(rows)
    for r in rows:
        assert best[(r["dtype"], r["kernel"], r["n_tokens"])]["gpu_us"] <= r["gpu_us"]
    assert {k for _, k, _ in best} >= {"scalar_k", "vec_k", "triton"}


def test_empty_kernels_read_both_files():
    cases = [c for c, _, _ in probes.empty_kernels()]
    assert any("[no graphs]" in c for c in cases) and any("[no graphs]" not in c for c in cases)


def test_ncu_rows_follow_the_profiled_order():
    rows = probes.ncu_rows()
    assert len(rows) == 2 * len(probes.NCU_TOKENS) * (len(probes.NCU_CANDS) + 1)
    assert [r["kernel"] for r in rows[:6]] == list(probes.NCU_CANDS) + ["triton"]
    assert all(r["dram_read_bytes"] > 0 for r in rows)


def test_ncu_rows_refuse_a_row_out_of_order(tmp_path):
    lines = (probes.PROBES / "ncu.csv").read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]  # scalar_k and vec_k swapped
    (tmp_path / "ncu.csv").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"expected scalar_k float32"):
        probes.ncu_rows(tmp_path)


def test_ncu_label_matches_dtype():
    assert probes.ncu_label("mlx::custom_kernel_cand_row_bfloat16_t_2_8", "b4", "bfloat16")
    assert not probes.ncu_label("mlx::custom_kernel_cand_row_float_1_8", "b4", "bfloat16")


def test_small_calls_figure_draws_each_kernel_and_both_references():
    from moe_reduce import plots

    fig = plots.small_calls_figure(probes.best(probes.candidates()), 0.8, 3350.0, 8, 2048)
    assert [ax.get_title() for ax in fig.axes] == ["float32", "bfloat16"]
    for ax in fig.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels[:len(plots.SMALL_KERNELS)] == list(plots.SMALL_KERNELS)
        assert any(label.startswith("bytes /") for label in labels) and any("empty" in label for label in labels)


def test_committed_dram_csv_is_ncu_csv_converted(tmp_path):
    """ncu_dram.csv is write_dram_csv of the committed ncu.csv; the torch.compile rows are the timed kernel's:
    at 4096 tokens DRAM moved the op's minimum activation bytes, within 1%."""
    committed = (probes.PROBES / probes.DRAM_FILE).read_text()
    shutil.copy(probes.PROBES / "ncu.csv", tmp_path / "ncu.csv")
    assert probes.write_dram_csv(tmp_path).read_text() == committed
    tc = {p.dtype: p for p in plots.read_dram_counters(probes.PROBES / probes.DRAM_FILE) if p.label == "torch_compile"}
    for dtype, size in (("float32", 4), ("bfloat16", 2)):
        assert tc[dtype].dram_bytes == pytest.approx(4096 * 11 * 2048 * size, rel=0.01)


def test_work_ratio_sets_each_frameworks_one_thread_kernel_aside():
    """work_ratio = (ours - MLX empty) / (Triton - Triton empty), from one run's rows and its empty_gpu_us; with
    baseline "_store", the kernels that read their parameters and store."""
    zero = {f.name: 0 for f in dataclasses.fields(results.Row)}
    rows = [results.Row(**zero | dict(impl=i, dtype="float32", n_tokens=4, h=2048, top_k=8, gpu_us=us))
            for i, us in (("kernel_row", 3.0), ("triton", 2.0))]
    run = results.Run(rows, {"empty_gpu_us": {"mlx": 1.0, "triton": 0.5, "mlx_store": 1.25, "triton_store": 0.75}})
    assert probes.work_ratio(run, 4, 8) == (3.0 - 1.0) / (2.0 - 0.5)
    assert probes.work_ratio(run, 4, 8, baseline="_store") == (3.0 - 1.25) / (2.0 - 0.75)


def test_time_model_is_exact_where_fitted_and_adds_bytes_at_the_ceiling():
    """fit_time_model puts the one-token row exactly on the model; each further byte costs 1 / ceiling."""
    runs = results.load_runs(results.find_results())
    run = probes.small_run(runs, "H100", "float32")
    model = probes.fit_time_model(run)
    n1, meas1, pred1 = probes.model_rows(run)[0]
    assert n1 == 1 and pred1 == pytest.approx(meas1)
    assert model.us(2_000_000) - model.us(1_000_000) == pytest.approx(1e6 / run.meta["ceiling_gbps"]["gpu"] / 1e3)


def test_gap_rows_subtract_gpu_time():
    """Each gap run row's gaps are its wall times less its GPU time; both contenders at every size and dtype."""
    rows = probes.gap_rows()
    for r in rows.values():
        assert r["gap_us"] == pytest.approx(r["wall_us"] - r["gpu_us"])
        assert r["gap_long_us"] == pytest.approx(r["wall_long_us"] - r["gpu_us"])
    assert {(d, n) for i, d, n in rows if i == "kernel_auto"} == {(d, n) for i, d, n in rows if i == "triton"}


def test_timeline_cases_frame_a_batch_end(tmp_path):
    """The 8192-token windows hold the batch's last kernel end at `before_us`, and the figure draws every case."""
    cases = probes.timeline_cases(before_us=300, after_us=500)
    assert len(cases) == 6
    for label, (found, lo, hi) in cases.items():
        assert any(s.kind == "kernel" and lo <= s.start_us < hi for s in found), label
    fig = plots.timeline_figure(cases, "test card")
    assert len(fig.axes) == 6


def test_ncu16k_rows_named_by_order_and_checked(tmp_path):
    """The 16384-token counters carry impl and dtype by their place; a row out of place is refused."""
    rows = probes.ncu16k_rows()
    assert [(r["impl"], r["dtype"]) for r in rows] == list(probes.NCU16K_ORDER)
    assert all(r["dram_read_bytes"] > 0 for r in rows)
    lines = (probes.GAP_RUN / "ncu16k.csv").read_text().splitlines()
    (tmp_path / "ncu16k.csv").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match="is not kernel_auto float32"):
        probes.ncu16k_rows(tmp_path)


def test_write_dram16k_csv_reads_back_as_dram_points(tmp_path):
    """The 16384-token counters as roofline points: the committed file is what the writer gives, labels and all."""
    shutil.copy(probes.GAP_RUN / "ncu16k.csv", tmp_path / "ncu16k.csv")
    points = plots.read_dram_counters(probes.write_dram16k_csv(tmp_path))
    assert [p.label for p in points] == ["kernel_scalar_k", "triton", "kernel_vec", "triton"]
    assert (tmp_path / probes.DRAM_FILE).read_text() == (probes.GAP_RUN / probes.DRAM_FILE).read_text()
