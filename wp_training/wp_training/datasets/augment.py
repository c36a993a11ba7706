"""Training-time image augmentation, as openpi trains Pi0/Pi0.5 (never applied at inference).

On the model-resolution image (after resize-with-pad, before ``x / 127.5 - 1``), per view of one sample:

- views not mounted on the arm (:attr:`wp_policy.robot_config.CameraConfig.is_wrist` is False): a random crop of
  ``crop_scale`` of each side, resized back to the full size, then a rotation by an angle uniform in
  ``[-rotate_deg, rotate_deg]`` about the centre (corners filled black, like resize-with-pad's padding). A wrist
  view keeps its geometry: it moves with the gripper, and where the object sits in it is what the policy reads;
- every view: colour jitter with factors uniform in ``[1 - x, 1 + x]`` (torchvision's semantics): brightness
  scales the pixels, contrast blends with the image's mean grey level, saturation with the per-pixel grey image;
  each result clipped to [0, 1].

Randomness comes only from the ``numpy.random.Generator`` the caller passes; the datasets seed it per sample from
(stream seed, epoch, episode, step) (:func:`sample_rng`), so augmentation is reproducible, differs between epochs,
and does not depend on the worker count or on resuming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_AUGMENT_STREAM = 0x5EED  # separates the augmentation draws from the stream's shuffling draws


@dataclass(frozen=True)
class AugmentConfig:
    """``data.augment`` of a training config; the defaults are openpi's values, switched off."""

    enabled: bool = False
    crop_scale: float = 0.95  # non-wrist views: side fraction kept by the random crop (1: no crop)
    rotate_deg: float = 5.0  # non-wrist views: largest rotation in degrees (0: none)
    brightness: float = 0.3  # every view: factor in [1 - x, 1 + x]
    contrast: float = 0.4
    saturation: float = 0.5

    def __post_init__(self):
        if not (math.isfinite(self.crop_scale) and 0.5 <= self.crop_scale <= 1.0):
            raise ValueError(f"augment.crop_scale must be in [0.5, 1], got {self.crop_scale}")
        if not (math.isfinite(self.rotate_deg) and 0.0 <= self.rotate_deg <= 45.0):
            raise ValueError(f"augment.rotate_deg must be in [0, 45], got {self.rotate_deg}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"augment.{name} must be in [0, 1], got {value}")


def sample_rng(seed: int, epoch: int, episode: int, step: int) -> np.random.Generator:
    """The generator of one sample's augmentation (see the module docstring)."""
    return np.random.default_rng([_AUGMENT_STREAM, seed, epoch, episode, step])


def augment_image(image: np.ndarray, wrist: bool, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """``float32 [H, W, 3]`` in [0, 1] -> an augmented ``float32 [H, W, 3]`` in [0, 1] (a new array).

    The number of draws from ``rng`` is fixed per call (crop and angle only for non-wrist views), so a sample's
    views see independent but reproducible parameters.
    """
    out = np.asarray(image, np.float32)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"augment_image expects [H, W, 3], got shape {out.shape}")
    h, w = out.shape[:2]
    if not wrist:
        ch, cw = max(1, int(h * cfg.crop_scale)), max(1, int(w * cfg.crop_scale))
        top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        out = cv2.resize(out[top : top + ch, left : left + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        angle = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        out = cv2.warpAffine(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(0.0, 0.0, 0.0))
    brightness, contrast, saturation = (float(rng.uniform(max(0.0, 1.0 - x), 1.0 + x))
                                        for x in (cfg.brightness, cfg.contrast, cfg.saturation))
    out = np.clip(out * np.float32(brightness), 0.0, 1.0)
    mean = np.float32((out @ _GREY).mean())
    out = np.clip((out - mean) * np.float32(contrast) + mean, 0.0, 1.0)
    grey = (out @ _GREY)[..., None]
    return np.clip((out - grey) * np.float32(saturation) + grey, 0.0, 1.0).astype(np.float32, copy=False)
