"""GPU time: how long the device itself spends per call, from the durations CUPTI records for every kernel,
copy and fill in the process (MLX's, PyTorch's and Triton's alike), read through torch.profiler. Wall time
(timing.py) adds what the host spends issuing calls and the gaps between kernels; GPU time does not.
Available where torch imports with a CUDA GPU (impls.torch_support); elsewhere every function returns None."""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from .impls import torch_support
from .timing import rotation, run_calls


@dataclass(frozen=True)
class GpuTime:
    """Device time per call and what ran: kernel names with how many times each ran per call."""

    us: float
    kernels: dict[str, float]


def device_activities(run: Callable[[], Any]) -> list[tuple[str, float]] | None:
    """(name, µs) of every device activity while run() executes (it must end with a synchronisation), in the
    order they started on the device."""
    support = torch_support()
    if support is None:
        return None
    profiler = support.torch.profiler
    with profiler.profile(activities=[profiler.ProfilerActivity.CUDA]) as prof:
        run()
    cuda = support.torch.autograd.DeviceType.CUDA
    events = [e for e in prof.profiler.kineto_results.events() if e.device_type() == cuda]
    return [(e.name(), e.duration_ns() / 1e3) for e in sorted(events, key=lambda e: e.start_ns())]


def gpu_time(run: Callable[[], Any], calls: int) -> GpuTime | None:
    """Device time per call of run(), which makes `calls` calls and synchronises; None without CUPTI."""
    acts = device_activities(run)
    if acts is None:
        return None
    names = Counter(name for name, _ in acts)
    return GpuTime(sum(us for _, us in acts) / calls, {n: c / calls for n, c in names.items()})


def chained_gpu_time(call: Callable[[int, Any], Any], calls: int, n_sets: int, sync: Callable[[list], None],
                     flush: Callable[[list], None] | None = None, group: int = 1, per: int = 1) -> GpuTime | None:
    """Device time per op call of `calls` timer calls (timing.run_calls over n_sets rotating input sets, handed
    over every `group` calls, one sync), each making `per` op calls; None without CUPTI."""
    return gpu_time(lambda: run_calls(call, calls, rotation(n_sets), sync, flush, group), calls * per)


def repeat_medians(calls: dict[Any, Callable[[int, Any], Any]], n_sets: int, match: str, per: int, repeats: int,
                   sync: Callable[[list], None], flush: Callable[[list], None] | None = None) -> dict[Any, list[float]]:
    """Per key of `calls` (timing.run_calls calls), the median GPU µs of its kernels in each of `repeats` runs of
    `per` chained calls over n_sets rotating input sets, handed over `per` at a time: every call warmed up first,
    then all of them one after another in one profiler session, the kernels whose names contain `match` split
    back by their order; RuntimeError if the profile holds another count of them."""
    at = rotation(n_sets)
    for call in calls.values():  # compile and trace outside the profile
        run_calls(call, 2, at, sync, flush, per)

    def run() -> None:
        for call in calls.values():
            for _ in range(repeats):
                run_calls(call, per, at, sync, flush, per)

    acts = [us for name, us in device_activities(run) if match in name]
    if len(acts) != len(calls) * repeats * per:
        raise RuntimeError(f"expected {len(calls) * repeats * per} kernels in the profile, got {len(acts)}")
    return {key: [statistics.median(acts[(i * repeats + r) * per:(i * repeats + r + 1) * per]) for r in range(repeats)]
            for i, key in enumerate(calls)}
