"""How results are compared with the oracle: error metrics and the per-dtype tolerance table."""
from __future__ import annotations

import numpy as np

from .arrays import to_numpy
from .dtypes import dtype_name

# Largest accepted ‖out − ref‖ / ‖ref‖ by the dtype of the inputs (accumulation is always float32).
# float32: a sum of top_k + 2 rounded terms is ~1e-7 off; float16/bfloat16: the output's own rounding
# (2^-11 and 2^-8 relative) dominates.
TOLERANCE = {"float64": 1e-12, "float32": 1e-6, "float16": 1e-3, "bfloat16": 1e-2}


def rel_error(out, ref) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ in float64; NaN if `out` holds any NaN (an unwritten element fails)."""
    out64, ref64 = to_numpy(out), to_numpy(ref)
    if out64.shape != ref64.shape:
        raise ValueError(f"out: expected shape {ref64.shape} (the reference's), got {out64.shape}")
    if np.isnan(out64).any():
        return float("nan")
    return float(np.linalg.norm(out64 - ref64) / np.linalg.norm(ref64))


def differing(out, ref) -> int:
    """How many elements of out differ in value from ref (NaN counts as differing); NumPy or MLX arrays."""
    return int(np.count_nonzero(to_numpy(out) != to_numpy(ref)))


def worst(errors: list[float]) -> float:
    """The largest error, NaN if any is NaN (max() alone may skip a NaN)."""
    return float("nan") if any(e != e for e in errors) else max(errors)


def max_abs_error(out, ref) -> float:
    """max |out − ref| in float64 (NaN propagates)."""
    return float(np.max(np.abs(to_numpy(out) - to_numpy(ref))))


def tolerance(dtype) -> float:
    """The accepted relative error for inputs of this dtype (a name, NumPy or MLX dtype or array)."""
    return TOLERANCE[dtype if isinstance(dtype, str) else dtype_name(dtype)]
