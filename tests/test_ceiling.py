"""The one-thread kernels whose GPU times bench records as launch costs (ceiling.empty_gpu_us)."""
from __future__ import annotations

import mlx.core as mx

from moe_reduce import ceiling


def test_store_kernel_writes_its_input_length_and_chains():
    """shaders/store.metal writes x's length (a kernel parameter) into out[0]; fed its own output, again 1."""
    call = ceiling.empty_call("host", shader="store.metal")
    first = call(0, None)
    second = call(1, first)
    mx.eval(second)
    assert first.tolist() == [1.0] and second.tolist() == [1.0]


def test_gpu_times_are_none_without_a_gpu_backend():
    """On the host backend no one-thread kernel has a GPU time, and every key is there."""
    assert ceiling.empty_gpu_us("host") == dict.fromkeys(("mlx", "mlx_store", "triton", "triton_store"))
