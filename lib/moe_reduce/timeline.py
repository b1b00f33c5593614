"""A timeline of chained calls as CUPTI records them (through torch.profiler): when the host called the CUDA
runtime and driver (launches, graph launches, syncs) and when the device ran each kernel, copy and fill. Lesson
05 draws it to show where the device idles and where the host is the limit."""
from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

DEVICE_CATS = {"kernel": "kernel", "gpu_memcpy": "copy", "gpu_memset": "fill"}
HOST_CATS = {"cuda_runtime": "runtime", "cuda_driver": "driver"}


@dataclass(frozen=True)
class Span:
    """One activity: on the host (a runtime or driver call) or the device (a kernel, copy or fill)."""

    lane: str  # 'host' or 'device'
    kind: str  # runtime, driver, kernel, copy, fill
    name: str
    start_us: float  # from the first activity recorded
    dur_us: float


def spans(trace: dict) -> list[Span]:
    """The host API calls and device activities of a Chrome trace (torch.profiler's export), times relative to the
    earliest of them, in start order."""
    picked = []
    for e in trace.get("traceEvents", []):
        cat = e.get("cat")
        if e.get("ph") != "X" or (cat not in DEVICE_CATS and cat not in HOST_CATS):
            continue
        lane, kind = ("device", DEVICE_CATS[cat]) if cat in DEVICE_CATS else ("host", HOST_CATS[cat])
        picked.append((float(e["ts"]), lane, kind, e.get("name", ""), float(e.get("dur", 0.0))))
    if not picked:
        return []
    t0 = min(p[0] for p in picked)
    return [Span(lane, kind, name, ts - t0, dur) for ts, lane, kind, name, dur in sorted(picked)]


def record(run: Callable[[], Any]) -> list[Span]:
    """The spans of one run() (which must end with a synchronisation), recorded by torch.profiler with the CPU
    and CUDA activities on; RuntimeError without torch and a CUDA GPU."""
    from .impls import torch_support

    support = torch_support()
    if support is None:
        raise RuntimeError("a timeline needs torch with a CUDA GPU (CUPTI)")
    profiler = support.torch.profiler
    with profiler.profile(activities=[profiler.ProfilerActivity.CPU, profiler.ProfilerActivity.CUDA]) as prof:
        run()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        return spans(json.loads(path.read_text()))


@dataclass(frozen=True)
class Summary:
    """What a timeline says: the device's busy time and span, its idle time between activities, and how long
    the host spent inside runtime/driver calls."""

    device_busy_us: float
    device_span_us: float
    device_idle_us: float
    host_api_us: float
    kernels: int


def busy(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarise(found: list[Span]) -> Summary:
    """Busy, span and idle time of the device; host time in API calls; kernels run."""
    dev = [(s.start_us, s.start_us + s.dur_us) for s in found if s.lane == "device"]
    host = [(s.start_us, s.start_us + s.dur_us) for s in found if s.lane == "host"]
    span = max(e for _, e in dev) - min(s for s, _ in dev) if dev else 0.0
    on = busy(dev)
    return Summary(on, span, span - on, busy(host), sum(1 for s in found if s.kind == "kernel"))


def read_csv(path: Path, **match: str) -> list[Span]:
    """The spans of a committed timeline CSV (one Span per row, extra columns naming the case) whose columns
    equal every `match` value, in start order."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if all(r[k] == v for k, v in match.items())]
    return sorted((Span(r["lane"], r["kind"], r["name"], float(r["start_us"]), float(r["dur_us"])) for r in rows),
                  key=lambda s: s.start_us)


def batch_ends(found: list[Span], calls: int) -> list[float]:
    """End times of every `calls`-th kernel: where one timed batch's device work ends."""
    ks = [s for s in found if s.kind == "kernel"]
    return [ks[i].start_us + ks[i].dur_us for i in range(calls - 1, len(ks), calls)]
