"""Training-time image augmentation: ranges, determinism, identity when off, wrist views keep their geometry, and
the datasets' seeding (reproducible, different across epochs, unchanged by resuming)."""

import numpy as np
import pytest

from wp_policy import batch as B
from wp_training.data.rlds_writer import encode_image
from wp_training.datasets.augment import AugmentConfig, augment_image, sample_rng
from wp_training.datasets.collate import image_inputs
from wp_training.datasets.sample_stream import StreamConfig
from wp_training.datasets.vlm_dataset import VLMDataConfig, WaypointVLMDataset

ON = AugmentConfig(enabled=True)
GEOMETRY_ONLY = AugmentConfig(enabled=True, brightness=0.0, contrast=0.0, saturation=0.0)


def textured(size=48, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    img[size // 4: size // 2, size // 3: 2 * size // 3] = rng.uniform(0.2, 1.0, 3)  # an off-centre block
    return np.clip(img + rng.uniform(0, 0.1, img.shape).astype(np.float32), 0, 1)


def test_shapes_dtype_range_and_determinism():
    img = textured()
    a = augment_image(img, False, ON, np.random.default_rng(3))
    b = augment_image(img, False, ON, np.random.default_rng(3))
    c = augment_image(img, False, ON, np.random.default_rng(4))
    assert a.shape == img.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, img)


def test_wrist_views_get_colour_jitter_only():
    img = textured()
    wrist = augment_image(img, True, GEOMETRY_ONLY, np.random.default_rng(1))
    np.testing.assert_allclose(wrist, img, atol=1e-6)  # all factors are exactly 1: no geometry change
    moved = augment_image(img, False, GEOMETRY_ONLY, np.random.default_rng(1))
    assert np.abs(moved - img).max() > 0.1  # crop + rotation move the block
    jittered = augment_image(img, True, ON, np.random.default_rng(1))
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    assert not np.allclose(jittered, img) and np.corrcoef((jittered @ [0.299, 0.587, 0.114]).ravel(),
                                                          grey.ravel())[0, 1] > 0.99  # same picture, new colours


def test_crop_and_rotation_stay_within_bounds():
    """The crop keeps 95 % of each side and the angle stays within +-5 degrees: a centred block moves little."""
    size = 64
    img = np.zeros((size, size, 3), np.float32)
    img[24:40, 24:40] = 1.0
    for seed in range(20):
        out = augment_image(img, False, GEOMETRY_ONLY, np.random.default_rng(seed))
        ys, xs = np.nonzero(out[..., 0] > 0.5)
        assert abs(ys.mean() - 31.5) < 3.5 and abs(xs.mean() - 31.5) < 3.5
        assert 16 * 16 <= len(ys) <= 16 * 16 * 1.25  # resized back from 95 %: the block grows by < 11 % a side


def test_config_validation():
    for bad in ({"crop_scale": 0.2}, {"crop_scale": 1.1}, {"rotate_deg": -1}, {"brightness": 1.5},
                {"saturation": float("nan")}):
        with pytest.raises(ValueError, match="augment."):
            AugmentConfig(**bad)


def test_image_inputs_identity_when_off_and_wrist_from_the_robot(libero_config):
    rng = np.random.default_rng(0)
    encoded = {c.rlds_key: encode_image((rng.uniform(0, 255, (32, 32, 3))).astype(np.uint8), "png")
               for c in libero_config.cameras}
    keys = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
    plain, masks = image_inputs(encoded, libero_config, keys, 32)
    geo, _ = image_inputs(encoded, libero_config, keys, 32, GEOMETRY_ONLY, np.random.default_rng(5))
    assert [c.is_wrist for c in libero_config.cameras] == [False, True]
    np.testing.assert_allclose(geo["left_wrist_0_rgb"], plain["left_wrist_0_rgb"], atol=1e-5)
    assert np.abs(geo["base_0_rgb"] - plain["base_0_rgb"]).max() > 0.1
    assert not masks["right_wrist_0_rgb"] and not geo["right_wrist_0_rgb"].any()
    full, _ = image_inputs(encoded, libero_config, keys, 32, ON, np.random.default_rng(5))
    for key in keys[:2]:
        assert full[key].shape == (3, 32, 32) and full[key].dtype == np.float32
        assert full[key].min() >= -1.0 and full[key].max() <= 1.0


def _images(prepared, robot, tokenizer, augment, n=6, resume=0, seed=0):
    cfg = VLMDataConfig(rlds_dir=str(prepared["filtered"]), stats_path=str(prepared["stats"]), image_size=32,
                        stride=1, augment=augment, stream=StreamConfig(shuffle_buffer=4, shuffle_warmup=2, seed=seed))
    ds = WaypointVLMDataset(cfg, robot, tokenizer)
    ds.resume(resume, 1)
    it = iter(ds)
    return [next(it)[B.IMAGES]["base_0_rgb"] for _ in range(n)]


def test_dataset_augmentation_is_seeded_and_resumable(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    plain = _images(libero_prepared, libero_config, tok, AugmentConfig())
    aug = _images(libero_prepared, libero_config, tok, ON)
    again = _images(libero_prepared, libero_config, tok, ON)
    assert all(np.array_equal(a, b) for a, b in zip(aug, again))
    assert any(not np.array_equal(a, p) for a, p in zip(aug, plain))  # flat fixture colours: most change
    resumed = _images(libero_prepared, libero_config, tok, ON, n=3, resume=3)
    assert all(np.array_equal(a, b) for a, b in zip(aug[3:], resumed))
    # the same sample in another epoch draws other parameters
    assert not np.array_equal(augment_image(textured(), False, ON, sample_rng(0, 0, 1, 2)),
                              augment_image(textured(), False, ON, sample_rng(0, 1, 1, 2)))
