"""The combine step's arguments as one named structure, and seeded, realistic values for them."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import mlx.core as mx
import numpy as np

from .arrays import to_mlx_dtype
from .models import MODELS


GATE_FIELDS = ("expert_w", "sh_logit")  # router outputs: their own dtype (float32 in the benchmarks)


def cast_args(args: NamedTuple, cast: Callable[[Any, str], Any], dtype: str, gate_dtype: str) -> Any:
    """The same named tuple with each given array passed through cast(array, dtype name): gate fields in
    `gate_dtype`, activations in `dtype`."""
    return type(args)(*(None if a is None else cast(a, gate_dtype if f in GATE_FIELDS else dtype)
                        for f, a in zip(args._fields, args)))


def mlx_cast(a: Any, dtype: str) -> mx.array:
    """An MLX copy of an array in a dtype."""
    return mx.array(a).astype(to_mlx_dtype(dtype))


class CombineArgs(NamedTuple):
    """One call's arguments, in the order every implementation takes them (`fn(*args)` works).
    sh_logit and y_shared are both None for a model with no gated shared expert; residual may be None."""

    expert_w: Any  # (n_tokens, top_k) router weights of each token's chosen experts
    y_expert: Any  # (n_tokens * top_k, h), the chosen experts' outputs, top_k rows per token
    sh_logit: Any = None  # (n_tokens,) the shared expert's gate logit
    y_shared: Any = None  # (n_tokens, h) the shared expert's output
    residual: Any = None  # (n_tokens, h) the residual stream

    def mlx(self, dtype: str = "float32", gate_dtype: str = "float32") -> CombineArgs:
        """The same arguments as MLX arrays: activations in `dtype`, expert_w and sh_logit in `gate_dtype`."""
        return cast_args(self, mlx_cast, dtype, gate_dtype)


class FusedArgs(NamedTuple):
    """The arguments of the combine fused with the next RMSNorm (lesson 04): the combine's, the residual
    required, and the norm's weight (h,)."""

    expert_w: Any
    y_expert: Any
    sh_logit: Any
    y_shared: Any
    residual: Any
    weight: Any

    def mlx(self, dtype: str = "float32", gate_dtype: str = "float32") -> FusedArgs:
        """The same arguments as MLX arrays (see CombineArgs.mlx)."""
        return cast_args(self, mlx_cast, dtype, gate_dtype)


def route(router_logits: np.ndarray, top_k: int, renormalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Softmax over experts, keep the top_k largest; returns (weights (T, K), expert ids (T, K))."""
    p = np.exp(router_logits - router_logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ids = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
    w = np.take_along_axis(p, ids, axis=1)
    if renormalize:
        w /= w.sum(axis=1, keepdims=True)
    return w, ids


def make_inputs(n_tokens: int, h: int, top_k: int, *, n_experts: int | None = None, residual: bool = True,
                shared: bool = True, renormalize: bool = True, seed: int = 0, gate_scale: float = 2.0) -> CombineArgs:
    """Draw one call's arguments as float32 NumPy arrays: router logits ~ N(0, 1) over n_experts → softmax →
    top-k weights; expert and shared outputs ~ N(0, 0.5²); residual ~ N(0, 1); gate logits ~ N(0, gate_scale²).
    The scales are plausible, not measured from a model; seeded, so a run is reproducible.
    shared=False leaves out sh_logit and y_shared (a model with no gated shared expert)."""
    if min(n_tokens, h, top_k) < 1:
        raise ValueError(f"n_tokens, h, top_k: expected all >= 1, got {(n_tokens, h, top_k)}")
    n_experts = n_experts or max(8, 4 * top_k)
    if n_experts < top_k:
        raise ValueError(f"n_experts: expected >= top_k = {top_k}, got {n_experts}")
    rng = np.random.default_rng(seed)
    w, _ = route(rng.standard_normal((n_tokens, n_experts)), top_k, renormalize)
    f32 = np.float32
    y_expert = (0.5 * rng.standard_normal((n_tokens * top_k, h))).astype(f32)
    sh_logit = (gate_scale * rng.standard_normal(n_tokens)).astype(f32)
    y_shared = (0.5 * rng.standard_normal((n_tokens, h))).astype(f32)
    res = rng.standard_normal((n_tokens, h)).astype(f32) if residual else None
    return CombineArgs(w.astype(f32), y_expert, sh_logit if shared else None, y_shared if shared else None, res)


def model_inputs(model: str, n_tokens: int, *, residual: bool = True, seed: int = 0) -> CombineArgs:
    """Arguments at a published model's shape (see models.MODELS): the shared term where the model has a shared
    expert, its gate logits +inf where that expert is not gated (sigmoid(+inf) = 1: y_shared added as is)."""
    m = MODELS[model]
    args = make_inputs(n_tokens, m.h, m.top_k, n_experts=m.n_experts, residual=residual, shared=m.shared,
                       renormalize=m.renormalize, seed=seed)
    return args._replace(sh_logit=np.full(n_tokens, np.inf, np.float32)) if m.ungated_shared else args


def make_fused_inputs(n_tokens: int, h: int, top_k: int, *, shared: bool = True, seed: int = 0) -> FusedArgs:
    """make_inputs with the residual, plus an RMSNorm weight ~ 1 + N(0, 0.1²) (learned weights sit near 1)."""
    args = make_inputs(n_tokens, h, top_k, residual=True, shared=shared, seed=seed)
    weight = (1 + 0.1 * np.random.default_rng(seed + 1).standard_normal(h)).astype(np.float32)
    return FusedArgs(*args, weight)
