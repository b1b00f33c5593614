"""Seeded, realistic inputs for the combine step, and the model shapes they come in."""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .dtypes import to_mlx_dtype


@dataclass(frozen=True)
class ModelShape:
    """The MoE block shape of one published model."""

    name: str
    h: int
    n_experts: int
    top_k: int
    gated_shared: bool  # has a shared expert scaled by sigmoid(sh_logit): exactly this op
    renormalize: bool  # top-k router weights renormalised to sum to 1
    source: str


# hidden_size, num_experts, num_experts_per_tok and the shared expert read from each model's config.json
# and modelling code in Hugging Face Transformers (the "source" column names the checkpoint).
MODELS = {
    m.name: m
    for m in [
        ModelShape("Qwen3.5-35B-A3B", 2048, 256, 8, True, True,
                   "Qwen/Qwen3.5-35B-A3B config.json; Transformers qwen3_5_moe (reuses Qwen3NextSparseMoeBlock)"),
        ModelShape("Qwen3-Next-80B-A3B", 2048, 512, 10, True, True,
                   "Qwen/Qwen3-Next-80B-A3B-Instruct config.json; Transformers qwen3_next"),
        ModelShape("Qwen2-57B-A14B", 3584, 64, 8, True, False,
                   "Qwen/Qwen2-57B-A14B config.json; Transformers qwen2_moe (norm_topk_prob false)"),
        ModelShape("Qwen3-30B-A3B", 2048, 128, 8, False, True,
                   "Qwen/Qwen3-30B-A3B config.json: no shared expert"),
        ModelShape("DeepSeek-V3", 7168, 256, 8, False, True,
                   "deepseek-ai/DeepSeek-V3 config.json: one shared expert, not gated"),
        ModelShape("Mixtral-8x7B", 4096, 8, 2, False, True,
                   "mistralai/Mixtral-8x7B-v0.1 config.json: no shared expert"),
        ModelShape("gpt-oss-120b", 2880, 128, 4, False, True,
                   "openai/gpt-oss-120b config.json: no shared expert"),
    ]
}


@dataclass
class MoEInputs:
    """One call's arguments as float32 NumPy arrays; `.mlx(dtype)` casts them for a kernel."""

    expert_w: np.ndarray  # (n_tokens, top_k)
    y_expert: np.ndarray  # (n_tokens * top_k, h)
    sh_logit: np.ndarray | None  # (n_tokens,), None without a gated shared expert
    y_shared: np.ndarray | None  # (n_tokens, h), None without a gated shared expert
    residual: np.ndarray | None  # (n_tokens, h) or None

    def args(self) -> tuple:
        """(expert_w, y_expert, sh_logit, y_shared, residual) as NumPy arrays."""
        return self.expert_w, self.y_expert, self.sh_logit, self.y_shared, self.residual

    def mlx(self, dtype: str = "float32", gate_dtype: str = "float32") -> tuple:
        """The arguments as MLX arrays: activations in `dtype`, router weights and gate logit in `gate_dtype`."""
        act, gate = to_mlx_dtype(dtype), to_mlx_dtype(gate_dtype)
        cast = lambda a, dt: None if a is None else mx.array(a).astype(dt)
        return (cast(self.expert_w, gate), cast(self.y_expert, act), cast(self.sh_logit, gate),
                cast(self.y_shared, act), cast(self.residual, act))


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
                shared: bool = True, renormalize: bool = True, seed: int = 0, gate_scale: float = 2.0) -> MoEInputs:
    """Draw one call's inputs: router logits ~ N(0, 1) over n_experts → softmax → top-k weights;
    expert and shared outputs ~ N(0, 0.5²); residual ~ N(0, 1); gate logits ~ N(0, gate_scale²).
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
    return MoEInputs(w.astype(f32), y_expert, sh_logit if shared else None, y_shared if shared else None, res)


def model_inputs(model: str, n_tokens: int, *, residual: bool = True, seed: int = 0) -> MoEInputs:
    """Inputs at a published model's shape (see MODELS); the shared term only where the model gates one."""
    m = MODELS[model]
    return make_inputs(n_tokens, m.h, m.top_k, n_experts=m.n_experts, residual=residual, shared=m.gated_shared,
                       renormalize=m.renormalize, seed=seed)
