"""moe_reduce.model_results (model_bench runs read back, the per-op host cost) and lesson 06's exercises, on run
folders written here: a CPU run as `--quick` writes it and a GPU run with made-up times, so every checker's right
and wrong answers are known."""
from __future__ import annotations

import csv
import json
import math

import pytest

from moe_reduce import exercises, model_results
from moe_reduce.exercises import lesson06

M, D = lesson06.MODEL, lesson06.DTYPE
# decode: (wall µs, GPU µs, ops) per variant; components at one token: (variant, part) -> GPU µs
DECODE = {"unpatched": (900.0, 800.0, 400), "patched": (700.0, 760.0, 340), "fused": (650.0, 750.0, 310)}
PARTS = {("unpatched", "moe_block"): 100.0, ("unpatched", "combine"): 10.0, ("patched", "moe_block"): 94.0,
         ("patched", "combine"): 4.0}
LAYERS = 4
COST = model_results.HostCost(5.0, 14.0, "a test", measured=False)


def write(folder, name: str, rows: list[dict]) -> None:
    with open(folder / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def make_run(folder, *, gpu: str | None, date: str = "2026-12-05") -> None:
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"gpu": gpu, "date": date}))
    nan = "nan" if gpu is None else None
    write(folder, "steps", [dict(model=M, dtype=D, layers=LAYERS, case="decode", n_tokens=1, cached=512, variant=v,
                                 wall_us=wall, gpu_us=nan or gpu_us, kernels=nan or 3 * ops, ops=ops, error="")
                            for v, (wall, gpu_us, ops) in DECODE.items()]
          + [dict(model=M, dtype=D, layers=LAYERS, case="prefill", n_tokens=512, cached=0, variant="patched",
                  wall_us="", gpu_us="", kernels="", ops="", error="RuntimeError: out of memory")])
    write(folder, "components", [dict(model=M, dtype=D, layers=LAYERS, n_tokens=1, variant=v, part=p,
                                      gpu_us=nan or us, kernels=1, ops=6, error="") for (v, p), us in PARTS.items()])
    (folder / "kernels.csv").write_text("\n")


@pytest.fixture
def gpu_run(tmp_path, monkeypatch):
    make_run(tmp_path / "nvidia-h100-2026-12-05-model", gpu="NVIDIA H100 80GB HBM3")
    make_run(tmp_path / "cpu-quick-2026-12-06-model", gpu=None, date="2026-12-06")
    monkeypatch.setattr(model_results, "RESULTS", tmp_path)
    return model_results.load(tmp_path / "nvidia-h100-2026-12-05-model")


def test_cells_are_typed():
    assert [model_results.typed(t) for t in ("", "True", "False", "3", "2.5", "abc")] == [None, True, False, 3, 2.5,
                                                                                         "abc"]
    assert math.isnan(model_results.typed("nan"))


def test_load_selects_rows_that_ran(gpu_run):
    assert gpu_run.gpu == "NVIDIA H100 80GB HBM3" and gpu_run.has_gpu_times
    assert gpu_run.one("steps", case="decode", variant="patched")["ops"] == 340
    assert gpu_run.rows("steps", case="prefill") == []  # the failed case is not a row that ran
    assert gpu_run.tables["kernels"] == []
    with pytest.raises(LookupError, match="expected one row with {'case': 'decode'}, found 3"):
        gpu_run.one("steps", case="decode")


def test_missing_files_are_named(tmp_path):
    (tmp_path / "x-model").mkdir()
    (tmp_path / "x-model" / "meta.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing steps.csv, components.csv"):
        model_results.load(tmp_path / "x-model")
    assert model_results.run_folders(tmp_path) == []


def test_a_gpu_run_is_chosen_over_a_newer_cpu_run(gpu_run, tmp_path):
    make_run(tmp_path / "nvidia-h200-2026-12-04-model", gpu="NVIDIA H200", date="2026-12-04")
    make_run(tmp_path / "nvidia-h200-2026-12-07-model", gpu="NVIDIA H200", date="2026-12-07")
    runs = model_results.newest_runs()
    assert [r.folder.name for r in runs] == ["nvidia-h100-2026-12-05-model", "nvidia-h200-2026-12-07-model"]


