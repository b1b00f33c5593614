"""What one call must move and compute: the numbers that predict a memory-bound op."""
from __future__ import annotations

from .dtypes import ITEMSIZE


def bytes_moved(n_tokens: int, top_k: int, h: int, dtype: str = "float32", residual: bool = True,
                gate_dtype: str | None = None) -> int:
    """Bytes read and written by one call, each element touched once (the minimum any kernel needs)."""
    act = ITEMSIZE[dtype]
    gate = ITEMSIZE[gate_dtype or dtype]
    reads = (n_tokens * top_k * h + n_tokens * h * (2 if residual else 1)) * act  # y_expert, y_shared, residual
    reads += (n_tokens * top_k + n_tokens) * gate  # expert_w, sh_logit
    writes = n_tokens * h * act
    return reads + writes


def flops(n_tokens: int, top_k: int, h: int, residual: bool = True) -> int:
    """Floating-point operations of one call: a multiply-add per routed slot and for the shared term,
    one add for the residual (the per-token sigmoid is negligible and not counted)."""
    return n_tokens * h * (2 * top_k + 2 + (1 if residual else 0))


def arithmetic_intensity(n_tokens: int, top_k: int, h: int, dtype: str = "float32", residual: bool = True) -> float:
    """flops per byte moved."""
    return flops(n_tokens, top_k, h, residual) / bytes_moved(n_tokens, top_k, h, dtype, residual)
