"""gputime.repeat_medians splits one profile back into calls and repeats; its profiler is replaced here by a
fake that records the kernels the calls launch, so it runs without a GPU."""
from __future__ import annotations

import pytest

from moe_reduce import gputime
from moe_reduce.timing import sync_none


def fake_profile(monkeypatch, launched: list[tuple[str, float]]) -> None:
    """device_activities runs what it is given and returns the kernels the calls appended to `launched`."""
    def activities(run):
        launched.clear()
        run()
        return list(launched)
    monkeypatch.setattr(gputime, "device_activities", activities)


def test_repeat_medians_split_by_call_then_repeat(monkeypatch):
    """Two calls, 3 repeats of 4 chained calls: each repeat's median comes from its own 4 kernels, and an
    unmatched activity (a copy) is left out."""
    launched: list[tuple[str, float]] = []
    fake_profile(monkeypatch, launched)
    counter = {"a": 0, "b": 0}

    def call(key: str, base: float):
        def one(i, prev):
            counter[key] += 1
            launched.append((f"kernel_{key}", base + counter[key]))
            launched.append(("memcpy", 99.0))
            return prev
        return one

    got = gputime.repeat_medians({"a": call("a", 0.0), "b": call("b", 100.0)}, n_sets=2, match="kernel_", per=4,
                                 repeats=3, sync=sync_none)
    # each call was warmed up with 2 launches first (counter 1, 2), so its profiled kernels count from 3
    assert got == {"a": [4.5, 8.5, 12.5], "b": [104.5, 108.5, 112.5]}


def test_repeat_medians_refuse_a_profile_of_another_count(monkeypatch):
    """A profile that lost kernels is an error, not a silent misattribution."""
    launched: list[tuple[str, float]] = []
    fake_profile(monkeypatch, launched)

    def one(i, prev):
        if len(launched) % 2 == 0:  # drops every other kernel
            launched.append(("kernel_x", 1.0))
        else:
            launched.append(("other", 1.0))
        return prev

    with pytest.raises(RuntimeError, match="expected 8 kernels in the profile"):
        gputime.repeat_medians({"x": one}, n_sets=1, match="kernel_", per=4, repeats=2, sync=sync_none)
