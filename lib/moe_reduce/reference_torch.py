"""The ops as a PyTorch user writes them (imported only where torch exists)."""
from __future__ import annotations

import torch


def torch_combine(expert_w: torch.Tensor, y_expert: torch.Tensor, sh_logit: torch.Tensor | None = None,
                  y_shared: torch.Tensor | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
    """Broadcast multiply, sum over k, plus the sigmoid-gated shared expert and the residual when given."""
    t, k = expert_w.shape
    y = y_expert.view(t, k, -1)
    out = (expert_w.unsqueeze(-1).to(y.dtype) * y).sum(dim=1)
    if y_shared is not None:
        out = out + torch.sigmoid(sh_logit).unsqueeze(-1).to(y.dtype) * y_shared
    return out if residual is None else out + residual


def torch_combine_rmsnorm(expert_w: torch.Tensor, y_expert: torch.Tensor, sh_logit: torch.Tensor | None,
                          y_shared: torch.Tensor | None, residual: torch.Tensor, weight: torch.Tensor,
                          eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The combine with the residual, then an RMSNorm of the result in float32: (hidden, normed)."""
    hidden = torch_combine(expert_w, y_expert, sh_logit, y_shared, residual)
    h = hidden.float()
    normed = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return hidden, normed.to(hidden.dtype)
