"""Moving arrays between NumPy and MLX: dtype objects by name, and float64 NumPy copies for checking."""
from __future__ import annotations

import mlx.core as mx
import numpy as np

MLX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def to_mlx_dtype(name: str) -> mx.Dtype:
    """The MLX dtype for a name in MLX_DTYPES, or a TypeError naming the choices."""
    if name not in MLX_DTYPES:
        raise TypeError(f"dtype: expected one of {sorted(MLX_DTYPES)}, got {name!r}")
    return MLX_DTYPES[name]


def as_mlx(x):
    """x as an mx.array (None stays None; an mx.array is not copied)."""
    return x if x is None or isinstance(x, mx.array) else mx.array(x)


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """A NumPy copy of a NumPy or MLX array in `dtype` (MLX bfloat16 goes through float32)."""
    if isinstance(x, mx.array):
        if x.dtype == mx.bfloat16:
            x = x.astype(mx.float32)
        x = np.array(x)
    return np.asarray(x, dtype=dtype)


SMALL_POOL_BYTES = 8  # MLX 0.32's CUDA backend keeps arrays of this many bytes or fewer in a managed-memory pool


def out_of_small_pool(x: mx.array) -> mx.array:
    """x itself, or, if it is small enough for MLX's small pool, the same values as a view into the front of a
    16-element array (device memory), as a model passes a gate logit its router matmul made with the router's
    logits."""
    if x.nbytes > SMALL_POOL_BYTES:
        return x
    big = mx.concatenate([x.reshape(-1), mx.zeros((16,), x.dtype)])
    mx.eval(big)
    return big[: x.size].reshape(x.shape)
