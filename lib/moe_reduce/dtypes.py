"""Dtype names the suite uses and their sizes, and the gate inputs' dtype; the name of any array's dtype, NumPy
or MLX (no MLX import)."""
from __future__ import annotations

import numpy as np

ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
FLOATING = tuple(ITEMSIZE)
KERNEL_DTYPES = ("float32", "float16", "bfloat16")  # what the kernels take (Metal has no float64)
GATE_DTYPE = "float32"  # router weights and gate logits stay float32 in every timed call


def dtype_name(x) -> str:
    """Plain dtype name ('float32', 'bfloat16', ...) of a NumPy or MLX array or dtype."""
    dt = getattr(x, "dtype", x)
    if type(dt).__module__.startswith("mlx"):
        return str(dt).rsplit(".", 1)[-1]  # mlx.core.bfloat16 -> bfloat16
    return np.dtype(dt).name
