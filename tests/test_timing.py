"""The timer: exact per-call times on a fake clock, percentiles, input rotation, chaining and flushing."""
from __future__ import annotations

import itertools

import pytest

from moe_reduce.inputs import CombineArgs
from moe_reduce.timing import TimerConfig, chained, hands_over, run_calls, time_fn


class FakeClock:
    """A clock that moves only when a fake call says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_fake_clock_exact():
    """Constant 2^-10 s calls give exactly that per call, in batches long enough to fill batch_s (2^-6 s)."""
    clock = FakeClock()
    cfg = TimerConfig(warmup=2, repeats=7, batch_s=2**-6)
    t = time_fn(lambda i, prev: clock.spend(2**-10), cfg=cfg, clock=clock)
    assert t.median == t.p20 == t.p80 == 2**-10
    assert t.calls == 16 and len(t.samples) == 7


def test_percentiles_and_rotation():
    """Batch means that vary give the 20/50/80th percentiles of the samples; every input set is visited."""
    clock, seen = FakeClock(), []
    costs = itertools.cycle([1e-3, 2e-3, 3e-3, 4e-3, 5e-3])

    def call(i: int, prev) -> None:
        seen.append(i)
        clock.spend(next(costs))

    cfg = TimerConfig(warmup=0, repeats=10, batch_s=1e-9, max_s=1e9)
    t = time_fn(call, n_sets=7, cfg=cfg, clock=clock)
    assert t.calls == 1 and len(t.samples) == 10
    assert sorted(t.samples) == pytest.approx([1e-3, 1e-3, 2e-3, 2e-3, 3e-3, 3e-3, 4e-3, 4e-3, 5e-3, 5e-3])
    assert (t.p20, t.median, t.p80) == (pytest.approx(1.8e-3), pytest.approx(3e-3), pytest.approx(4.2e-3))
    assert set(seen[:7]) == set(range(7)) and max(seen) == 6


def test_max_s_stops_early_but_not_under_min_repeats():
    """Once max_s of timed batches is spent the timer stops, after at least min_repeats batches."""
    clock = FakeClock()
    cfg = TimerConfig(warmup=0, repeats=50, min_repeats=4, batch_s=1e-9, max_s=0.25)
    t = time_fn(lambda i, prev: clock.spend(0.1), cfg=cfg, clock=clock)
    assert len(t.samples) == 4


def test_chains_calls_and_flushes_in_groups():
    """Each call gets the previous call's output (None first in a batch); flush sees the 1st, 2nd and then every
    4th output, and the last."""
    clock, log, flushed = FakeClock(), [], []

    def call(i: int, prev):
        log.append(prev)
        clock.spend(1e-3)
        return len(log)  # this call's "output": its position in the log

    cfg = TimerConfig(warmup=0, repeats=3, batch_s=10e-3, max_s=1e9)
    t = time_fn(call, cfg=cfg, clock=clock, flush=lambda outs: flushed.extend(outs), group=4)
    assert t.calls == 10 and t.median == pytest.approx(1e-3)
    last = log[-10:]  # the final timed batch
    assert last[0] is None and last[1:] == list(range(len(log) - 9, len(log)))
    start = len(log) - 10
    assert flushed[-5:] == [start + 1, start + 2, start + 4, start + 8, start + 10]


@pytest.mark.parametrize("residual, shared, field", [(True, True, "residual"), (True, False, "residual"),
                                                      (False, True, "y_shared"), (False, False, None)])
def test_chained_replaces_residual_then_y_shared(residual, shared, field):
    """The previous output takes the residual's place, or y_shared's without a residual, or nothing."""
    args = CombineArgs("w", "y", "s" if shared else None, "ys" if shared else None, "r" if residual else None)
    call, linked = chained(lambda *a: a, [args])
    assert linked == (field is not None)
    assert call(0, None) == tuple(args)
    expected = dict(args._asdict())
    if field is not None:
        expected[field] = "prev"
    assert call(0, "prev") == tuple(expected.values())


def test_every_output_of_a_multi_output_call_is_handed_over():
    """A call returning (hidden, normed) where the next call reads only hidden: every call's normed still reaches
    flush once, so a lazy framework evaluates it instead of dropping it."""
    flushed, fed = [], []

    def call(i: int, prev):
        fed.append(prev)
        n = len(fed) - 1
        return (f"hidden{n}", f"normed{n}")

    run_calls(call, 10, iter(range(10)), sync=lambda outs: None, flush=flushed.extend, group=4)
    assert [out[1] for out in flushed] == [f"normed{n}" for n in range(10)]
    assert fed == [None] + [(f"hidden{n}", f"normed{n}") for n in range(9)]


def test_hand_over_from_the_first_call():
    """Calls 1, 2, 4, ... reach the device before a whole group is built; then every group-th and the last."""
    assert [j for j in range(1, 201) if hands_over(j, 200, 64)] == [1, 2, 4, 8, 16, 32, 64, 128, 192, 200]
    assert [j for j in range(1, 6) if hands_over(j, 5, 1)] == [1, 2, 3, 4, 5]
    assert [j for j in range(1, 31) if hands_over(j, 30, 64)] == [1, 2, 4, 8, 16, 30]
