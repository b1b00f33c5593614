"""The pointer chase behind the latency measurement: one cycle over every line, followed exactly by the kernel."""
from __future__ import annotations

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


@pytest.mark.skipif("host" not in available_backends(), reason="needs a C++ compiler for the host backend")
@pytest.mark.parametrize("steps", [1, 7, 300])
def test_kernel_follows_the_chain(steps):
    """chase.metal ends where NumPy's walk ends (the host backend runs the same Metal source)."""
    chain = latency.chase_chain(16 << 10, seed=steps)
    out = latency.chase(latency.on_device(chain), steps, "host")
    assert int(np.array(out)[0]) == latency.end_of_chain(chain, steps)
