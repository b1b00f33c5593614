"""The op as a PyTorch user writes it (imported only where torch exists)."""
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
