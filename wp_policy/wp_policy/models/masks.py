"""big_vision-style attention masks and RoPE positions from per-token ``valid`` and ``ar`` flags.

``ar[i] = 1`` starts a new causal block: token i sees token j iff ``cumsum(ar)[j] <= cumsum(ar)[i]`` and both are
valid. All-zero flags give a bidirectional block (the prefix), all-one flags a causal sequence. Positions count only
valid tokens: ``cumsum(valid) - 1``, so padding anywhere in the sequence does not shift RoPE.
"""

from __future__ import annotations

import torch


def attention_mask(valid: torch.Tensor, ar: torch.Tensor) -> torch.Tensor:
    """``valid`` bool [B, N], ``ar`` int/bool [B, N] -> bool [B, N, N] (query, key): True = may attend."""
    if valid.shape != ar.shape or valid.ndim != 2:
        raise ValueError(f"valid {tuple(valid.shape)} and ar {tuple(ar.shape)} must both be [B, N]")
    cum = torch.cumsum(ar.long(), dim=1)
    att = cum[:, None, :] <= cum[:, :, None]
    pair = valid[:, None, :] & valid[:, :, None]
    return att & pair


def positions(valid: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """``valid`` bool [B, N] -> int64 [B, N] RoPE positions ``offset + cumsum(valid) - 1`` (``offset`` [B] or int)."""
    pos = torch.cumsum(valid.long(), dim=1) - 1
    if isinstance(offset, torch.Tensor):
        offset = offset.long()[:, None]
    return pos + offset


def additive_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool [B, Q, K] -> [B, 1, Q, K] additive bias in the *query* dtype (0 or the dtype's minimum).

    Building the bias in the query dtype is what keeps bf16 weights with fp32 masks working (SDPA rejects a bias
    whose dtype differs from the query); a finite minimum (not -inf) keeps fully masked rows (padding queries)
    finite instead of NaN.
    """
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    low = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    return torch.where(mask, zero, low)[:, None]
