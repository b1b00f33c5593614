"""Dtype names shared by NumPy and MLX arrays, their sizes, and conversion to NumPy."""
from __future__ import annotations

import mlx.core as mx
import numpy as np

ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
FLOATING = tuple(ITEMSIZE)
MLX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
_MLX_NAMES = {d: str(d).rsplit(".", 1)[-1] for d in vars(mx).values() if isinstance(d, mx.Dtype)}


def dtype_name(x) -> str:
    """Plain dtype name ('float32', 'bfloat16', ...) of a NumPy or MLX array or dtype."""
    dt = getattr(x, "dtype", x)
    if isinstance(dt, mx.Dtype):
        return _MLX_NAMES[dt]
    return np.dtype(dt).name


def to_mlx_dtype(name: str) -> mx.Dtype:
    """The MLX dtype for a name in MLX_DTYPES, or a TypeError naming the choices."""
    if name not in MLX_DTYPES:
        raise TypeError(f"dtype: expected one of {sorted(MLX_DTYPES)}, got {name!r}")
    return MLX_DTYPES[name]


def to_numpy(x, dtype=np.float64) -> np.ndarray:
    """A NumPy copy of a NumPy or MLX array (bfloat16 goes through float32) in `dtype`."""
    if isinstance(x, mx.array):
        if x.dtype == mx.bfloat16:
            x = x.astype(mx.float32)
        x = np.array(x)
    return np.asarray(x, dtype=dtype)
