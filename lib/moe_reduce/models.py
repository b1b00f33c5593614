"""The MoE block shapes of published models that use the combine step (no MLX import). A shared expert that
is not gated (DeepSeek-V3) is the same op with the gate fixed at 1: sh_logit = +inf, sigmoid(+inf) = 1."""
from __future__ import annotations

from dataclasses import dataclass


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
    ungated_shared: bool = False  # a shared expert added as is: this op with the gate fixed at 1 (sh_logit = +inf)

    @property
    def shared(self) -> bool:
        """Whether the op has the shared expert's term, gated or not (y_shared and sh_logit are read)."""
        return self.gated_shared or self.ungated_shared


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
                   "deepseek-ai/DeepSeek-V3 config.json: one shared expert, not gated",
                   ungated_shared=True),
        ModelShape("Mixtral-8x7B", 4096, 8, 2, False, True,
                   "mistralai/Mixtral-8x7B-v0.1 config.json: no shared expert"),
        ModelShape("gpt-oss-120b", 2880, 128, 4, False, True,
                   "openai/gpt-oss-120b config.json: no shared expert"),
    ]
}
