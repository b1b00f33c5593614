"""Helpers shared by the msl_host tests."""

import mlx.core as mx
import numpy as np


def as_f64(a) -> np.ndarray:
    """Any mx/numpy array as float64 numpy."""
    return np.asarray(a.astype(mx.float32) if isinstance(a, mx.array) else a, np.float64)


def rel_err(got, want) -> float:
    """max |got - want| / max(|want|, tiny)."""
    got, want = as_f64(got), as_f64(want)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))
