"""Hardware counters of single kernel launches, from Nsight Compute (ncu). The program being profiled (the
target) wraps each call it wants measured in `counted(label)`, an NVTX range named "m:<label>"; ncu profiles
only the kernels inside such ranges, with caches flushed before each, and each row is named after its range."""
from __future__ import annotations

import csv
import glob
import io
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# Metric -> column name. Every name is ncu's, for sm_90; values are read in base units (bytes, ns).
METRICS = {
    "gpu__time_duration.sum": "duration_ns",
    "dram__bytes_read.sum": "dram_read_bytes",
    "dram__bytes_write.sum": "dram_write_bytes",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved_occupancy_pct",
    "sm__maximum_warps_per_active_cycle_pct": "theoretical_occupancy_pct",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": "ld_sectors",
    "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum": "ld_requests",
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum": "st_sectors",
    "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum": "st_requests",
    "smsp__warps_eligible.avg.per_cycle_active": "eligible_warps_per_cycle",
    "smsp__warps_active.avg.per_cycle_active": "active_warps_per_scheduler",
    "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio": "stall_long_scoreboard",
    "smsp__inst_executed.sum": "instructions",
    "sm__cycles_elapsed.avg.per_second": "sm_hz",
    "gpc__cycles_elapsed.max": "cycles",
    "launch__grid_size": "grid_blocks",
    "launch__block_size": "block_threads",
    "launch__registers_per_thread": "registers",
    "launch__waves_per_multiprocessor": "waves",
}
RANGE = "m:"  # prefix of the NVTX ranges ncu profiles


def ncu_binary() -> str | None:
    """Path of the ncu executable: on PATH, in the CUDA install's bin/, or in an Nsight Compute install."""
    found = shutil.which("ncu") or next(iter(sorted(glob.glob("/usr/local/cuda*/bin/ncu"))), None)
    return found or next(iter(sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"))), None)


@contextmanager
def counted(label: str) -> Iterator[None]:
    """An NVTX push/pop range "m:<label>" around a call whose kernels ncu should profile (torch's NVTX binding;
    the call must launch its kernels before the range ends, e.g. by synchronising)."""
    import torch

    torch.cuda.nvtx.range_push(RANGE + label)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()


def require_ncu() -> str:
    """ncu_binary(), or RuntimeError when there is none."""
    found = ncu_binary()
    if found is None:
        raise RuntimeError("no ncu")
    return found


def count_each(todo: Sequence[tuple[str, Callable[[], Any]]], warmup: int = 3) -> None:
    """The target's side: every (label, call) run `warmup` times outside any range (compiling, autotuning and
    warming up where ncu does not look), then each once inside counted(label)."""
    for _, call in todo:
        for _ in range(warmup):
            call()
    for label, call in todo:
        with counted(label):
            call()


def profile(ncu: str, target: list[str], report: Path, log: Path) -> list[dict]:
    """Run the target under ncu (command) with lib/ on its PYTHONPATH, write the last 20,000 characters of its
    stdout and stderr to `log`, and return the report's rows (read)."""
    done = subprocess.run(command(ncu, target, report), capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": "lib"})
    log.write_text(done.stdout[-20000:] + "\n---\n" + done.stderr[-20000:])
    return read(ncu, report.with_suffix(".ncu-rep"))


def command(ncu: str, target: list[str], report: Path, metrics: dict[str, str] = METRICS) -> list[str]:
    """The ncu command line that profiles the kernels in `counted` ranges of the target into a report file."""
    return [ncu, "--nvtx", "--nvtx-include", f"regex:{RANGE}.*/", "--metrics", ",".join(metrics),
            "--cache-control", "all", "--clock-control", "none", "--target-processes", "all", "-f", "-o",
            str(report), *target]


def number(text: str) -> float | str:
    """A value of ncu's CSV as a float (thousands separators dropped), or the text when it is not a number."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def parse(raw: str, metrics: dict[str, str] = METRICS) -> list[dict]:
    """Rows of ncu's raw CSV page (a header line, a units line, one line per kernel) as dicts: id, kernel and
    every metric under its column name."""
    lines = list(csv.reader(io.StringIO(raw)))
    start = next((i for i, row in enumerate(lines) if row and row[0] == "ID"), None)
    if start is None:
        return []
    header = lines[start]
    rows = []
    for values in lines[start + 2:]:
        rec = dict(zip(header, values))
        if not rec.get("ID", "").isdigit():
            continue
        row = {"id": int(rec["ID"]), "kernel": rec.get("Kernel Name", "")}
        row.update({col: number(rec[m]) for m, col in metrics.items() if m in rec})
        rows.append(row)
    return rows


def read(ncu: str, report: Path, metrics: dict[str, str] = METRICS) -> list[dict]:
    """The report's rows, each with `label` (its NVTX range without the prefix) and `kernel` (its name)."""
    def page(*extra: str) -> list[dict]:
        out = subprocess.run([ncu, "-i", str(report), "--page", "raw", "--csv", "--print-units", "base", *extra],
                             capture_output=True, text=True, check=True).stdout
        return parse(out, metrics)

    named = {r["id"]: r["kernel"] for r in page("--print-nvtx-rename", "kernel")}
    rows = page()
    for r in rows:
        label = str(named.get(r["id"], ""))
        r["label"] = label[len(RANGE):] if label.startswith(RANGE) else label
    return rows
