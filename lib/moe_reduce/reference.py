"""The op written plainly, once per array library: NumPy (the float64 oracle, and float32 in the kernel's
summation order) and MLX (eager, and through mx.compile). The PyTorch version is in reference_torch."""
from __future__ import annotations

import mlx.core as mx
import numpy as np

from .arrays import as_mlx, to_numpy
from .dtypes import KERNEL_DTYPES
from .validate import validate


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow: e^-|x| never exceeds 1, so ±1000 gives exactly 0 and 1.
    e^-|x| may underflow to a subnormal or 0; that is the right answer, so the underflow flag is ignored
    even if the caller set np.errstate(all="raise")."""
    with np.errstate(under="ignore"):
        z = np.exp(-np.abs(x))
        one = np.ones_like(z)
        return np.where(x >= 0, one / (one + z), z / (one + z))


def numpy_combine(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None, *, dtype=np.float64) -> np.ndarray:
    """The op in NumPy, every input converted to `dtype` and every step rounded to it, in the kernel's order:
    k = 0 .. top_k-1, then the gated shared term (if given), then the residual (if given); returns (n_tokens, h)."""
    p = validate(expert_w, y_expert, sh_logit, y_shared, residual)
    w = to_numpy(expert_w, dtype)
    y = to_numpy(y_expert, dtype).reshape(p.n_tokens, p.top_k, p.h)
    acc = np.zeros((p.n_tokens, p.h), dtype)
    for k in range(p.top_k):
        acc = acc + w[:, k, None] * y[:, k, :]
    if p.shared:
        acc = acc + sigmoid(to_numpy(sh_logit, dtype))[:, None] * to_numpy(y_shared, dtype)
    if residual is not None:
        acc = acc + to_numpy(residual, dtype)
    return acc


def reference_f64(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None) -> np.ndarray:
    """The float64 oracle every implementation is checked against."""
    return numpy_combine(expert_w, y_expert, sh_logit, y_shared, residual, dtype=np.float64)


def reference_kernel_order(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None) -> np.ndarray:
    """float32 arithmetic in the kernel's order: the error a correct float32 kernel should have."""
    return numpy_combine(expert_w, y_expert, sh_logit, y_shared, residual, dtype=np.float32)


def rmsnorm_f64(x, weight, eps: float) -> np.ndarray:
    """RMSNorm of each row in float64: x / sqrt(mean(x^2) + eps) * weight."""
    x64 = to_numpy(x)
    return x64 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + eps) * to_numpy(weight)


def reference_combine_rmsnorm_f64(expert_w, y_expert, sh_logit, y_shared, residual, weight,
                                  eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The oracle of the fused op: (hidden, normed) in float64, hidden being the combine with the residual."""
    hidden = reference_f64(expert_w, y_expert, sh_logit, y_shared, residual)
    return hidden, rmsnorm_f64(hidden, weight, eps)


def mlx_combine(expert_w: mx.array, y_expert: mx.array, sh_logit: mx.array | None = None,
                y_shared: mx.array | None = None, residual: mx.array | None = None) -> mx.array:
    """Routed sum, plus the gated shared expert and the residual when given, as MLX ops (no checks)."""
    t, k = expert_w.shape
    y = y_expert.reshape(t, k, -1)
    out = (expert_w[:, :, None].astype(y.dtype) * y).sum(axis=1)
    if y_shared is not None:
        out = out + mx.sigmoid(sh_logit)[:, None].astype(y.dtype) * y_shared
    return out if residual is None else out + residual


mlx_combine_compiled = mx.compile(mlx_combine)


def mlx_reference(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None, *,
                  compiled: bool = False) -> mx.array:
    """The op as plain MLX ops in the inputs' dtype, after the argument check; `compiled=True` runs it
    through mx.compile."""
    args = (expert_w, y_expert, sh_logit, y_shared, residual)
    validate(*args, allowed=KERNEL_DTYPES)
    args = [as_mlx(a) for a in args]
    return (mlx_combine_compiled if compiled else mlx_combine)(*args)


# ---------------------------------------------------------------- MLX's separate ops in a half type (rounding per op)


def rounded_to(x: np.ndarray, dtype: mx.Dtype) -> np.ndarray:
    """x rounded to an MLX dtype, back as float32."""
    return np.array(mx.array(np.asarray(x, np.float32)).astype(dtype).astype(mx.float32))


def every_finite(dtype: mx.Dtype) -> mx.array:
    """Every finite value of a 16-bit float dtype, as an array of it."""
    x = mx.array(np.arange(2**16, dtype=np.uint16)).view(dtype)
    return x[mx.array(np.flatnonzero(np.isfinite(np.array(x.astype(mx.float32)))))]


def sigmoid_per_op(x: np.ndarray, dtype: mx.Dtype, level: int) -> np.ndarray:
    """MLX's sigmoid of x (values of dtype, as float32) as kernels.rounding_level's level rounds it: e = exp|x|
    rounded to dtype, y = 1 / (1 + e), and 1 - y for x > 0, rounded; level 1 (MLX's CPU, measured) leaves 1 + e and
    y in float32, level 2 (the half-type operators of MLX's CUDA source) rounds them too."""
    with np.errstate(over="ignore"):
        e = rounded_to(np.exp(np.abs(x)), dtype)
    d = rounded_to(1 + e, dtype) if level >= 2 else 1 + e
    y = rounded_to(1 / d, dtype) if level >= 2 else 1 / d
    return rounded_to(np.where(x < 0, y, 1 - y), dtype)
