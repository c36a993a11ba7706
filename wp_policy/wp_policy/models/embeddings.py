"""Input embeddings: sinusoidal time/duration features and the image + text prefix of PaliGemma.

Images are embedded by SigLIP + the multimodal projector *without* scaling (big_vision); a batch may carry SigLIP's
output instead (``VISION_FEATURES``, for a frozen tower), which only skips the tower. Text ids go through Gemma's
``embed_tokens``, which multiplies by sqrt(width) itself in transformers 5.x.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from transformers import PaliGemmaForConditionalGeneration

from wp_policy import batch as B

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


def vision_features(paligemma: PaliGemmaForConditionalGeneration, images: Mapping[str, torch.Tensor],
                    image_keys: tuple[str, ...]) -> torch.Tensor:
    """Views in ``image_keys`` order -> SigLIP's last hidden state [B, V, N, Dv] in the model dtype, before the
    projector: what ``VISION_FEATURES`` carries. Every view goes through SigLIP in one batched call."""
    pixels = torch.stack([images[k] for k in image_keys], dim=1)  # [B, V, 3, H, W]
    b, v = pixels.shape[:2]
    hidden = paligemma.model.vision_tower(pixels.flatten(0, 1).to(paligemma.device, paligemma.dtype))
    return hidden.last_hidden_state.reshape(b, v, *hidden.last_hidden_state.shape[1:])


def embed_images(paligemma: PaliGemmaForConditionalGeneration, views: Mapping, image_keys: tuple[str, ...]):
    """A batch's ``IMAGES`` (or precomputed ``VISION_FEATURES``) and ``IMAGE_MASKS`` -> (tokens [B, V*N, D] in the
    model dtype, valid bool [B, V*N]).

    A view whose mask is False keeps its tokens but marks them invalid, so attention never reads them.
    """
    if B.VISION_FEATURES in views:
        feats = views[B.VISION_FEATURES]
        hidden = torch.stack([feats[k] for k in image_keys], dim=1).to(paligemma.device, paligemma.dtype)
    else:
        hidden = vision_features(paligemma, views[B.IMAGES], image_keys)
    b, v, n = hidden.shape[:3]  # hidden [B, V, N, Dv]
    tokens = paligemma.model.multi_modal_projector(hidden.flatten(0, 1))  # [B*V, N, D]
    valid = torch.stack([views[B.IMAGE_MASKS][k].bool() for k in image_keys], dim=1)  # [B, V]
    return tokens.reshape(b, v * n, -1), valid[:, :, None].expand(b, v, n).reshape(b, v * n)


def embed_text(paligemma: PaliGemmaForConditionalGeneration, tokens: torch.Tensor) -> torch.Tensor:
    """int64 [B, L] -> [B, L, D] (scaled by sqrt(D) inside Gemma's embedding)."""
    return paligemma.model.language_model.embed_tokens(tokens)
