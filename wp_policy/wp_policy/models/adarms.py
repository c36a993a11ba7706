"""Adaptive RMSNorm for the action expert (Pi0.5), which transformers lacks.

``xn = x * rsqrt(mean(x^2) + eps)`` in fp32; ``scale, shift, gate = dense(cond)`` (zero-initialised, so a fresh
expert starts as the identity on its residual stream); ``y = xn * (1 + scale) + shift``. The caller adds the branch
output as ``x + branch(y) * gate`` (:func:`gated_residual`). The parameter name ``dense`` matches openpi checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaRMSNorm(nn.Module):
    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.dense = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` [B, N, dim], ``cond`` [B, cond_dim] -> (normalised x [B, N, dim] in x's dtype, gate [B, 1, dim])."""
        xf = x.float()
        xn = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        scale, shift, gate = self.dense(cond.to(self.dense.weight.dtype)).float()[:, None].chunk(3, dim=-1)
        return (xn * (1.0 + scale) + shift).to(x.dtype), gate.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return x + y * gate
