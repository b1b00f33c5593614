"""Our kernels inside mlx-lm's MoE models (lesson 06): `patch_mlx_lm` makes every MoE block's combine one call of
`moe_weighted_reduce`, and with fuse_norm=True also folds the residual add and the next RMSNorm into one
`moe_combine_rmsnorm` per layer; `unpatch_mlx_lm` and `patched` undo it.

Python looks `__call__` up on the class, so a patch swaps an instance's class for a subclass made here (the
instance keeps its parameters: the parameter tree does not change). A fused layer hands its normed output to
the norm that would compute it next (the next layer's input_layernorm, or the model's final norm); that norm
returns it when it is called with the very hidden state the fused layer returned, and computes as before
otherwise. Needs mlx-lm (`pip install moe-reduce[mlx-lm]`)."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models import qwen2_moe, qwen3_moe, qwen3_next

from . import kernels
from .backends import pick_backend

# model_type: the MoE block class whose combine is replaced. qwen3_5_moe reuses qwen3_next's block and layer
# structure, but is not checked here, so it is not listed.
MOE_BLOCKS = {
    "qwen2_moe": qwen2_moe.Qwen2MoeSparseMoeBlock,
    "qwen3_moe": qwen3_moe.Qwen3MoeSparseMoeBlock,
    "qwen3_next": qwen3_next.Qwen3NextSparseMoeBlock,
}
NORM_ROUNDING = "before_weight"  # mx.fast.rms_norm's order, which mlx-lm's norms use
# The combine's rounding by default: "per_op" rounds where mlx-lm's separate ops round, so that a patched
# low-precision model computes what the unpatched one does (the combine equals MLX's ops bit for bit on the CPU
# and on an H200, tests/test_rounding.py; patched bfloat16 models gave the unpatched logits bit for bit there:
# results/nvidia-h200-2026-12-07-model); "once" keeps every sum in float32 (kernels.COMBINE_ROUNDINGS).
ROUNDING = "per_op"


def model_type(model: nn.Module) -> str:
    """The mlx-lm model type of a model ("qwen3_moe", ...), or "unknown"."""
    return getattr(model, "model_type", None) or getattr(getattr(model, "args", None), "model_type", "unknown")


def moe_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers whose MoE block can take our kernel: a supported block, not sharded (a sharded block
    adds its partial sums across devices after the combine; not checked here)."""
    block = MOE_BLOCKS[model_type(model)]
    return [layer for layer in model.layers
            if type(layer.mlp) is block and getattr(layer.mlp, "sharding_group", None) is None]


def patch_mlx_lm(model: nn.Module, *, fuse_norm: bool = False, backend: str = "auto", rounding: str = ROUNDING) -> int:
    """Replace the combine of every MoE block of an mlx-lm model (qwen2_moe, qwen3_moe, qwen3_next) with
    moe_weighted_reduce; with fuse_norm=True, replace the combine, the residual add after it and the next
    layer's input RMSNorm (the final norm after the last layer) with one moe_combine_rmsnorm, rounding as
    mx.fast.rms_norm does. rounding: the combine's, "per_op" (as mlx-lm's ops round) or "once". Returns the
    number of decoder layers patched. Dense-MLP layers, sharded MoE blocks and (for fuse_norm) pipelined models
    are left as they are and not counted. Everything is checked before the model is changed."""
    kind = model_type(model)
    if kind not in MOE_BLOCKS:
        raise ValueError(f"model: expected an mlx-lm model of type {' or '.join(MOE_BLOCKS)}, got {kind!r}")
    if any(hasattr(type(m), "patched_from") for m in model.modules()):
        raise ValueError("model: expected an unpatched model, got one already patched (call unpatch_mlx_lm first)")
    backend = pick_backend(backend)
    kernels.rounding_level(rounding, backend)
    layers = moe_layers(model)
    if fuse_norm and getattr(model.model, "pipeline_size", 1) > 1:
        fuse_norm = False
    for layer in layers:
        block = layer.mlp
        block.__class__ = patched_class(type(block), CombinedMoeBlock)
        block.moe_backend, block.moe_rounding = backend, rounding
    if fuse_norm:
        fuse_layers(model, layers)
    return len(layers)


def fuse_layers(model: nn.Module, layers: list[nn.Module]) -> None:
    """Make each of `layers` compute the next norm with its combine, and that norm take what it hands over."""
    norms = [layer.input_layernorm for layer in model.layers[1:]] + [model.model.norm]
    after = dict(zip(map(id, model.layers), norms))
    for layer in layers:
        norm = after[id(layer)]
        norm.__class__ = patched_class(type(norm), HandedRMSNorm)
        layer.__class__ = patched_class(type(layer), FusedDecoderLayer)
        object.__setattr__(layer, "next_norm", norm)  # a plain attribute: not a child module, not a parameter


