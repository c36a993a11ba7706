"""Image preparation from dataset bytes (the shared transforms) and stacking samples into the batch contract."""

import numpy as np
import pytest
import torch

from wp_policy import batch as B
from wp_policy.image_proc import resize_with_pad
from wp_policy.transforms import collate
from wp_training.data.rlds_writer import encode_image
from wp_training.datasets.collate import image_inputs


def test_dataset_image_pads_like_deployment(libero_config):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[..., 0] = 200
    images, _ = image_inputs({"image": encode_image(wide, "png")}, libero_config, ("base_0_rgb",), 64)
    img = images["base_0_rgb"]
    assert img.shape == (3, 64, 64) and img.dtype == np.float32
    expected = resize_with_pad(wide, 64, 64).transpose(2, 0, 1) / 127.5 - 1
    np.testing.assert_allclose(img, expected, atol=1e-6)
    assert np.all(img[:, :16] == -1.0) and np.all(img[:, 48:] == -1.0)  # black padding above and below
    assert img[0, 32, 32] == pytest.approx(200 / 127.5 - 1)


def test_image_inputs_mask_missing_views(libero_config):
    encoded = {"image": encode_image(np.full((8, 8, 3), 255, np.uint8), "png"),
               "wrist_image": encode_image(np.zeros((8, 8, 3), np.uint8), "png")}
    images, masks = image_inputs(encoded, libero_config, ("left_wrist_0_rgb", "base_0_rgb", "right_wrist_0_rgb"), 16)
    assert list(images) == ["left_wrist_0_rgb", "base_0_rgb", "right_wrist_0_rgb"]
    assert np.all(images["base_0_rgb"] == 1.0) and np.all(images["left_wrist_0_rgb"] == -1.0)
    assert not images["right_wrist_0_rgb"].any() and [bool(m) for m in masks.values()] == [True, True, False]
    junk = {"image": b"not an image", "wrist_image": b"not an image"}  # hidden views are never decoded
    images, masks = image_inputs(junk, libero_config, ("base_0_rgb", "left_wrist_0_rgb"), 16, hidden=True)
    assert not any(img.any() for img in images.values()) and not any(masks.values())
    assert images["base_0_rgb"].shape == (3, 16, 16)


def sample(n=4):
    return {B.IMAGES: {"base_0_rgb": np.zeros((3, 8, 8), np.float32)}, B.IMAGE_MASKS: {"base_0_rgb": np.bool_(True)},
            B.TOKENS: np.arange(n, dtype=np.int64), B.DURATION: np.int64(3)}


def test_collate_stacks_with_batch_dim():
    batch = collate([sample(), sample()])
    assert batch[B.IMAGES]["base_0_rgb"].shape == (2, 3, 8, 8) and batch[B.IMAGE_MASKS]["base_0_rgb"].tolist() == [1, 1]
    assert batch[B.TOKENS].dtype == torch.int64 and batch[B.DURATION].tolist() == [3, 3]


def test_collate_errors():
    with pytest.raises(ValueError, match="empty list"):
        collate([])
    with pytest.raises(ValueError, match=r"tokens: samples disagree on the shape: \[\(4,\), \(5,\)\]"):
        collate([sample(4), sample(5)])
    bad = sample()
    del bad[B.DURATION]
    with pytest.raises(ValueError, match="sample 1 has keys"):
        collate([sample(), bad])
    hwc = sample()
    hwc[B.IMAGES]["base_0_rgb"] = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match=r"must be \[B, 3, H, W\] \(channels first\), got \(1, 8, 8, 3\)"):
        collate([hwc])
