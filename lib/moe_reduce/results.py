"""Benchmark results on disk: the CSV row schema, run metadata in JSON, loading every run under a folder.
Reading results imports neither MLX nor any GPU library."""
from __future__ import annotations

import csv
import json
import math
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

CSV_NAME, JSON_NAME = "bench.csv", "bench.json"


@dataclass
class Row:
    """One implementation × size × dtype."""

    device: str
    backend: str
    impl: str
    dtype: str
    n_tokens: int
    h: int
    top_k: int
    residual: bool
    shared: bool
    bytes: int
    median_us: float
    p20_us: float
    p80_us: float
    gbps: float
    pct_of_ceiling: float
    rel_error: float
    calls: int
    sets: int
    gpu_us: float = math.nan  # device time per call (CUPTI); NaN where not measured
    gpu_gbps: float = math.nan  # bytes / gpu_us
    gpu_pct_of_ceiling: float = math.nan  # gpu_gbps as % of the best traffic kernel's GPU-time rate
    pct_of_datasheet: float = math.nan  # gpu_gbps as % of the card's datasheet bandwidth (GPU rows only)


_PARSE = {"int": int, "float": float, "str": str, "bool": lambda s: {"True": True, "False": False}[s]}


def write_csv(rows: Sequence[Row], path: Path) -> None:
    """Rows to CSV with a header line."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(Row)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)


def read_csv(path: Path) -> list[Row]:
    """Rows back from write_csv's file, typed; columns an older file lacks take their defaults."""
    with open(path, newline="") as f:
        return [Row(**{fl.name: _PARSE[fl.type](rec[fl.name]) for fl in fields(Row) if fl.name in rec})
                for rec in csv.DictReader(f)]


@dataclass
class Run:
    """One benchmark run: its rows and the metadata that says where and how they were taken."""

    rows: list[Row]
    meta: dict = field(default_factory=dict)
    source: str | None = None  # the folder it was loaded from, if any

    def select(self, **match) -> list[Row]:
        """Rows whose fields equal every keyword given."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in match.items())]


def save_run(run: Run, folder: Path) -> list[Path]:
    """Write bench.csv and bench.json into a folder (created); returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(run.rows, folder / CSV_NAME)
    (folder / JSON_NAME).write_text(json.dumps(run.meta, indent=2, sort_keys=True) + "\n")
    return [folder / CSV_NAME, folder / JSON_NAME]


def is_run(folder: Path) -> bool:
    """Whether a folder holds a saved run (both files)."""
    return (folder / CSV_NAME).is_file() and (folder / JSON_NAME).is_file()


def load_run(folder: Path) -> Run:
    """A run saved by save_run; FileNotFoundError naming the folder and what is missing."""
    folder = Path(folder)
    if not is_run(folder):
        raise FileNotFoundError(f"{folder}: expected a folder holding {CSV_NAME} and {JSON_NAME} "
                                f"(written by `python -m moe_reduce bench`)")
    return Run(read_csv(folder / CSV_NAME), json.loads((folder / JSON_NAME).read_text()), folder.name)


def load_runs(root: Path) -> list[Run]:
    """Every saved run in the folders directly under root, by folder name; [] if there are none."""
    if not root.is_dir():
        return []
    return [load_run(d) for d in sorted(root.iterdir()) if is_run(d)]


def newest(runs: Sequence[Run], gpu: str, dtype: str, op: str = "combine") -> Run | None:
    """The newest run of an op (ties: the first folder by name) on a GPU whose name contains `gpu`, holding
    `dtype`; None if there is none."""
    found = [r for r in runs if gpu in (r.meta.get("gpu") or "") and dtype in r.meta["dtypes"]
             and r.meta.get("op", "combine") == op]
    return max(found, key=lambda r: r.meta["date"]) if found else None


REPOSITORY = Path(__file__).resolve().parents[2]  # lib/moe_reduce/results.py in a checkout (or an editable install)


def find_results(start: Path | None = None) -> Path:
    """The results/ folder of the repository: with `start`, the nearest results/ in it or a folder above it
    (start/results when there is none); without, the repository's that holds this package (a checkout, an
    editable install, PYTHONPATH=lib), whatever the working directory, else the one found from the working
    directory (an installed wheel run inside a checkout)."""
    if start is None and (REPOSITORY / "results").is_dir():
        return REPOSITORY / "results"
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.resolve().parents):
        if (folder / "results").is_dir():
            return folder / "results"
    return start / "results"


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: a folder name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


RUNS_DIR = "bench-runs"  # where `bench` writes by default; git ignores it (.gitignore), results/ holds committed runs


def default_out(meta: dict, base: Path | None = None) -> Path:
    """bench-runs/<device-slug>-<date>/ under `base` (default: the working directory), -fused for the fused op."""
    suffix = "-fused" if meta.get("op") == "fused" else ""
    return (Path.cwd() if base is None else base) / RUNS_DIR / f"{slug(meta['device'])}-{meta['date']}{suffix}"


def unwritable(folder: Path) -> str | None:
    """Why a run cannot be saved into `folder` (it or a folder above it is a file, or the nearest existing folder
    refuses a new file), or None when it can: checked without creating anything that stays."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file" if existing == folder else f"{existing}, a folder above it, is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"{existing} is not writable ({e.strerror})"
    return None
