"""The benchmark harness: timer statistics, byte arithmetic, saving and loading, the quick sweep on the CPU,
deterministic figure export, and the command line."""
from __future__ import annotations

import itertools
import subprocess
import sys
import time

import numpy as np
import pytest

from moe_reduce import bench, plots
from moe_reduce.check import tolerance
from moe_reduce.traffic import bytes_moved


class FakeClock:
    """A clock that moves only when a fake call says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_timer_fake_clock_exact():
    """Constant 2^-10 s calls give exactly that per call, in batches long enough to fill batch_s (2^-6 s)."""
    clock = FakeClock()
    cfg = bench.TimerConfig(warmup=2, repeats=7, batch_s=2**-6)
    t = bench.time_calls(lambda i, prev: clock.spend(2**-10), bench.sync_none, cfg=cfg, clock=clock)
    assert t.median == t.p20 == t.p80 == 2**-10
    assert t.calls == 16 and len(t.samples) == 7


def test_timer_percentiles_and_rotation():
    """Batch means that vary give NumPy's 20/50/80th percentiles; every input set is visited."""
    clock, seen = FakeClock(), []
    costs = itertools.cycle([1e-3, 2e-3, 3e-3, 4e-3, 5e-3])

    def call(i: int, prev) -> None:
        seen.append(i)
        clock.spend(next(costs))

    cfg = bench.TimerConfig(warmup=0, repeats=10, batch_s=1e-9, max_s=1e9)
    t = bench.time_calls(call, bench.sync_none, n_sets=7, cfg=cfg, clock=clock)
    assert t.calls == 1
    assert (t.p20, t.median, t.p80) == tuple(np.percentile(t.samples, [20, 50, 80]))
    assert t.p20 < t.median < t.p80
    assert set(seen[:7]) == set(range(7)) and max(seen) == 6


def test_timer_chains_calls_and_flushes_in_groups():
    """Each call gets the previous call's output (None first in a batch); flush sees every 4th output and the last."""
    clock, log, flushed = FakeClock(), [], []

    def call(i: int, prev):
        log.append(prev)
        clock.spend(1e-3)
        return len(log)  # this call's "output": its position in the log

    cfg = bench.TimerConfig(warmup=0, repeats=3, batch_s=10e-3, max_s=1e9)
    t = bench.time_calls(call, bench.sync_none, cfg=cfg, clock=clock, flush=lambda outs: flushed.extend(outs), group=4)
    assert t.calls == 10 and t.median == pytest.approx(1e-3)
    last = log[-10:]  # the final timed batch
    assert last[0] is None and last[1:] == list(range(len(log) - 9, len(log)))
    start = len(log) - 10
    assert flushed[-3:] == [start + 4, start + 8, start + 10]


def test_chained_replaces_residual_then_y_shared():
    """The previous output takes the residual's place, or y_shared's without a residual, or nothing."""
    args = lambda res, shared: ("w", "y", "s" if shared else None, "ys" if shared else None, "r" if res else None)
    for (res, shared), slot in {(True, True): 4, (True, False): 4, (False, True): 3, (False, False): None}.items():
        call, linked = bench.chained(lambda *a: a, [args(res, shared)])
        assert linked == (slot is not None)
        assert call(0, None) == args(res, shared)
        expected = list(args(res, shared))
        if slot is not None:
            expected[slot] = "prev"
        assert call(0, "prev") == tuple(expected)


def test_timer_sleep():
    """A 2 ms sleep measures between 2 and 10 ms per call on the wall clock."""
    cfg = bench.TimerConfig(warmup=1, repeats=3, batch_s=0.01)
    t = bench.time_calls(lambda i, prev: time.sleep(0.002), bench.sync_none, cfg=cfg)
    assert 0.002 <= t.p20 <= t.median <= t.p80 < 0.01


def test_bytes_and_gbps():
    """h=2048, top_k=8, 1 token, float32, residual, float32 gates: 90148 bytes; GB/s is bytes / s / 1e9."""
    expected = (8 * 2048 + 2 * 2048) * 4 + (8 + 1) * 4 + 2048 * 4
    assert bench.problem_bytes(1, 2048, 8, "float32", True) == expected == 90148
    assert bench.problem_bytes(4, 2048, 8, "bfloat16", False) == bytes_moved(4, 8, 2048, "bfloat16", False, "float32")
    assert bench.gbps(2_000_000_000, 0.5) == 4.0


def test_rotation_sets():
    """Sets rotate until their bytes pass the rotation size, within max_sets; at least one."""
    b = bench.Budget(rotation_bytes=1000, max_sets=8, size_limit=10**6, ceiling_bytes=10**6)
    assert [bench.n_sets(n, b) for n in (10, 300, 1000, 5000)] == [8, 4, 1, 1]