def unpatch_mlx_lm(model: nn.Module) -> int:
    """Give every module patch_mlx_lm changed its own class back; returns the number of MoE blocks restored."""
    restored = 0
    for m in model.modules():
        original = getattr(type(m), "patched_from", None)
        if original is None:
            continue
        restored += isinstance(m, CombinedMoeBlock)
        m.__class__ = original
        for name in ("moe_backend", "moe_rounding", "next_norm", "handed"):
            m.__dict__.pop(name, None)
    return restored


@contextlib.contextmanager
def patched(model: nn.Module, *, fuse_norm: bool = False, backend: str = "auto",
            rounding: str = ROUNDING) -> Iterator[int]:
    """patch_mlx_lm for the duration of a with block (yields the number of layers patched), then unpatch."""
    n = patch_mlx_lm(model, fuse_norm=fuse_norm, backend=backend, rounding=rounding)
    try:
        yield n
    finally:
        unpatch_mlx_lm(model)


@functools.cache
def patched_class(original: type, mixin: type) -> type:
    """The subclass of `original` whose methods come from `mixin` first; it remembers `original`."""
    return type(f"{mixin.__name__}[{original.__name__}]", (mixin, original), {"patched_from": original})


# ---------------------------------------------------------------- the patched modules


def expert_terms(block: nn.Module, x: mx.array) -> tuple[mx.array, mx.array, mx.array | None, mx.array | None]:
    """The combine's inputs as the block computes them: (scores (n, top_k), expert outputs (n*top_k, h), shared
    gate logit (n,), shared expert output (n, h)) for the n tokens of x; the last two None without a shared
    expert. Routing follows each model's code (qwen2_moe keeps top_k unsorted from the low end)."""
    gates = mx.softmax(block.gate(x), axis=-1, precise=True)
    k = block.top_k
    if isinstance(block, qwen2_moe.Qwen2MoeSparseMoeBlock):
        inds = mx.argpartition(-gates, kth=k - 1, axis=-1)[..., :k]
    else:
        inds = mx.argpartition(gates, kth=-k, axis=-1)[..., -k:]
    inds = mx.stop_gradient(inds)
    scores = mx.take_along_axis(gates, inds, axis=-1)
    if getattr(block, "norm_topk_prob", False):
        scores = scores / scores.sum(axis=-1, keepdims=True)
    y = block.switch_mlp(x, inds)
    h = x.shape[-1]
    n = x.size // h
    if "shared_expert" not in block:
        return scores.reshape(n, k), y.reshape(n * k, h), None, None
    return (scores.reshape(n, k), y.reshape(n * k, h), block.shared_expert_gate(x).reshape(n),
            block.shared_expert(x).reshape(n, h))


class CombinedMoeBlock(nn.Module):
    """An MoE block whose combine (weighted sum of the experts plus the gated shared expert) is our kernel."""

    def __call__(self, x: mx.array) -> mx.array:
        return kernels.moe_weighted_reduce(*expert_terms(self, x), backend=self.moe_backend,
                                           rounding=self.moe_rounding).reshape(x.shape)


class HandedRMSNorm(nn.RMSNorm):
    """An RMSNorm that returns the normed state a fused layer handed it, when called with the hidden state that
    layer returned; otherwise it computes as before."""

    def __call__(self, x: mx.array) -> mx.array:
        handed = self.__dict__.pop("handed", None)
        if handed is not None and handed[0] is x:
            return handed[1]
        return super().__call__(x)


class FusedDecoderLayer(nn.Module):
    """A decoder layer whose combine, residual add and next input RMSNorm are one moe_combine_rmsnorm."""

    def __call__(self, x: mx.array, mask: Any = None, cache: Any = None) -> mx.array:
        attention = self.linear_attn if getattr(self, "is_linear", False) else self.self_attn
        h = x + attention(self.input_layernorm(x), mask, cache)
        terms = expert_terms(self.mlp, self.post_attention_layernorm(h))
        norm = self.next_norm
        hidden, normed = kernels.moe_combine_rmsnorm(
            *terms, h.reshape(-1, h.shape[-1]), norm.weight, norm.eps, backend=self.mlp.moe_backend,
            norm_rounding=NORM_ROUNDING, rounding=self.mlp.moe_rounding)
        hidden = hidden.reshape(h.shape)
        object.__setattr__(norm, "handed", (hidden, normed.reshape(h.shape)))
        return hidden
