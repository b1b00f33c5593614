"""Tests of the lesson figures added to moe_reduce.plots: the log-axis throughput figure and the roofline drawn
from Nsight Compute's DRAM bytes (on synthetic counters: the real ones are not committed yet)."""

import csv

import matplotlib
import pytest

matplotlib.use("Agg")

from moe_reduce import plots, results  # noqa: E402

CEILING = 4568.0  # GB/s


def write_counters(path, rows, columns=plots.COUNTER_COLUMNS):
    """A counters CSV with the given columns."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return path


def synthetic(path):
    """Launches at 1..16384 tokens whose time is a 3 µs floor plus their bytes at 90% of the ceiling."""
    rows = []
    for dtype, size in (("float32", 4), ("bfloat16", 2)):
        for t in (1, 64, 1024, 16384):
            nbytes = t * 11 * 2048 * size
            rows.append(("kernel_auto", t, dtype, nbytes, 3000 + nbytes / (0.9 * CEILING)))
    return write_counters(path, rows)


def test_read_dram_counters_and_rates(tmp_path):
    points = plots.read_dram_counters(synthetic(tmp_path / "ncu.csv"))
    assert len(points) == 8 and {p.dtype for p in points} == {"float32", "bfloat16"}
    big = max(points, key=lambda p: p.dram_bytes)
    assert big.gbps == pytest.approx(big.dram_bytes / big.gpu_time_ns)
    assert 0.85 * CEILING < big.gbps < 0.9 * CEILING   # the floor costs a little at 16384 tokens
    assert min(points, key=lambda p: p.dram_bytes).gbps < 0.05 * CEILING


def test_read_dram_counters_names_missing_columns(tmp_path):
    path = write_counters(tmp_path / "bad.csv", [("k", 1, "float32", 10)], ("label", "n_tokens", "dtype", "dram_bytes"))
    with pytest.raises(ValueError, match=r"bad.csv: .*missing gpu_time_ns"):
        plots.read_dram_counters(path)


def test_read_dram_counters_refuses_zero_time(tmp_path):
    path = write_counters(tmp_path / "zero.csv", [("k", 1, "float32", 10, 0)])
    with pytest.raises(ValueError, match="must be positive"):
        plots.read_dram_counters(path)


def test_roofline_draws_points_roof_and_ceiling(tmp_path):
    points = plots.read_dram_counters(synthetic(tmp_path / "ncu.csv"))
    fig = plots.roofline(points, CEILING, "synthetic card", datasheet_gbps=4800.0)
    left, right = fig.axes[:2]
    assert len(left.lines) == 3 and len(right.lines) == 4       # 2 series + roof; 2 series + ceiling + datasheet
    roof = left.lines[-1]
    x, y = roof.get_data()
    assert y[-1] == pytest.approx(x[-1] / CEILING / 1e3)         # µs = bytes / (GB/s) / 1e3
    assert right.lines[2].get_ydata()[0] == CEILING
    assert {t.get_text() for t in right.texts} == {"1", "64", "1024", "16384"} and len(right.texts) == 8
    # no point lies under the roof (faster than the ceiling allows): the synthetic launches run at 90% of it
    for line in left.lines[:2]:
        bx, by = line.get_data()
        assert all(t >= b / CEILING / 1e3 for b, t in zip(bx, by))
    plots.export(fig, tmp_path, "roofline")
    assert (tmp_path / "roofline.png").stat().st_size > 10_000


def test_tokens_log_figure_tells_every_line_apart():
    runs = [r for r in results.load_runs(results.find_results())
            if r.meta["gpu"] == "NVIDIA H200" and "float32" in r.meta["dtypes"] and r.meta.get("op", "combine") == "combine"]
    if not runs:
        pytest.skip("no committed H200 float32 run under results/")
    run = max(runs, key=lambda r: len(r.meta["impls"]))  # the run with every contender
    fig = plots.tokens_log_figure(run, "float32")
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        drawn = [ln for ln in ax.lines if ln.get_label() in plots.LINE_STYLES]
        styles = [(ln.get_color(), ln.get_marker(), ln.get_linestyle()) for ln in drawn]
        assert len(drawn) >= 6 and len(set(styles)) == len(styles)
    assert len(set(plots.LINE_STYLES.values())) == len(plots.LINE_STYLES)
