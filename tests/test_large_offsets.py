"""64-bit offsets: y_expert with more than 2^32 elements (GPU backends only; ~21 GiB in float32)."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moe_reduce import kernels
from moe_reduce.check import rel_error, tolerance
from moe_reduce.reference import reference_f64

GPU = [b for b in kernels.available_backends() if b in ("cuda", "metal")]
T, K, H = 69632, 8, 8192  # T*K*H = 4.56e9 > 2^32 = 4.29e9: tokens >= 65536 sit past the 32-bit range


def _device_memory() -> int:
    """Bytes of memory the GPU backend reports (0 if unknown)."""
    return int(mx.device_info().get("memory_size", 0)) if hasattr(mx, "device_info") else 0


@pytest.mark.skipif(not GPU, reason="needs a GPU backend (cuda or metal)")
@pytest.mark.parametrize("variant", list(kernels.VARIANTS))
def test_offsets_past_2_to_the_32(variant):
    if _device_memory() and _device_memory() < 40 * 2**30:
        pytest.skip("needs about 40 GiB of GPU memory")
    assert T * K * H > 2**32
    key = mx.random.key(1)
    k1, k2, k3 = mx.random.split(key, 3)
    w = mx.softmax(mx.random.normal((T, K), key=k1), axis=-1)
    y = mx.random.normal((T * K, H), key=k2)
    s = mx.random.normal((T,), key=k3)
    ys = mx.ones((T, H)) * 0.25
    out = kernels.moe_weighted_reduce(w, y, s, ys, backend=GPU[0], variant=variant, init_value=float("nan"))
    mx.eval(out)
    for t in [0, 1, 65535, 65536, 66000, T - 1]:  # below and above the 32-bit boundary
        rows = slice(t * K, (t + 1) * K)
        ref = reference_f64(np.array(w[t:t + 1]), np.array(y[rows]), np.array(s[t:t + 1]), np.array(ys[t:t + 1]))
        assert rel_error(out[t:t + 1], ref) < tolerance("float32"), f"token {t}"
