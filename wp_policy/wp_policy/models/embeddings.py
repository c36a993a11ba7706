"""Input embeddings: sinusoidal time/duration features and the image + text prefix of PaliGemma.

Images are embedded by SigLIP + the multimodal projector *without* scaling (big_vision); text ids go through
Gemma's ``embed_tokens``, which multiplies by sqrt(width) itself in transformers 5.x.
"""

from __future__ import annotations

import math

import torch
from transformers import PaliGemmaForConditionalGeneration

MIN_PERIOD = 4e-3
MAX_PERIOD = 4.0


def sinusoidal_embedding(x: torch.Tensor, dim: int, min_period: float = MIN_PERIOD,
                         max_period: float = MAX_PERIOD) -> torch.Tensor:
    """``x`` [B] (flow time in [0, 1] or a scaled duration) -> float [B, dim] ``cat(sin, cos)``.

    Computed in float64 (float32 where the device has none) because the shortest period (4e-3) loses precision
    in low-precision arithmetic; the caller casts to the model dtype.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=dtype, device=x.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi / period)[None, :] * x.to(dtype)[:, None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def embed_images(paligemma: PaliGemmaForConditionalGeneration, images: dict[str, torch.Tensor],
                 image_masks: dict[str, torch.Tensor], image_keys: tuple[str, ...]):
    """Views in ``image_keys`` order -> (tokens [B, V*N, D] in the model dtype, valid bool [B, V*N]).

    Every view goes through SigLIP in one batched call; a view whose mask is False keeps its tokens but marks them
    invalid, so attention never reads them.
    """
    dtype = paligemma.dtype
    pixels = torch.stack([images[k] for k in image_keys], dim=1)  # [B, V, 3, H, W]
    b, v = pixels.shape[:2]
    feats = paligemma.model.get_image_features(pixels.flatten(0, 1).to(paligemma.device, dtype)).pooler_output
    n = feats.shape[1]  # feats [B*V, N, D]
    valid = torch.stack([image_masks[k].bool() for k in image_keys], dim=1)  # [B, V]
    return feats.reshape(b, v * n, -1), valid[:, :, None].expand(b, v, n).reshape(b, v * n)


def embed_text(paligemma: PaliGemmaForConditionalGeneration, tokens: torch.Tensor) -> torch.Tensor:
    """int64 [B, L] -> [B, L, D] (scaled by sqrt(D) inside Gemma's embedding)."""
    return paligemma.model.language_model.embed_tokens(tokens)
