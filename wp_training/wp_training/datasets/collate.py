"""RLDS camera bytes -> the models' ``IMAGES`` / ``IMAGE_MASKS``, through the shared transforms.

Decoding is the only training-specific step before :func:`wp_policy.transforms.image_inputs`, the one
implementation the runtime policy uses too (resize-with-pad, channels first, ``x / 127.5 - 1``, missing-view
masks). Training may augment the resized image (:mod:`wp_training.datasets.augment`, ``data.augment``) through that
function's hook; without augmentation the pixels equal the deployment path's. Batches are stacked by
:func:`wp_policy.transforms.collate`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from wp_policy import batch as B
from wp_policy.robot_config import CameraConfig, RobotConfig
from wp_policy.transforms import ImageAugment, image_inputs as shared_image_inputs
from wp_training.data.rlds_reader import decode_image
from wp_training.datasets.augment import AugmentConfig, augment_image, sample_rng


def _augmenter(cfg: AugmentConfig, rng: np.random.Generator) -> ImageAugment:
    """The augmentation hook of :func:`wp_policy.transforms.image_inputs`: wrist views per the robot config."""
    def augment(camera: CameraConfig, rgb: np.ndarray) -> np.ndarray:
        return augment_image(rgb.astype(np.float32) / np.float32(255.0), camera.is_wrist, cfg, rng)

    return augment


def image_inputs(
    encoded: Mapping[str, bytes], robot: RobotConfig, image_keys: Sequence[str], size: int,
    augment: AugmentConfig | None = None, rng: np.random.Generator | None = None, hidden: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.bool_]]:
    """One step's camera bytes (by rlds_key) -> ``IMAGES`` (model_key -> ``[3, S, S]``) and ``IMAGE_MASKS``;
    with ``augment`` each view is augmented from ``rng`` in ``image_keys`` order; ``hidden``: none decoded, every
    view zero and masked out."""
    fields = shared_image_inputs(robot, lambda cam: decode_image(encoded[cam.rlds_key]), image_keys, size,
                                 _augmenter(augment, rng) if augment is not None else None, hidden)
    return fields[B.IMAGES], fields[B.IMAGE_MASKS]


def sample_image_inputs(raw: dict, robot: RobotConfig, image_keys: Sequence[str], size: int,
                        augment: AugmentConfig, seed: int, hidden: bool = False) -> dict:
    """``IMAGES`` + ``IMAGE_MASKS`` of a dataset's compact sample (``images``, ``epoch``, ``episode``, ``step``),
    augmented from :func:`wp_training.datasets.augment.sample_rng` when ``augment.enabled``; ``hidden``: the
    sample's views left out (:func:`image_inputs`)."""
    if not augment.enabled:
        images, masks = image_inputs(raw["images"], robot, image_keys, size, hidden=hidden)
    else:
        rng = sample_rng(seed, raw["epoch"], raw["episode"], raw["step"])
        images, masks = image_inputs(raw["images"], robot, image_keys, size, augment, rng, hidden)
    return {B.IMAGES: images, B.IMAGE_MASKS: masks}
