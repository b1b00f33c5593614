"""64-bit offsets: y_expert with more than 2^32 elements (GPU backends only; ~21 GiB in float32)."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import kernels
from moe_reduce.backends import available_backends
from moe_reduce.check import rel_error, tolerance
from moe_reduce.reference import reference_f64

GPU = [b for b in available_backends() if b in ("cuda", "metal")]
T, K, H = 69632, 8, 8192  # T*K*H = 4.56e9 > 2^32 = 4.29e9: tokens >= 65536 sit past the 32-bit range
BLOCK = 4096  # rows of y_expert drawn at random, then repeated with a different offset per block


def _device_memory() -> int:
    """Bytes of memory the GPU backend reports (0 if unknown)."""
    return int(mx.device_info().get("memory_size", 0)) if hasattr(mx, "device_info") else 0


def _y_expert() -> np.ndarray:
    """(T*K, H) float32 where no row equals the row 2^32 elements earlier (a wrapped 32-bit offset reads that one)."""
    base = np.random.default_rng(2).standard_normal((BLOCK, H), dtype=np.float32)
    y = np.empty((T * K, H), np.float32)
    for b in range(0, T * K, BLOCK):
        np.add(base, np.float32(b // BLOCK), out=y[b:b + BLOCK])
    return y


@pytest.mark.skipif(not GPU, reason="needs a GPU backend (cuda or metal)")
def test_offsets_past_2_to_the_32():
    if _device_memory() and _device_memory() < 48 * 2**30:
        pytest.skip("needs about 48 GiB of GPU memory")
    assert T * K * H > 2**32
    rng = np.random.default_rng(3)
    w = rng.random((T, K), dtype=np.float32)
    s = rng.standard_normal(T, dtype=np.float32)
    ys = rng.standard_normal((T, H), dtype=np.float32)
    y_np = _y_expert()
    y = mx.array(y_np)
    for variant in kernels.VARIANTS:
        out = kernels.moe_weighted_reduce(w, y, s, ys, backend=GPU[0], variant=variant, init_value=float("nan"))
        mx.eval(out)
        for t in [0, 1, 65535, 65536, 66000, T - 1]:  # below and above the 32-bit boundary
            rows = slice(t * K, (t + 1) * K)
            ref = reference_f64(w[t:t + 1], y_np[rows], s[t:t + 1], ys[t:t + 1])
            assert rel_error(out[t:t + 1], ref) < tolerance("float32"), f"{variant}: token {t}"
        del out
