"""The kernels of msl_host.examples against MLX itself: the matrix product against a @ b, the row kernels
(in the shape of MLX's own) against mx.fast.rms_norm, mx.softmax and mx.sum, in float32, float16 and
bfloat16."""

import mlx.core as mx
import pytest

from msl_host import examples
from msl_testing import rel_err

DTYPES = [mx.float32, mx.float16, mx.bfloat16]
# rel_err is max-normalised; the outputs are rounded to the dtype, and MLX and we sum in different orders.
TOL = {mx.float32: 2e-6, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}
# exp(x - max) of x near 30 loses |x| * 2^-24 relative in float32 whichever way it is summed
SOFTMAX_TOL = {mx.float32: 2e-5, mx.float16: 2e-3, mx.bfloat16: 1.6e-2}
# Row lengths: over a SIMD group, over the group's 1024 threads, over N_READS * 1024 (the looped form).
LENGTHS = [33, 1000, 4099 * 2 + 1]


def random(shape, dtype, seed):
    """Fresh random normal values of `dtype`."""
    return (mx.random.normal(shape, key=mx.random.key(seed)) + 0.25).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_rms_norm_row(n, dtype):
    x, w = random((8, n), dtype, n), random((n,), dtype, n + 1)
    got = examples.rms_norm(x, w, 1e-5)
    assert got.dtype == dtype
    assert rel_err(got, mx.fast.rms_norm(x, w, 1e-5)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_softmax_row(n, dtype):
    x = random((8, n), dtype, 2 * n) * 4 + 30  # large values: the row maximum must be subtracted
    got = examples.softmax(x)
    assert got.dtype == dtype
    assert rel_err(got, mx.softmax(x.astype(mx.float32), axis=-1)) < SOFTMAX_TOL[dtype]


@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [33, 1000, 100_003])
def test_sum_all(n, dtype, passes):
    x = random((n,), dtype, 3 * n)
    got = examples.sum_all(x, passes, chunk=2048)
    want = mx.sum(x.astype(mx.float32))
    assert abs(got.item() - want.item()) <= 1e-5 * mx.sum(mx.abs(x.astype(mx.float32))).item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 8, 257), (64, 8, 2048), (5, 300, 7)])
def test_matmul(shape, dtype):
    m, k, n = shape
    a, b = random((m, k), dtype, k), random((k, n), dtype, n)
    got = examples.matmul(a, b)
    assert got.dtype == dtype
    want = a.astype(mx.float32) @ b.astype(mx.float32)  # the kernel sums in float, rounds once
    assert rel_err(got, want) < TOL[dtype] * (4 if dtype != mx.float32 else 1)
