"""The one argument check every implementation runs before doing any work."""
from __future__ import annotations

from dataclasses import dataclass

from .dtypes import FLOATING, dtype_name


@dataclass(frozen=True)
class Problem:
    """Sizes and dtypes of one validated call."""

    n_tokens: int
    top_k: int
    h: int
    dtype: str  # of y_expert, y_shared, residual and the output
    gate_dtype: str  # of expert_w and sh_logit
    residual: bool
    shared: bool = True  # a sigmoid-gated shared expert (sh_logit, y_shared) is given


def _shape(name: str, x) -> tuple[int, ...]:
    """The shape of an array argument, or a TypeError naming the argument."""
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected an array (numpy.ndarray or mlx.core.array), got {type(x).__name__}")
    return tuple(shape)


def _expect_shape(name: str, x, expected: tuple[int, ...], meaning: str) -> None:
    """Raise ValueError unless `x` has exactly the expected shape."""
    got = _shape(name, x)
    if got != expected:
        raise ValueError(f"{name}: expected shape {expected} = {meaning}, got {got}")


def _expect_dtype(name: str, x, allowed: tuple[str, ...], same_as: tuple[str, str] | None = None) -> str:
    """Raise TypeError unless `x` has an allowed floating dtype (and matches `same_as`)."""
    got = dtype_name(x)
    if got not in allowed:
        raise TypeError(f"{name}: expected a floating dtype in {list(allowed)}, got {got}")
    if same_as is not None and got != same_as[1]:
        raise TypeError(f"{name}: expected dtype {same_as[1]} (the dtype of {same_as[0]}), got {got}")
    return got


def validate(expert_w, y_expert, sh_logit=None, y_shared=None, residual=None, *,
             allowed: tuple[str, ...] = FLOATING) -> Problem:
    """Check shapes and dtypes of one call; raise ValueError/TypeError naming the bad argument.
    sh_logit and y_shared are both None for a model with no gated shared expert."""
    w_shape = _shape("expert_w", expert_w)
    if len(w_shape) != 2 or min(w_shape) < 1:
        raise ValueError(f"expert_w: expected shape (n_tokens, top_k) with both >= 1, got {w_shape}")
    n_tokens, top_k = w_shape
    ye_shape = _shape("y_expert", y_expert)
    h = ye_shape[-1] if ye_shape else 0
    if h < 1 or ye_shape not in ((n_tokens * top_k, h), (n_tokens, top_k, h)):
        raise ValueError(
            f"y_expert: expected shape (n_tokens*top_k, h) = ({n_tokens * top_k}, h) "
            f"or (n_tokens, top_k, h) = ({n_tokens}, {top_k}, h) with h >= 1, got {ye_shape}"
        )
    if (sh_logit is None) != (y_shared is None):
        given, missing = ("sh_logit", "y_shared") if y_shared is None else ("y_shared", "sh_logit")
        raise ValueError(f"{missing}: expected an array because {given} is given (both or neither), got None")
    shared = y_shared is not None
    if shared:
        _expect_shape("y_shared", y_shared, (n_tokens, h), "(n_tokens, h)")
        _expect_shape("sh_logit", sh_logit, (n_tokens,), "(n_tokens,)")
    if residual is not None:
        _expect_shape("residual", residual, (n_tokens, h), "(n_tokens, h)")

    dtype = _expect_dtype("y_expert", y_expert, allowed)
    if shared:
        _expect_dtype("y_shared", y_shared, allowed, ("y_expert", dtype))
    if residual is not None:
        _expect_dtype("residual", residual, allowed, ("y_expert", dtype))
    gate_dtype = _expect_dtype("expert_w", expert_w, allowed)
    if shared:
        _expect_dtype("sh_logit", sh_logit, allowed, ("expert_w", gate_dtype))
    return Problem(n_tokens, top_k, h, dtype, gate_dtype, residual is not None, shared)


def validate_rmsnorm(expert_w, y_expert, sh_logit, y_shared, residual, weight, eps, *,
                     allowed: tuple[str, ...] = FLOATING) -> Problem:
    """Check a fused combine + RMSNorm call: the combine's arguments with the residual required, `weight` of
    shape (h,) in the activations' dtype, and eps a finite number > 0."""
    if residual is None:
        raise ValueError("residual: expected an array of shape (n_tokens, h) (the residual stream the norm is "
                         "taken of), got None")
    p = validate(expert_w, y_expert, sh_logit, y_shared, residual, allowed=allowed)
    _expect_shape("weight", weight, (p.h,), "(h,)")
    _expect_dtype("weight", weight, allowed, ("y_expert", p.dtype))
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < float("inf"):
        raise ValueError(f"eps: expected a finite number > 0, got {eps!r}")
    return p
