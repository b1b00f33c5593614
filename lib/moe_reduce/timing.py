"""Honest wall-clock timing: warm-up, batches of calls closed by one synchronisation, median and spread.
`time_fn` is the one timer every measurement in the suite uses."""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import mlx.core as mx
import numpy as np


@dataclass(frozen=True)
class TimerConfig:
    """How one measurement is taken."""

    warmup: int = 3  # extra calls after one untimed pass over every input set
    repeats: int = 15  # timed batches (fewer once max_s is spent, never under min_repeats)
    min_repeats: int = 3
    batch_s: float = 0.02  # a batch holds enough calls to last about this long
    max_calls: int = 4096
    max_s: float = 3.0
    graph_calls: int = 64  # MLX calls recorded into one graph before it is handed to the device (1: one per call)


QUICK_TIMER = TimerConfig(warmup=2, repeats=5, batch_s=0.005, max_s=0.3)
# A GPU sweep's many rows in minutes. Each batch pays 0.1-0.7 ms once (the closing sync and building the next
# batch's first call; H100 timelines of 2026-12-06): 50 ms batches keep that near 1% of a batch.
GPU_TIMER = TimerConfig(repeats=9, batch_s=0.05, max_s=1.0)


@dataclass(frozen=True)
class Timing:
    """Per-call seconds: median and 20th/80th percentiles over batches, and the batch length used."""

    median: float
    p20: float
    p80: float
    calls: int
    samples: tuple[float, ...]

    @classmethod
    def from_samples(cls, per_call: Sequence[float], calls: int) -> Timing:
        """Summarise per-call times, one per timed batch."""
        p20, med, p80 = np.percentile(per_call, [20, 50, 80])
        return cls(float(med), float(p20), float(p80), calls, tuple(per_call))


def sync_mlx(outs: list) -> None:
    """Evaluate every output of a batch at once and wait for the device."""
    mx.eval(*outs)
    mx.synchronize()


def sync_none(outs: list) -> None:
    """NumPy has finished by the time a call returns."""


def hands_over(j: int, calls: int, group: int) -> bool:
    """Whether call j (1-based) of a batch of `calls` is handed to the device: calls 1, 2, 4, ... up to `group`,
    then every `group`-th, and the last. The device starts on the first call while the host builds the next
    ones, instead of idling until a whole group is built."""
    return j == calls or j % group == 0 or (j < group and j & (j - 1) == 0)


def run_calls(call: Callable[[int, Any], Any], calls: int, sets: Iterator[int], sync: Callable[[list], None],
              flush: Callable[[list], None] | None = None, group: int = 1) -> None:
    """`calls` chained calls on the next input sets, handed to the device as `hands_over` says, then ONE sync.
    Only the newest output of a one-output op is kept: earlier ones are freed as a model frees them, so buffers
    are reused (each is evaluated as the next call's input). With a flush (a lazy framework), a call returning
    several outputs (the fused op's hidden and normed) keeps them all until they are handed over: an output no
    later call reads would otherwise be dropped unevaluated. Without one (eager torch, Triton, NumPy) they are
    not held, so their buffers are reused too."""
    out, pending = None, []
    for j in range(1, calls + 1):
        out = call(next(sets), out)
        if flush is not None and isinstance(out, tuple):
            pending.append(out)
        if flush is not None and hands_over(j, calls, group):
            flush(pending or [out])
            pending = []
    sync(pending or [out])


def rotation(n_sets: int) -> Iterator[int]:
    """Input set indices 0, 1, ..., n_sets - 1, 0, 1, ... without end."""
    return (i % n_sets for i in itertools.count())


def time_fn(call: Callable[[int, Any], Any], sync: Callable[[list], None] = sync_none, n_sets: int = 1,
            cfg: TimerConfig = TimerConfig(), max_batch: int | None = None,
            clock: Callable[[], float] = time.perf_counter,
            flush: Callable[[list], None] | None = None, group: int = 1) -> Timing:
    """Time `call(set_index, previous_output)`: warm up over every set, calibrate the batch size, then time
    batches of calls closed by ONE `sync(outputs)` each (run_calls); per-call time = batch time / calls.
    Lazy (MLX) calls are handed to the device by `flush([output])` every `group` calls: each call feeds the
    next (see `chained`), so one flush runs `group` dependent calls as one graph, as a model's forward pass does."""
    sets = rotation(n_sets)
    cap = max(1, min(cfg.max_calls, max_batch or cfg.max_calls))

    def batch(calls: int) -> float:
        """Seconds for one batch of `calls` calls."""
        start = clock()
        run_calls(call, calls, sets, sync, flush, group)
        return clock() - start

    left = max(n_sets, cfg.warmup)
    while left > 0:
        batch(min(cap, left))
        left -= cap
    calls = 1
    for _ in range(2):  # the first estimate carries a whole sync's overhead; the second is close
        calls = min(cap, max(1, math.ceil(cfg.batch_s * calls / max(batch(calls), 1e-9))))
    per_call: list[float] = []
    spent = 0.0
    while len(per_call) < cfg.repeats and (len(per_call) < cfg.min_repeats or spent < cfg.max_s):
        dt = batch(calls)
        per_call.append(dt / calls)
        spent += dt
    return Timing.from_samples(per_call, calls)


def chained(fn: Callable[..., Any], sets: Sequence[Any]) -> tuple[Callable[[int, Any], Any], bool]:
    """`call(i, prev)` running fn on argument set i (a CombineArgs or FusedArgs) with the previous call's output
    (its first, if it returns several) in place of the residual (or, without one, y_shared), as a layer's
    output feeds the next; and whether such an input exists. A chain keeps the device from overlapping calls a
    model could not overlap. The replaced input is one of the 10-12 rows read per token; at large sizes the
    previous output has left the cache long before it is read."""
    field = "residual" if sets[0].residual is not None else "y_shared" if sets[0].y_shared is not None else None
    index = None if field is None else sets[0]._fields.index(field)

    def call(i: int, prev: Any) -> Any:
        """fn on set i, fed by prev."""
        if prev is None or index is None:
            return fn(*sets[i])
        args = list(sets[i])
        args[index] = prev[0] if isinstance(prev, tuple) else prev
        return fn(*args)

    return call, field is not None
