"""Results on disk: the CSV/JSON round trip, loading runs, finding results/, and that reading them (and
plotting them) needs no MLX."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moe_reduce import results


def row(**kw) -> results.Row:
    """A row with plausible values, overridden by keywords."""
    base = dict(device="dev", backend="b", impl="mlx", dtype="float32", n_tokens=4, h=2048, top_k=8, residual=True,
                shared=True, bytes=1234, median_us=1.5, p20_us=1.25, p80_us=2.0, gbps=0.1 / 3, pct_of_ceiling=12.5,
                rel_error=3e-8, calls=10, sets=2)
    return results.Row(**{**base, **kw})


def test_csv_json_round_trip(tmp_path):
    """save_run then load_run gives back equal rows (floats exact, bools typed) and metadata."""
    run = results.Run([row(gpu_us=1 / 3, pct_of_datasheet=90.5), row(impl="numpy", residual=False, shared=False,
                                                                      median_us=1 / 7)], {"device": "dev", "x": [1, 2]})
    results.save_run(run, tmp_path / "r")
    back = results.load_run(tmp_path / "r")
    assert repr(back.rows) == repr(run.rows)  # NaN (unmeasured GPU time) compares unequal, its repr does not
    assert back.meta == run.meta and back.source == "r" and back.rows[0].gpu_us == 1 / 3
    assert back.rows[1].residual is False and back.rows[1].median_us == 1 / 7
    assert [r.impl for r in results.load_runs(tmp_path)[0].rows] == ["mlx", "numpy"]
    assert results.load_runs(tmp_path / "missing") == []


def test_older_csv_without_gpu_columns_loads(tmp_path):
    """A run saved before the GPU-time columns existed loads, with those columns NaN."""
    results.save_run(results.Run([row()], {"device": "dev"}), tmp_path)
    lines = (tmp_path / results.CSV_NAME).read_text().splitlines()
    keep = len(lines[0].split(",")) - 4
    (tmp_path / results.CSV_NAME).write_text("\n".join(",".join(ln.split(",")[:keep]) for ln in lines) + "\n")
    (back,) = results.load_run(tmp_path).rows
    assert back.median_us == 1.5 and back.gpu_us != back.gpu_us and back.pct_of_datasheet != back.pct_of_datasheet


def test_load_run_names_what_is_missing(tmp_path):
    """A folder without both files is not a run, and loading it says which folder and which files."""
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / results.CSV_NAME).write_text("device\n")
    assert results.load_runs(tmp_path) == []
    with pytest.raises(FileNotFoundError, match=r"half: expected a folder holding bench.csv and bench.json"):
        results.load_run(tmp_path / "half")


def test_select():
    run = results.Run([row(n_tokens=1), row(n_tokens=4), row(n_tokens=4, dtype="bfloat16")])
    assert [r.n_tokens for r in run.select(dtype="float32")] == [1, 4]
    assert len(run.select(n_tokens=4, dtype="bfloat16")) == 1 and run.select(impl="none") == []


def test_find_results_walks_up(tmp_path):
    """From a notebook folder the repository's results/ is found; with none anywhere, start/results."""
    (tmp_path / "repo" / "results").mkdir(parents=True)
    (tmp_path / "repo" / "notebooks").mkdir()
    assert results.find_results(tmp_path / "repo" / "notebooks") == tmp_path / "repo" / "results"
    assert results.find_results(tmp_path / "repo").resolve() == (tmp_path / "repo" / "results").resolve()


FROM_ELSEWHERE = """
from pathlib import Path
from moe_reduce import exercises, results
from moe_reduce.exercises import lesson03
print(results.find_results())
assert lesson03.committed_run() is not None
assert exercises.solution("predict_time") > 0
assert exercises.verdict("predict_time", lesson03.predict_solution()).passed
"""


def test_results_found_from_any_working_directory(tmp_path):
    """From a folder outside the repository, the package finds the repository's results/: lesson 03's checkers
    and solutions read the committed runs (they found none, and solution("predict_time") crashed)."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", FROM_ELSEWHERE], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(repo / "lib")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(repo / "results")


def test_default_out_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta = {"device": "NVIDIA H200 (x)", "date": "2026-11-27"}
    assert results.default_out(meta) == tmp_path / "bench-runs" / "nvidia-h200-x-2026-11-27"
    assert results.default_out({**meta, "op": "fused"}).name == "nvidia-h200-x-2026-11-27-fused"


def test_reading_and_plotting_results_import_no_mlx():
    """results and plots load without MLX (a CSV can be redrawn on a machine without it)."""
    code = "import sys, moe_reduce.results, moe_reduce.plots; print('mlx' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
