"""The pointer chase behind the latency measurement: one cycle over every line, followed exactly by the kernel."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import latency
from moe_reduce.backends import available_backends


def test_chain_is_one_cycle_over_every_line():
    """From element 0 the chain visits each 128-byte line once and comes back."""
    chain = latency.chase_chain(64 << 10, seed=3)
    stride, seen, j = latency.LINE // 4, set(), 0
    for _ in range(chain.size // stride):
        assert j % stride == 0 and j not in seen
        seen.add(j)
        j = int(chain[j])
    assert j == 0 and len(seen) == chain.size // stride


def test_footprint_too_small():
    """A chain needs two lines."""
    with pytest.raises(ValueError, match="footprint: expected at least 256 bytes, got 128"):
        latency.chase_chain(128)


HOST = pytest.mark.skipif("host" not in available_backends(), reason="needs a C++ compiler for the host backend")


@HOST
@pytest.mark.parametrize("steps", [1, 7, 300])
def test_kernel_follows_the_chain(steps):
    """chase.metal ends where NumPy's walk from the same start ends (the host backend runs the same Metal
    source)."""
    chain = latency.chase_chain(16 << 10, seed=steps)
    start = int(chain[0])
    out = latency.chase(latency.on_device(chain), mx.array([start], dtype=mx.uint32), steps, "host")
    assert int(np.array(out)[0]) == latency.end_of_chain(chain, steps, start)


@HOST
def test_chained_launches_go_on_where_the_last_ended():
    """Three launches of 50 loads end where one walk of 150 loads ends: no launch starts the chain again."""
    chain = latency.chase_chain(16 << 10, seed=5)
    out = latency.walk(latency.on_device(chain), mx.array([0], dtype=mx.uint32), 50, 3, "host")
    assert int(np.array(out)[0]) == latency.end_of_chain(chain, 150)


def test_timed_loads_follow_the_untimed_ones():
    """measure runs 5 untimed then 5 timed launches of 2,048 loads, then the same of 8,192."""
    assert latency.timed_loads(0) == range(5 * 2048, 10 * 2048)
    assert latency.timed_loads(1) == range(10 * 2048 + 5 * 8192, 10 * 2048 + 10 * 8192)
    assert latency.timed_loads(0, repeats=1) == range(2048, 4096)