def test_plan_skips_over_budget():
    """A size over the memory budget is listed as skipped, not planned."""
    s = bench.default_settings(quick=True, dtypes=("float32",))
    s.budgets = {p: bench.Budget(1 << 20, 4, 1 << 20, 1 << 20) for p in s.budgets}
    tasks, skipped = bench.plan_tasks(s, {"numpy": bench.numpy_impl()})
    assert all(bench.problem_bytes(z.n_tokens, z.h, z.top_k, "float32", True) <= 1 << 20 for z, _, _ in tasks)
    assert tasks and skipped and "numpy" in skipped[0]


def _row(**kw) -> bench.Row:
    """A row with plausible values, overridden by keywords."""
    base = dict(device="dev", backend="b", impl="mlx", dtype="float32", n_tokens=4, h=2048, top_k=8, residual=True,
                shared=True, bytes=1234, median_us=1.5, p20_us=1.25, p80_us=2.0, gbps=0.1 / 3, pct_of_ceiling=12.5,
                rel_error=3e-8, calls=10, sets=2)
    return bench.Row(**{**base, **kw})


def test_csv_json_round_trip(tmp_path):
    """save_run then load_run gives back equal rows (floats exact) and metadata."""
    run = bench.Run([_row(), _row(impl="numpy", residual=False, median_us=1 / 7)], {"device": "dev", "x": [1, 2]})
    bench.save_run(run, tmp_path / "r")
    back = bench.load_run(tmp_path / "r")
    assert back.rows == run.rows and back.meta == run.meta
    assert [r.impl for r in bench.load_runs(tmp_path)[0].rows] == ["mlx", "numpy"]
    assert bench.load_runs(tmp_path / "missing") == []


@pytest.fixture(scope="module")
def quick_run() -> bench.Run:
    """One quick sweep on this machine (CPU here), float32 and bfloat16."""
    impls = bench.available_impls(quick=True)
    return bench.run_sweep(impls, bench.default_settings(quick=True, progress=False))


def test_quick_sweep_rows(quick_run):
    """Every available impl has a row at every quick size it fits, with positive times and a passing check."""
    run, plan = quick_run, bench.QUICK_PLAN
    assert run.meta["failures"] == [] and run.meta["skipped"] == []
    assert all(v > 0 for v in run.meta["ceiling_gbps"].values())
    for name in run.meta["impls"]:
        impl = bench.available_impls(quick=True)[name]
        for size, everyone in plan.sizes().items():
            if impl.fits(size) and (everyone or name.startswith("kernel_")):
                for dtype in set(impl.dtypes) & {"float32", "bfloat16"}:
                    assert len(run.select(impl=name, dtype=dtype, n_tokens=size.n_tokens, h=size.h,
                                          top_k=size.top_k)) == 1, (name, dtype, size)
    for r in run.rows:
        assert 0 < r.p20_us <= r.median_us <= r.p80_us and r.gbps > 0 and r.pct_of_ceiling > 0
        assert r.rel_error < tolerance(r.dtype)
        assert r.bytes == bench.problem_bytes(r.n_tokens, r.h, r.top_k, r.dtype, r.residual)
    assert {"numpy", "mlx", "mlx_compile"} <= {r.impl for r in run.rows}


def test_plot_export_deterministic(quick_run, tmp_path):
    """plot_run writes PNG and SVG for each figure; a second export gives byte-identical files."""
    first = plots.plot_run(quick_run, tmp_path / "a")
    second = plots.plot_run(quick_run, tmp_path / "b")
    assert {p.suffix for p in first} == {".png", ".svg"}
    assert {p.stem for p in first} >= {"tokens_float32", "hidden_float32", "latency_float32", "tokens_bfloat16"}
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert b"<dc:date>" not in (tmp_path / "a" / "tokens_float32.svg").read_bytes()


def test_cli_bench_quick(tmp_path):
    """`python -m moe_reduce bench --quick --out DIR` writes CSV, JSON and figures; `plot DIR` redraws them."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "moe_reduce", "bench", "--quick", "--out", str(out), "--dtypes", "float32",
           "--impls", "numpy,mlx", "--sweeps", "tokens", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout and (out / "bench.csv").exists() and (out / "tokens_float32.svg").exists()
    run = bench.load_run(out)
    assert {r.impl for r in run.rows} == {"numpy", "mlx"} and run.meta["command"].startswith("python -m moe_reduce")
    (out / "tokens_float32.svg").unlink()
    redo = subprocess.run([sys.executable, "-m", "moe_reduce", "plot", str(out)], capture_output=True, text=True)
    assert redo.returncode == 0, redo.stderr
    assert (out / "tokens_float32.svg").exists()
