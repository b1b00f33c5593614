"""mlx-lm MoE models built from published configurations with random weights, nothing downloaded (lesson 06).

The numbers are the published config.json values of each checkpoint on the Hugging Face hub (Qwen/Qwen1.5-MoE-
A2.7B, Qwen/Qwen3-30B-A3B, Qwen/Qwen3-Next-80B-A3B-Instruct), written here from those files as quoted in public
repositories, not fetched at run time; only the fields mlx-lm's ModelArgs read are kept. `tiny=True` cuts every
width for tests on a CPU and keeps each model's structure (top_k, shared expert, norm_topk_prob, layer kinds)."""
from __future__ import annotations

import importlib

import mlx.core as mx
import mlx.nn as nn

from .arrays import to_mlx_dtype

CONFIGS = {
    "Qwen1.5-MoE-A2.7B": dict(
        model_type="qwen2_moe", hidden_size=2048, intermediate_size=5632, num_hidden_layers=24,
        num_attention_heads=16, num_key_value_heads=16, vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1e6,
        num_experts=60, num_experts_per_tok=4, moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
        tie_word_embeddings=False),
    "Qwen3-30B-A3B": dict(
        model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144, num_hidden_layers=48,
        num_attention_heads=32, num_key_value_heads=4, head_dim=128, vocab_size=151936, rms_norm_eps=1e-6,
        rope_theta=1e6, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], max_position_embeddings=40960, tie_word_embeddings=False),
    "Qwen3-Next-80B-A3B": dict(
        model_type="qwen3_next", hidden_size=2048, intermediate_size=5120, num_hidden_layers=48,
        num_attention_heads=16, num_key_value_heads=2, head_dim=256, vocab_size=151936, rms_norm_eps=1e-6,
        rope_theta=1e7, partial_rotary_factor=0.25, max_position_embeddings=262144, num_experts=512,
        num_experts_per_tok=10, moe_intermediate_size=512, shared_expert_intermediate_size=512,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], linear_num_value_heads=32,
        linear_num_key_heads=16, linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4,
        full_attention_interval=4, tie_word_embeddings=False),
}
# Widths for CPU tests: h = 64 and 16 experts; top_k, the shared expert and the routing flags stay as published.
# qwen3_next gets a full-attention layer every 2 layers so that 2 layers hold one of each kind.
TINY = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            vocab_size=512, num_experts=16, moe_intermediate_size=32, shared_expert_intermediate_size=48,
            linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
            full_attention_interval=2)
NORM_WEIGHT_SPREAD = 0.1  # RMSNorm weights drawn as 1 + N(0, 0.1^2): trained ones sit near 1, and not all at 1


def model_config(name: str, *, n_layers: int, tiny: bool = False, **changes) -> dict:
    """A model's configuration with n_layers decoder layers (tiny widths if asked), then `changes` applied."""
    if name not in CONFIGS:
        raise ValueError(f"name: expected one of {sorted(CONFIGS)}, got {name!r}")
    config = dict(CONFIGS[name], num_hidden_layers=n_layers)
    if tiny:
        config.update({k: v for k, v in TINY.items() if k in config})
    if config.get("full_attention_interval", 0) > n_layers:
        config["full_attention_interval"] = n_layers  # mlx-lm's qwen3_next needs one full-attention layer
    return {**config, **changes}


def build_model(name: str, *, n_layers: int, dtype: str = "float32", tiny: bool = False, seed: int = 0,
                **changes) -> nn.Module:
    """The mlx-lm model of a configuration (model_config's arguments) with random weights: mlx-lm's own
    initialisers, RMSNorm weights 1 + N(0, 0.1^2); the same seed gives the same weights in any dtype."""
    config = model_config(name, n_layers=n_layers, tiny=tiny, **changes)
    arch = importlib.import_module(f"mlx_lm.models.{config['model_type']}")
    mx.random.seed(seed)
    model = arch.Model(arch.ModelArgs.from_dict(config))
    for norm in (m for m in model.modules() if isinstance(m, nn.RMSNorm)):
        norm.weight = 1 + NORM_WEIGHT_SPREAD * mx.random.normal(norm.weight.shape)
    model.set_dtype(to_mlx_dtype(dtype))
    mx.eval(model.parameters())
    return model
