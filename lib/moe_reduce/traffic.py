"""What one call must move and compute: the numbers that predict a memory-bound op (no MLX import)."""
from __future__ import annotations

from .dtypes import ITEMSIZE


def bytes_read(n_tokens: int, top_k: int, h: int, dtype: str = "float32", residual: bool = True,
               gate_dtype: str | None = None, shared: bool = True) -> int:
    """Bytes one call must read, each element once: the expert rows, the shared row, the residual, and the router
    weights and gate logit (in gate_dtype)."""
    act = ITEMSIZE[dtype]
    gate = ITEMSIZE[gate_dtype or dtype]
    rows = top_k + (1 if shared else 0) + (1 if residual else 0)  # y_expert rows, y_shared, residual per token
    return n_tokens * h * rows * act + n_tokens * (top_k + (1 if shared else 0)) * gate  # + expert_w, sh_logit


def bytes_moved(n_tokens: int, top_k: int, h: int, dtype: str = "float32", residual: bool = True,
                gate_dtype: str | None = None, shared: bool = True) -> int:
    """Bytes read and written by one call, each element touched once (the minimum any kernel needs)."""
    writes = n_tokens * h * ITEMSIZE[dtype]
    return bytes_read(n_tokens, top_k, h, dtype, residual, gate_dtype, shared) + writes


def flops(n_tokens: int, top_k: int, h: int, residual: bool = True, shared: bool = True) -> int:
    """Floating-point operations of one call: a multiply-add per routed slot and for the shared term,
    one add for the residual (the per-token sigmoid is negligible and not counted)."""
    return n_tokens * h * (2 * top_k + (2 if shared else 0) + (1 if residual else 0))


def arithmetic_intensity(n_tokens: int, top_k: int, h: int, dtype: str = "float32", residual: bool = True,
                         shared: bool = True) -> float:
    """flops per byte moved."""
    return flops(n_tokens, top_k, h, residual, shared) / bytes_moved(n_tokens, top_k, h, dtype, residual,
                                                                     shared=shared)


def bytes_rmsnorm(n_tokens: int, h: int, dtype: str = "float32") -> int:
    """Bytes an RMSNorm kernel of its own moves: read the rows and the weight, write the normed rows."""
    return (2 * n_tokens * h + h) * ITEMSIZE[dtype]


def bytes_fused(n_tokens: int, top_k: int, h: int, dtype: str = "float32", gate_dtype: str | None = None,
                shared: bool = True) -> int:
    """Bytes the fused combine + RMSNorm moves: the combine's (with the residual) plus the weight read once and
    the normed rows written; hidden is written once and never read back from memory."""
    return bytes_moved(n_tokens, top_k, h, dtype, True, gate_dtype, shared) + (n_tokens * h + h) * ITEMSIZE[dtype]


def bytes_two_step(n_tokens: int, top_k: int, h: int, dtype: str = "float32", gate_dtype: str | None = None,
                   shared: bool = True) -> int:
    """Bytes the combine followed by a separate RMSNorm kernel move: hidden is written, then read back."""
    return bytes_moved(n_tokens, top_k, h, dtype, True, gate_dtype, shared) + bytes_rmsnorm(n_tokens, h, dtype)


def fusion_saving(n_tokens: int, top_k: int, h: int, dtype: str = "float32", gate_dtype: str | None = None,
                  shared: bool = True) -> float:
    """The share of the two-step version's bytes that the fused combine + RMSNorm does not move (hidden, not
    read back): 1 - bytes_fused / bytes_two_step."""
    args = (n_tokens, top_k, h, dtype, gate_dtype, shared)
    return 1 - bytes_fused(*args) / bytes_two_step(*args)
