"""moe_reduce.model_bench in its quick mode (tiny models, a few steps, the host runner on a CPU): every table
written with a row per case, the checks passing, a failing case recorded without ending the run, a bad --out
refused before anything is measured."""
from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("mlx_lm")

from moe_reduce import model_bench  # noqa: E402
from moe_reduce.model_configs import CONFIGS  # noqa: E402


def table(folder, name: str) -> list[dict]:
    with open(folder / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_every_case(tmp_path):
    assert model_bench.main(["--quick", "--out", str(tmp_path)]) == 0
    plan, n_variants = model_bench.QUICK, len(model_bench.VARIANTS)
    checks = table(tmp_path, "checks")
    assert {(r["model"], r["fuse_norm"]) for r in checks} == {(m, f) for m in CONFIGS for f in ("False", "True")}
    assert all(r["passed"] == "True" and not r["error"] and r["mlx_enable_tf32"] == "0" for r in checks)
    steps = table(tmp_path, "steps")
    assert len(steps) == len(model_bench.TIMED) * len(plan.dtypes) * n_variants * (1 + len(plan.prefills))
    assert all(not r["error"] and float(r["wall_us"]) > 0 and int(r["ops"]) > 0 for r in steps)
    decode = [r for r in steps if r["case"] == "decode"]
    assert decode and all(0 < float(r["host_us"]) <= float(r["wall_us"]) for r in decode)
    assert all(0 < float(r["build_us"]) < float(r["host_max_us"]) and 0 < float(r["hand_us"]) for r in decode)
    # on a GPU backend our calls' Python runs only when mx.compile traces; the host runner's fused call runs it
    # every time, its plain combine never
    assert all((r["traces"] == "0") == (r["variant"] != "fused") for r in decode)
    assert all(float(r["wall_min_us"]) <= float(r["wall_us"]) <= float(r["wall_max_us"]) for r in decode)
    assert all(r["host_us"] == "" for r in steps if r["case"] != "decode")
    parts = table(tmp_path, "components")
    per_model = (1 + len(plan.prefills)) * (5 + 5 + 3)  # unpatched and patched: 5 parts; fused: 3
    assert len(parts) == len(model_bench.TIMED) * len(plan.dtypes) * per_model
    assert all(not r["error"] for r in parts)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["failed"] == 0 and meta["plan"]["tiny"] and meta["versions"]["mlx_lm"]
    assert meta["checks_env"] == model_bench.CHECKS_ENV


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(*_a, **_kw):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(model_bench, "measure_prefill", broken)
    assert model_bench.main(["--quick", "--no-checks", "--out", str(tmp_path)]) == 0
    steps = table(tmp_path, "steps")
    prefills = [r for r in steps if r["case"] == "prefill"]
    assert prefills and all(r["error"] == "RuntimeError: out of memory (simulated)" for r in prefills)
    assert all(not r["error"] for r in steps if r["case"] == "decode")
    assert json.loads((tmp_path / "meta.json").read_text())["failed"] == len(prefills)


def test_bad_out_is_refused_before_measuring(tmp_path, monkeypatch, capsys):
    for name in ("run_checks", "run_checks_child"):
        monkeypatch.setattr(model_bench, name, lambda *_a: pytest.fail("measured with a bad --out"))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        model_bench.main(["--quick", "--out", str(tmp_path / "a_file" / "run")])
    assert exit_info.value.code == 2
    assert "--out: expected a folder this process can write" in capsys.readouterr().err


@pytest.mark.parametrize("kernel, kind", [
    ("mlx::custom_kernel_moe_weighted_reduce_vec_float_1_8_t_t_t(const float *)", "ours: combine"),
    ("custom_kernel_moe_combine_rmsnorm_bfloat16_t_8_8_t_1(const float *)", "ours: combine+norm"),
    ("void mlx::core::cu::rms_norm_small<float, 256, 1, true, 8>(...)", "rms_norm"),
    ("a kernel nobody named", "other"),
])
def test_kernel_categories(kernel, kind):
    assert model_bench.category(kernel) == kind


def test_cases_past_the_time_budget_are_recorded_not_run(tmp_path):
    assert model_bench.main(["--quick", "--budget-s", "0", "--out", str(tmp_path)]) == 0
    rows = table(tmp_path, "checks") + table(tmp_path, "steps")
    assert rows and all(r["error"].startswith("TimeoutError: not built: past the time budget of 0 s") for r in rows)


def test_traces_are_counted_and_the_originals_restored():
    """counting_traces counts the traced Python of our compiled calls and puts the functions back."""
    from moe_reduce import kernels

    original = kernels.combine_call
    with model_bench.counting_traces() as traces:
        assert kernels.combine_call is not original
        with pytest.raises(Exception):
            kernels.combine_call("host", "auto", None, None)
    assert traces[0] == 1 and kernels.combine_call is original