def test_without_a_gpu_run_the_newest_cpu_run(tmp_path):
    make_run(tmp_path / "cpu-quick-2026-12-05-model", gpu=None)
    make_run(tmp_path / "cpu-quick-2026-12-06-model", gpu=None, date="2026-12-06")
    (run,) = model_results.newest_runs(tmp_path)
    assert run.folder.name == "cpu-quick-2026-12-06-model" and not run.has_gpu_times
    assert model_results.newest_runs(tmp_path / "none") == []


def test_the_repository_run_is_found_from_the_package_not_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_results.RESULTS.name == "results" and (model_results.RESULTS.parent / "lib" / "moe_reduce").is_dir()
    assert model_results.newest_runs(), "no committed model_bench run under results/"


def test_host_cost_from_the_newest_committed_file(tmp_path):
    assert model_results.host_cost(tmp_path) is model_results.HOST_COST_FROM_ISSUE
    assert not model_results.HOST_COST_FROM_ISSUE.measured and "NOT from a committed run" in \
        model_results.HOST_COST_FROM_ISSUE.source
    for name, runs in (("nvidia-h100-2026-12-05-probes", [6.0, 7.0]), ("nvidia-h200-2026-12-05-probes", [5.5, 9.0]),
                       ("nvidia-h200-2026-11-27-probes", [1.0, 99.0])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "host.json").write_text(json.dumps({"runs_us": {"mx.add": runs, "x*w+y": [50.0]}}))
    cost = model_results.host_cost(tmp_path)
    assert (cost.low_us, cost.high_us, cost.measured) == (5.5, 9.0, True)
    assert "nvidia-h100-2026-12-05-probes/host.json" in cost.source and "11-27" not in cost.source


# ------------------------------------------------------------------ lesson 06's exercises

def test_the_exercises_are_registered_and_unattempted_by_default():
    for name in ("amdahl_bound", "decode_saving"):
        assert exercises.get(name).lesson == "06"
        assert exercises.verdict(name, None).status == "unattempted"


def test_bound_right_and_wrong(gpu_run):
    right = LAYERS * 10.0 / 800.0
    assert lesson06.bound_solution() == pytest.approx(right)
    v = lesson06.check_bound(right)
    assert v.passed and "5.0% of the decode step's GPU time" in v.message and "-5.0%" in v.message
    wrong = {10.0 / 800.0: "one layer's combine", 10.0 / 100.0: "share of its MoE block",
             LAYERS * 10.0 / 900.0: "wall time", 100 * right: "a percentage", 1 / (1 - right): "speed-up bound",
             0.2: "+300% off", "0.05": "expected a fraction", True: "expected a fraction", math.nan: "expected"}
    for answer, says in wrong.items():
        v = lesson06.check_bound(answer)
        assert not v.passed and says in v.message, (answer, v.message)


def test_saving_right_and_wrong(gpu_run):
    fewer = 400 - 340
    right = (fewer * 5.0, fewer * 14.0)
    assert lesson06.saving_solution(cost=COST) == right
    v = lesson06.check_saving(right, COST)
    assert v.passed and "60 fewer ops" in v.message and "fell by 200 µs" in v.message
    assert "below the prediction" in v.message
    wrong = {(right[1], right[0]): "wrong order", (fewer / LAYERS * 5, fewer / LAYERS * 14): "ops of one layer",
             (90 * 5.0, 90 * 14.0): "fuse_norm", (right[0] / 1e3, right[1] / 1e3): "ms, not µs",
             (right[0], 1.0): "not (300, 840)", 300.0: "expected a pair", (1, "2"): "expected a pair"}
    for answer, says in wrong.items():
        v = lesson06.check_saving(answer, COST)
        assert not v.passed and says in v.message, (answer, v.message)


def test_without_a_gpu_run_the_checkers_say_so(tmp_path, monkeypatch):
    make_run(tmp_path / "cpu-quick-2026-12-05-model", gpu=None)
    monkeypatch.setattr(model_results, "RESULTS", tmp_path)
    for name, answer in (("amdahl_bound", 0.05), ("decode_saving", (1.0, 2.0))):
        v = exercises.verdict(name, answer)
        assert not v.passed and "no committed GPU run" in v.message
