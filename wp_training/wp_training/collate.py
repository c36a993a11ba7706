"""Samples -> model batches: camera images in the models' layout, and stacking into the ``wp_policy.batch`` contract.

Images are prepared exactly like the deployment path (:mod:`wp_policy.runtime.policy`): decode, resize-with-pad
(:func:`wp_policy.image_proc.resize_with_pad`) to the model size, channels first, ``x / 127.5 - 1``. A model image
key with no camera on this robot (LIBERO has no right wrist view) gets zeros and mask False.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from wp_policy import batch as B
from wp_policy.image_proc import resize_with_pad
from wp_policy.robot_config import RobotConfig
from wp_training.rlds_io import decode_image


def model_image(encoded: bytes, size: int) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> ``float32 [3, size, size]`` in [-1, 1]."""
    rgb = resize_with_pad(decode_image(encoded), size, size)
    out = np.empty((3, size, size), np.float32)
    np.divide(rgb.transpose(2, 0, 1), np.float32(127.5), out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def image_inputs(
    encoded: Mapping[str, bytes], robot: RobotConfig, image_keys: Sequence[str], size: int
) -> tuple[dict[str, np.ndarray], dict[str, np.bool_]]:
    """One step's camera bytes (by rlds_key) -> ``IMAGES`` (model_key -> ``[3, S, S]``) and ``IMAGE_MASKS``."""
    rlds_of = {c.model_key: c.rlds_key for c in robot.cameras}
    images, masks = {}, {}
    for key in image_keys:
        rlds_key = rlds_of.get(key)
        if rlds_key is None:
            images[key] = np.zeros((3, size, size), np.float32)
            masks[key] = np.bool_(False)
        else:
            images[key] = model_image(encoded[rlds_key], size)
            masks[key] = np.bool_(True)
    return images, masks


def camera_masks(robot: RobotConfig, image_keys: Sequence[str]) -> dict[str, np.bool_]:
    """``IMAGE_MASKS`` of one sample: True for the model keys this robot has a camera for."""
    have = {c.model_key for c in robot.cameras}
    return {key: np.bool_(key in have) for key in image_keys}


def collate(samples: list[dict]) -> dict:
    """Stack samples (numpy, one per example) into torch tensors with a leading batch dim; image dicts stay dicts.

    Output shapes follow :mod:`wp_policy.batch` (e.g. ``IMAGES[key] float32 [B, 3, H, W]``, ``TOKENS int64 [B, L]``).
    """
    if not samples:
        raise ValueError("collate got an empty list of samples")
    keys = set(samples[0])
    for i, s in enumerate(samples):
        if set(s) != keys:
            raise ValueError(f"sample {i} has keys {sorted(s)}, sample 0 has {sorted(keys)}")
    out = {}
    for key in samples[0]:
        first = samples[0][key]
        if isinstance(first, dict):
            out[key] = {k: _stack([s[key][k] for s in samples], f"{key}[{k!r}]") for k in first}
        else:
            out[key] = _stack([s[key] for s in samples], key)
    for key, img in out.get(B.IMAGES, {}).items():
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{B.IMAGES}[{key!r}] must be [B, 3, H, W] (channels first), got {tuple(img.shape)}")
    return out


def _stack(values: list, name: str) -> torch.Tensor:
    shapes = {np.shape(v) for v in values}
    if len(shapes) != 1:
        raise ValueError(f"{name}: samples disagree on the shape: {sorted(shapes)}")
    return torch.from_numpy(np.stack([np.asarray(v) for v in values]))
