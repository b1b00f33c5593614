"""Lesson 06's committed runs read back: the `results/*-model` folders `python -m moe_reduce.model_bench` wrote,
each table as tidy rows (one dict per CSV line, values typed), and the per-op host cost lesson 05 measured.
Imports no MLX."""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "results"  # the repository's results/, found from this file
MODEL_GLOB = "*-model"
TABLES = ("checks", "steps", "components", "kernels")  # <table>.csv, as model_bench writes them
REQUIRED = ("meta.json", "steps.csv", "components.csv")


def typed(text: str) -> bool | int | float | str | None:
    """A CSV cell as Python: '' -> None, 'True'/'False' -> bool, then int, float ('nan' too), else the text."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_table(path: Path) -> list[dict]:
    """The rows of one CSV file, typed; [] if the file is missing or empty (kernels.csv is, without CUPTI)."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        return [{k: typed(v) for k, v in rec.items()} for rec in csv.DictReader(f)]


@dataclass
class ModelRun:
    """One model_bench run: its folder, meta.json and tables (TABLES: name -> rows)."""

    folder: Path
    meta: dict
    tables: dict[str, list[dict]]

    @property
    def gpu(self) -> str | None:
        """The GPU the run was taken on; None for a CPU run (the host backend)."""
        return self.meta.get("gpu")

    @property
    def has_gpu_times(self) -> bool:
        """Whether the run holds CUPTI GPU times (a CPU run's gpu_us are NaN)."""
        return any(not math.isnan(r["gpu_us"]) for r in self.rows("steps") if r.get("gpu_us") is not None)

    def rows(self, table: str, **match) -> list[dict]:
        """The table's rows that ran (no error) and whose columns equal every keyword given."""
        return [r for r in self.tables[table]
                if not r.get("error") and all(r.get(k) == v for k, v in match.items())]

    def one(self, table: str, **match) -> dict:
        """The table's single row matching the keywords; LookupError naming the match and the count."""
        found = self.rows(table, **match)
        if len(found) != 1:
            raise LookupError(f"{self.folder.name}/{table}.csv: expected one row with {match}, found {len(found)}")
        return found[0]


def load(folder: Path) -> ModelRun:
    """A run folder written by model_bench; FileNotFoundError naming the folder and the files it lacks."""
    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: expected {', '.join(REQUIRED)} (written by `python -m "
                                f"moe_reduce.model_bench --out DIR`), missing {', '.join(missing)}")
    return ModelRun(folder, json.loads((folder / "meta.json").read_text()),
                    {t: read_table(folder / f"{t}.csv") for t in TABLES})


def run_folders(root: Path | None = None) -> list[Path]:
    """The model_bench run folders directly under root (default: the repository's results/), by name."""
    root = RESULTS if root is None else Path(root)
    return sorted(d for d in root.glob(MODEL_GLOB) if all((d / name).is_file() for name in REQUIRED))


def newest_runs(root: Path | None = None) -> list[ModelRun]:
    """The newest GPU run of each GPU under root (by meta date, ties: the last folder by name), sorted by GPU
    name; if there is none, the newest CPU run alone; [] if there is no run at all."""
    runs = [load(d) for d in run_folders(root)]
    gpu_runs = [r for r in runs if r.gpu]
    if not gpu_runs:
        return [max(runs, key=lambda r: r.meta["date"])] if runs else []
    newest = {}
    for r in sorted(gpu_runs, key=lambda r: r.meta["date"]):
        newest[r.gpu] = r
    return [newest[g] for g in sorted(newest)]


# ---------------------------------------------------------------- lesson 05's host cost per op


@dataclass(frozen=True)
class HostCost:
    """What the host spends issuing one MLX op on the GPU, as a range in µs, and where the figure comes from."""

    low_us: float
    high_us: float
    source: str
    measured: bool  # False: a figure quoted from an issue, not read from a committed run


# The placeholder until lesson 05's run is committed: issue 21 quotes lesson 05 (issue 17) at 5-14 µs per op.
HOST_COST_FROM_ISSUE = HostCost(5.0, 14.0, "issue 21, quoting lesson 05 (issue 17): NOT from a committed run",
                                measured=False)
HOST_COST_FILE = "host.json"  # hostcost.summary's table, as results/nvidia-2026-12-05-probes/round1.py saves it
HOST_COST_CASE = "mx.add"  # one built-in op per chained call: the host's cost of one op
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def host_cost(root: Path | None = None) -> HostCost:
    """The per-op host cost from the newest committed results/nvidia-*/host.json (the min and max over the runs
    of HOST_COST_CASE; several files of that date: over all of them), else HOST_COST_FROM_ISSUE."""
    root = RESULTS if root is None else Path(root)
    files = [p for p in root.glob(f"nvidia-*/{HOST_COST_FILE}") if DATE.search(p.parent.name)]
    if not files:
        return HOST_COST_FROM_ISSUE
    date = max(DATE.search(p.parent.name).group() for p in files)
    newest = sorted(p for p in files if DATE.search(p.parent.name).group() == date)
    runs = [us for p in newest for us in json.loads(p.read_text())["runs_us"][HOST_COST_CASE]]
    where = ", ".join(f"{p.parent.name}/{p.name}" for p in newest)
    return HostCost(min(runs), max(runs), f"{where} ({HOST_COST_CASE}, {len(runs)} runs)", measured=True)
