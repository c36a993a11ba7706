"""Samples -> model batches: camera images in the models' layout, and stacking into the ``wp_policy.batch`` contract.

Images are prepared exactly like the deployment path (:mod:`wp_policy.runtime.policy`): decode, resize-with-pad
(:func:`wp_policy.image_proc.resize_with_pad`) to the model size, channels first, ``x / 127.5 - 1``. A model image
key with no camera on this robot (LIBERO has no right wrist view) gets zeros and mask False. Training may augment
the resized image first (:mod:`wp_training.augment`, ``data.augment``); without augmentation the pixels equal the
deployment path's.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from wp_policy import batch as B
from wp_policy.image_proc import resize_with_pad
from wp_policy.robot_config import RobotConfig
from wp_training.augment import AugmentConfig, augment_image, sample_rng
from wp_training.rlds_io import decode_image


def model_image(encoded: bytes, size: int, augment: AugmentConfig | None = None, wrist: bool = False,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> ``float32 [3, size, size]`` in [-1, 1], augmented when ``augment`` is given."""
    rgb = resize_with_pad(decode_image(encoded), size, size)
    if augment is not None:
        unit = augment_image(rgb.astype(np.float32) / np.float32(255.0), wrist, augment, rng)
        return np.ascontiguousarray(unit.transpose(2, 0, 1) * np.float32(2.0) - np.float32(1.0))
    out = np.empty((3, size, size), np.float32)
    np.divide(rgb.transpose(2, 0, 1), np.float32(127.5), out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def image_inputs(
    encoded: Mapping[str, bytes], robot: RobotConfig, image_keys: Sequence[str], size: int,
    augment: AugmentConfig | None = None, rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.bool_]]:
    """One step's camera bytes (by rlds_key) -> ``IMAGES`` (model_key -> ``[3, S, S]``) and ``IMAGE_MASKS``;
    with ``augment`` each view is augmented from ``rng`` in ``image_keys`` order (wrist views per the robot)."""
    camera_of = {c.model_key: c for c in robot.cameras}
    images, masks = {}, {}
    for key in image_keys:
        cam = camera_of.get(key)
        if cam is None:
            images[key] = np.zeros((3, size, size), np.float32)
            masks[key] = np.bool_(False)
        else:
            images[key] = model_image(encoded[cam.rlds_key], size, augment, cam.is_wrist, rng)
            masks[key] = np.bool_(True)
    return images, masks


def sample_image_inputs(raw: dict, robot: RobotConfig, image_keys: Sequence[str], size: int,
                        augment: AugmentConfig, seed: int) -> dict:
    """``IMAGES`` + ``IMAGE_MASKS`` of a dataset's compact sample (``images``, ``epoch``, ``episode``, ``step``),
    augmented from :func:`wp_training.augment.sample_rng` when ``augment.enabled``."""
    if augment.enabled:
        rng = sample_rng(seed, raw["epoch"], raw["episode"], raw["step"])
        images, masks = image_inputs(raw["images"], robot, image_keys, size, augment, rng)
    else:
        images, masks = image_inputs(raw["images"], robot, image_keys, size)
    return {B.IMAGES: images, B.IMAGE_MASKS: masks}


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
