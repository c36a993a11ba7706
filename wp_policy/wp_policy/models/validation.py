"""Checks on model inputs, so that a wrong layout, dim or value fails with a message naming it.

Wrong inputs otherwise fail deep inside SigLIP/Gemma (or, worse, run: a channels-last image of the right size, a
[0, 255] image, an unpadded proprio vector). Each check raises :class:`ModelInputError` naming the key, the
expected and the actual shape/value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from wp_policy import batch as B

RANGE_TOL = 1e-3


class ModelInputError(ValueError):
    """A model input is missing or has the wrong layout, shape, dtype or values."""


def require(batch: Mapping, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ModelInputError(f"batch lacks key(s) {missing}; present: {sorted(batch)}")


def check_finite(name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ModelInputError(f"{name} contains NaN or inf")


def check_views(views: Mapping, image_keys: tuple[str, ...], vision) -> int:
    """A batch's camera input, ``IMAGES`` or (for a frozen tower) ``VISION_FEATURES``, plus ``IMAGE_MASKS`` for
    exactly ``image_keys``; ``vision`` is the model's VisionSpec. Returns B."""
    require(views, (B.IMAGE_MASKS,))
    if B.VISION_FEATURES in views:
        if B.IMAGES in views:
            raise ModelInputError(f"batch holds both {B.IMAGES} and {B.VISION_FEATURES}; pass one of them")
        tokens = (vision.image_size // vision.patch_size) ** 2
        return check_vision_features(views[B.VISION_FEATURES], views[B.IMAGE_MASKS], image_keys, tokens,
                                     vision.width)
    require(views, (B.IMAGES,))
    return check_images(views[B.IMAGES], views[B.IMAGE_MASKS], image_keys, vision.image_size)


def check_images(images: Mapping[str, torch.Tensor], image_masks: Mapping[str, torch.Tensor],
                 image_keys: tuple[str, ...], image_size: int) -> int:
    """Images ``float [B, 3, S, S]`` in [-1, 1] and masks ``bool [B]`` for exactly ``image_keys``; returns B."""
    _check_keys(images, image_masks, image_keys, B.IMAGES)
    for key in image_keys:
        img = images[key]
        if not isinstance(img, torch.Tensor) or not img.is_floating_point() or img.ndim != 4:
            raise ModelInputError(f"images[{key!r}] must be a float tensor [B, 3, {image_size}, {image_size}], "
                                  f"got {_describe(img)}")
        if img.shape[1] != 3 and img.shape[-1] == 3:
            raise ModelInputError(f"images[{key!r}] is channels-last {tuple(img.shape)}; the models take "
                                  f"channels-first [B, 3, H, W] (use x.permute(0, 3, 1, 2))")
        if tuple(img.shape[1:]) != (3, image_size, image_size):
            raise ModelInputError(f"images[{key!r}] has shape {tuple(img.shape)}, expected [B, 3, {image_size}, "
                                  f"{image_size}]")
        check_finite(f"images[{key!r}]", img)
        lo, hi = float(img.min()), float(img.max())
        if lo < -1 - RANGE_TOL or hi > 1 + RANGE_TOL:
            raise ModelInputError(f"images[{key!r}] values span [{lo:.3g}, {hi:.3g}]; expected [-1, 1] "
                                  f"(uint8 pixels map as x / 127.5 - 1)")
    return _check_masks(images, image_masks, image_keys)


def check_vision_features(features: Mapping[str, torch.Tensor], image_masks: Mapping[str, torch.Tensor],
                          image_keys: tuple[str, ...], tokens: int, width: int) -> int:
    """Vision features ``float [B, tokens, width]`` and masks ``bool [B]`` for exactly ``image_keys``; returns B."""
    _check_keys(features, image_masks, image_keys, B.VISION_FEATURES)
    for key in image_keys:
        feat = features[key]
        if not isinstance(feat, torch.Tensor) or not feat.is_floating_point() or tuple(feat.shape[1:]) != (tokens,
                                                                                                            width):
            raise ModelInputError(f"{B.VISION_FEATURES}[{key!r}] must be a float tensor [B, {tokens}, {width}] (the "
                                  f"vision tower's last hidden state), got {_describe(feat)}")
        check_finite(f"{B.VISION_FEATURES}[{key!r}]", feat)
    return _check_masks(features, image_masks, image_keys)


def _check_keys(views: Mapping, image_masks: Mapping, image_keys: tuple[str, ...], name: str) -> None:
    for what, d in ((name, views), (B.IMAGE_MASKS, image_masks)):
        if set(d) != set(image_keys):
            raise ModelInputError(
                f"{what} keys {sorted(d)} do not match the model's image_keys {list(image_keys)}; pass every view "
                f"(zeros with image_masks False for a camera that is missing)"
            )


def _check_masks(views: Mapping[str, torch.Tensor], image_masks: Mapping, image_keys: tuple[str, ...]) -> int:
    """Masks ``bool [B]`` matching each view's batch size, one batch size for all views; returns it."""
    sizes = set()
    for key in image_keys:
        n = views[key].shape[0]
        mask = image_masks[key]
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (n,):
            raise ModelInputError(f"image_masks[{key!r}] must be a bool tensor [{n}], got {_describe(mask)}")
        sizes.add(n)
    if len(sizes) != 1:
        raise ModelInputError(f"views disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def check_tensor(name: str, x, shape: tuple[int, ...], floating: bool) -> None:
    """``x`` must be a tensor of ``shape`` (float or integer/bool as ``floating`` says) with finite values."""
    if not isinstance(x, torch.Tensor):
        raise ModelInputError(f"{name} must be a torch.Tensor {list(shape)}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ModelInputError(f"{name} has shape {tuple(x.shape)}, expected {list(shape)}")
    if floating != x.is_floating_point():
        raise ModelInputError(f"{name} must be a {'float' if floating else 'integer/bool'} tensor, got {x.dtype}")
    if floating:
        check_finite(name, x)


def check_tokens(tokens, mask, batch_size: int, vocab_size: int, names=(B.TOKENS, B.INPUT_MASK)) -> None:
    """``tokens`` int [B, L] with ids in [0, vocab_size) and ``mask`` bool [B, L] with at least one real token."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ModelInputError(f"{names[0]} must be an int tensor [B, L], got {_describe(tokens)}")
    check_tensor(names[0], tokens, (batch_size, tokens.shape[1]), floating=False)
    check_tensor(names[1], mask, tuple(tokens.shape), floating=False)
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ModelInputError(f"{names[0]} ids span [{int(tokens.min())}, {int(tokens.max())}], outside the "
                              f"model vocabulary [0, {vocab_size})")
    if not bool(mask.bool().any(dim=1).all()):
        raise ModelInputError(f"{names[1]}: every sample needs at least one real token")


def check_prefix_then_postfix(ar: torch.Tensor, mask: torch.Tensor, name: str = B.AR_MASK) -> None:
    """Over real tokens, ar flags must be 0s then 1s (a bidirectional prefix, then a causal postfix): the only
    pattern the planner's ``token_type_ids`` masking expresses."""
    real = torch.where(mask.bool(), ar.long(), 0)
    seen = torch.cummax(real, dim=1).values  # padding (any side) never counts
    if bool((mask.bool() & (real < seen)).any()):
        raise ModelInputError(f"{name} must be 0 (prefix) then 1 (postfix) over real tokens, got a 1 -> 0 step")


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {tuple(x.shape)}"
    return type(x).__name__
