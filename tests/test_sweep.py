"""The sweep: its plan and budgets, then one quick run through the command line on this machine, whose rows,
metadata and figures are checked (the only quick sweep in the test suite)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moe_reduce import kernels, plots, results, sweep
from moe_reduce.check import tolerance
from moe_reduce.dtypes import ITEMSIZE, dtype_name
from moe_reduce.impls import available_impls, torch_support, numpy_impl


def test_bytes_hand_counted():
    """h=2048, top_k=8, 1 token, float32, residual, float32 gates: 8 expert rows + y_shared + residual read,
    out written, plus 8 weights and 1 gate logit."""
    assert sweep.problem_bytes(1, 2048, 8, "float32", True) == (8 + 2 + 1) * 2048 * 4 + 9 * 4 == 90148
    assert sweep.problem_bytes(4, 2048, 8, "bfloat16", False) == 4 * ((8 + 1 + 1) * 2048 * 2 + 9 * 4)


def test_rotation_sets():
    """Sets rotate until their bytes pass the rotation size, within max_sets; at least one."""
    b = sweep.Budget(rotation_bytes=1000, max_sets=8, size_limit=10**6, ceiling_bytes=10**6)
    assert [sweep.n_sets(n, b) for n in (10, 300, 1000, 5000)] == [8, 4, 1, 1]


def test_plan_skips_over_budget():
    """A size over the memory budget is listed as skipped, not planned."""
    s = sweep.default_settings(quick=True, dtypes=("float32",))
    s.budgets = {p: sweep.Budget(1 << 20, 4, 1 << 20, 1 << 20) for p in s.budgets}
    tasks, skipped = sweep.plan_tasks(s, {"numpy": numpy_impl()})
    planned = {z for z, _, _ in tasks}
    assert planned and all(sweep.problem_bytes(z.n_tokens, z.h, z.top_k, "float32", True) <= 1 << 20 for z in planned)
    over = [z for z, role in s.plan.sizes().items() if sweep.runs_at(role, "numpy") and z not in planned]
    assert over and len(skipped) == len(over) and all("numpy" in line and "over the budget" in line for line in skipped)


@pytest.mark.parametrize("kw, message", [
    (dict(sweeps=("tokens", "bogus")), r"sweeps: expected one or more of \['tokens', 'hidden', 'heatmap'\], got \['bogus'\]"),
    (dict(dtypes=("foo",)), r"dtypes: expected one or more of \['float32', 'float16', 'bfloat16'\], got \['foo'\]"),
    (dict(dtypes=()), r"dtypes: expected one or more"),
    (dict(graph_calls=0), r"graph_calls: expected an integer >= 1, got 0"),
])
def test_settings_reject_bad_values(kw, message):
    with pytest.raises(ValueError, match=message):
        sweep.default_settings(quick=True, **kw)


@pytest.mark.parametrize("op", ["combine", "fused"])
@pytest.mark.parametrize("size", [sweep.Size(1, 1, 1), sweep.Size(3, 257, 10), sweep.Size(1, 1000, 8)])
def test_float16_rows_on_the_host_path(op, size):
    """What `--dtypes float16` sweeps: our kernels on the host path take float16 inputs, return float16 outputs,
    and the sweep's check against the float64 oracle (of the float16-rounded inputs) passes at awkward sizes."""
    s = sweep.default_settings(quick=True, dtypes=("float16",), op=op)
    assert s.dtypes == ("float16",)
    case = sweep.SizeCase(size, "float16", residual=True, op=op)
    ours = [i for i in available_impls(quick=True, op=op).values() if i.backend == "host"]
    assert len(ours) == {"combine": 1 + len(kernels.VARIANTS), "fused": 2}[op]  # auto and each variant; fused, two-step
    for impl in ours:
        fn = impl.build("float16")
        inputs = case.sets(impl, 1)[0]
        outs = fn(*inputs)
        assert {dtype_name(a) for a in (inputs.y_expert, *(outs if op == "fused" else (outs,)))} == {"float16"}
        row = sweep.measure(impl, fn, case, s, sweep.Limits("cpu", 10.0))
        assert row.dtype == "float16" and row.rel_error < tolerance("float16"), (impl.name, row.rel_error)
        assert row.rel_error > 0  # rounded to float16: not the float64 values


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory) -> Path:
    """`python -m moe_reduce bench --quick --out DIR` on this machine, every implementation present, run from
    another directory (as an installed package would be)."""
    out = tmp_path_factory.mktemp("bench") / "run"
    cmd = [sys.executable, "-m", "moe_reduce", "bench", "--quick", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    assert f"wrote 18 files to {out}/" in done.stdout  # CSV, JSON, 4 figures × 2 dtypes × (PNG, SVG)
    return out


def test_quick_run_rows(quick_dir):
    """Every implementation has one row at every quick size it fits, each checked against the oracle, with
    bytes from the hand formula and GB/s and % of the ceiling consistent with its time."""
    run = results.load_run(quick_dir)
    plan, impls = sweep.QUICK_PLAN, available_impls(quick=True)
    assert run.meta["failures"] == [] and run.meta["skipped"] == [] and sorted(impls) == run.meta["impls"]
    expected = {(name, dtype, z) for name, impl in impls.items() for z, role in plan.sizes().items()
                for dtype in set(impl.dtypes) & {"float32", "bfloat16"}
                if impl.fits(z.n_tokens, z.h) and sweep.runs_at(role, name)}
    got = [(r.impl, r.dtype, sweep.Size(r.n_tokens, r.h, r.top_k)) for r in run.rows]
    assert sorted(got) == sorted(expected)
    ceiling = run.meta["ceiling_gbps"]["cpu"]
    for r in run.rows:
        assert 0 < r.p20_us <= r.median_us <= r.p80_us and r.rel_error < tolerance(r.dtype)
        assert r.bytes == r.n_tokens * (r.h * (r.top_k + 3) * ITEMSIZE[r.dtype] + (r.top_k + 1) * 4)
        assert r.gbps == pytest.approx(r.bytes / r.median_us / 1e3)
        assert r.pct_of_ceiling == pytest.approx(100 * r.gbps / ceiling)
    assert run.meta["command"].startswith("python -m moe_reduce bench --quick")
    empty = run.meta["empty_gpu_us"]
    assert set(empty) == {"mlx", "mlx_store", "triton", "triton_store"}
    if torch_support() is None:  # no CUPTI: no one-thread kernel has a GPU time
        assert set(empty.values()) == {None}
    else:
        assert 0 < empty["mlx"] < 20 and 0 < empty["mlx_store"] < 20


def test_figures_are_deterministic(quick_dir, tmp_path):
    """Figures drawn again from the saved CSV, in this process, are byte-identical to the command's; the SVG has
    no date."""
    run = results.load_run(quick_dir)
    for name in ("tokens", "latency"):
        files = plots.export(plots.FIGURES[name](run, "float32"), tmp_path, f"{name}_float32")
        for f in files:
            assert f.read_bytes() == (quick_dir / f.name).read_bytes(), f.name
    assert b"<dc:date>" not in (quick_dir / "tokens_float32.svg").read_bytes()
    assert {p.name for p in quick_dir.glob("*.png")} >= {"tokens_float32.png", "hidden_float32.png",
                                                         "heatmap_float32.png", "latency_bfloat16.png"}
