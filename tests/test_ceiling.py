"""The one-thread kernels whose GPU times bench records as launch costs (ceiling.empty_gpu_us)."""
from __future__ import annotations

import mlx.core as mx

from moe_reduce import ceiling
from moe_reduce.backends import compile_shader
from moe_reduce.impls import triton_support


def test_store_kernel_writes_the_length_it_reads_from_its_parameters():
    """shaders/store.metal writes x's length (a kernel parameter, not loaded from memory) into out[0]."""
    kernel = compile_shader("store.metal", ("x",), "host")
    for n in (1, 5):
        (out,) = kernel(inputs=[mx.zeros((n,))], grid=(1, 1, 1), threadgroup=(1, 1, 1), output_shapes=[(1,)],
                        output_dtypes=[mx.float32])
        assert out.tolist() == [float(n)]


def test_store_call_chains_on_its_own_output():
    """empty_call with store.metal feeds each launch the previous output (1 element, so 1.0 each time)."""
    call = ceiling.empty_call("host", shader="store.metal")
    second = call(1, call(0, None))
    mx.eval(second)
    assert second.tolist() == [1.0]


def test_no_mlx_gpu_times_on_the_host_backend():
    """On the host backend neither MLX kernel has a GPU time; Triton's are timed only where Triton runs."""
    found = ceiling.empty_gpu_us("host")
    assert set(found) == {"mlx", "mlx_store", "triton", "triton_store"}
    assert found["mlx"] is None and found["mlx_store"] is None
    if triton_support() is None:
        assert found["triton"] is None and found["triton_store"] is None
