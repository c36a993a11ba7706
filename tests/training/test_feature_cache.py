"""Frozen-vision feature cache: ``wp-data cache-features`` on the tiny LIBERO RLDS, then training from the cache
gives the losses of training from images (same seed, frozen vision); caches of other weights or data are refused.
The models take ``VISION_FEATURES`` as a batch key of their own (no patched forward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from wp_policy import batch as B
from wp_policy.config_io import ConfigError
from wp_policy.models.embeddings import vision_features
from wp_policy.models.validation import ModelInputError
from wp_training.data_cli import main as data_main
from wp_training.engine.feature_cache import FeatureCacheError, read_index
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.train_state import load_model_weights
from wp_training.engine.trainer import train
from wp_training.tasks.interface import get_task

from .e2e_data import (  # noqa: F401  (libero_data is a fixture)
    batch_loss,
    cli_overrides,
    data_overrides,
    fixed_batch,
    initial_model,
    libero_data,
    tiny_config,
)

FROZEN = {"freeze": ["vision"]}


def _write_cache(mode: str, data: dict, out, *extra: str) -> int:
    from wp_policy.paths import config_dir

    return data_main(["cache-features", "--config", str(config_dir() / f"train/tiny_{mode}_libero.yaml"),
                      "--out", str(out), "--batch-size", "8", "--rows-per-shard", "16", "freeze=[vision]",
                      *cli_overrides(data_overrides(mode, data)), *extra])


@pytest.fixture(scope="module")
def caches(libero_data, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("vision_cache")
    out = {}
    for mode in ("ae", "vlm"):
        assert _write_cache(mode, libero_data, tmp / mode) == 0
        out[mode] = tmp / mode
    return out


def test_cache_holds_every_sampleable_frame(caches, libero_data):
    from wp_training.data.extract import WaypointIndex

    index = read_index(caches["ae"])
    waypoints = WaypointIndex.load(libero_data["index"]).waypoints
    expected = {(e, int(a)) for e, w in enumerate(waypoints) for a, b in zip(w[:-1], w[1:]) if b - a <= 32}
    rows = set()
    for shard in index["shards"]:
        with safe_open(str(caches["ae"] / shard["file"]), framework="pt") as f:
            feats = f.get_tensor("features")
            assert tuple(feats.shape[1:]) == tuple(index["feature_shape"]) == (2, 16, 32)
            rows |= set(zip(f.get_tensor("episode").tolist(), f.get_tensor("step").tolist()))
    assert rows == expected and index["num_rows"] == len(expected) and len(index["shards"]) > 1


@pytest.mark.parametrize("mode", ["ae", "vlm"])
def test_cached_batches_replace_images_and_give_the_same_loss(mode, caches, libero_data, tmp_path):
    task = get_task(mode)
    plain = tiny_config(mode, libero_data, tmp_path / "a", **FROZEN)
    cached = tiny_config(mode, libero_data, tmp_path / "b", **FROZEN, **{"model.vision_cache": str(caches[mode])})
    images, features = fixed_batch(task, plain, n=6), fixed_batch(task, cached, n=6)
    assert B.IMAGES not in features and B.VISION_FEATURES not in images and B.IMAGES in images
    assert set(features[B.VISION_FEATURES]) == {"base_0_rgb", "left_wrist_0_rgb"}
    assert tuple(features[B.VISION_FEATURES]["base_0_rgb"].shape) == (6, 16, 32)
    assert torch.equal(features[B.IMAGE_MASKS]["base_0_rgb"], images[B.IMAGE_MASKS]["base_0_rgb"])
    model = initial_model(task, cached)  # the cached-input model; IMAGES batches still run the real tower
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the AE's zero-initialised gates ignore the prefix at init: move off that point
        for name, param in model.named_parameters():
            if not name.startswith("paligemma.model.vision_tower."):
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    loss_images, loss_features = batch_loss(model, images), batch_loss(model, features)
    assert loss_features == pytest.approx(loss_images, rel=1e-5)
    shifted = {**features, B.VISION_FEATURES: {k: v + 0.5 for k, v in features[B.VISION_FEATURES].items()}}
    assert abs(batch_loss(model, shifted) - loss_images) > 1e-4  # the features really feed the model


@pytest.mark.parametrize("mode", ["ae", "vlm"])
def test_models_take_vision_features_in_place_of_images(mode, libero_data, tmp_path):
    """A plain model (as exported, no cache configured) gives bit-identical losses from its tower's features; bad
    feature inputs are named."""
    task = get_task(mode)
    cfg = tiny_config(mode, libero_data, tmp_path, **FROZEN)
    model, images = initial_model(task, cfg), fixed_batch(task, cfg, n=3)
    keys = model.config.image_keys
    with torch.no_grad():
        hidden = vision_features(model.paligemma, images[B.IMAGES], keys)  # [B, V, N, D]
    features = {k: v for k, v in images.items() if k != B.IMAGES}
    features[B.VISION_FEATURES] = {k: hidden[:, i] for i, k in enumerate(keys)}
    assert batch_loss(model, features) == batch_loss(model, images)
    assert "forward" not in vars(model) and "forward" not in vars(model.paligemma.model.vision_tower)
    with pytest.raises(ModelInputError, match="holds both images and vision_features"):
        batch_loss(model, {**features, B.IMAGES: images[B.IMAGES]})
    wrong = {**features, B.VISION_FEATURES: {k: v[:, :8] for k, v in features[B.VISION_FEATURES].items()}}
    shape = r"vision_features\['base_0_rgb'\] must be a float tensor \[B, 16, 32\]"
    with pytest.raises(ModelInputError, match=shape):
        batch_loss(model, wrong)


def test_the_cache_check_runs_on_the_first_cached_batch_only(caches, libero_data, tmp_path):
    task = get_task("ae")
    cfg = tiny_config("ae", libero_data, tmp_path, **FROZEN, **{"model.vision_cache": str(caches["ae"])})
    model = initial_model(task, cfg)
    assert len(model._forward_pre_hooks) == 1
    batch_loss(model, fixed_batch(task, tiny_config("ae", libero_data, tmp_path / "i", **FROZEN), n=2))
    assert len(model._forward_pre_hooks) == 1  # image batches need no cache
    batch_loss(model, fixed_batch(task, cfg, n=2))
    assert not model._forward_pre_hooks  # checked once, then gone


def test_training_from_the_cache_matches_training_from_images(caches, libero_data, tmp_path):
    common = {**FROZEN, "num_steps": 6, "log.every_steps": 1, "checkpoint.every_steps": 6, "optim.warmup_steps": 1}
    runs = {}
    for name, extra in (("images", {}), ("cache", {"model.vision_cache": str(caches["ae"])})):
        cfg = tiny_config("ae", libero_data, tmp_path / name, **common, **extra)
        result = train(cfg, get_task("ae"))
        losses = [r["train/loss"] for r in read_jsonl(cfg.run_dir / "metrics.jsonl")[0]]
        runs[name] = (losses, load_model_weights(result.checkpoint))
    np.testing.assert_allclose(runs["cache"][0], runs["images"][0], rtol=1e-5)
    for key, value in runs["images"][1].items():
        torch.testing.assert_close(runs["cache"][1][key], value, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("overrides", "error", "message"), [
    ({"seed": 1}, FeatureCacheError, "other vision weights"),  # seed 1 initialises another vision tower
    ({"freeze": []}, ConfigError, "vision tower is trainable"),
])
def test_training_refuses_a_cache_it_cannot_use(overrides, error, message, caches, libero_data, tmp_path):
    cfg = tiny_config("ae", libero_data, tmp_path / "r", **{**FROZEN, "num_steps": 2, "optim.warmup_steps": 1,
                                                             "model.vision_cache": str(caches["ae"]), **overrides})
    with pytest.raises(error, match=message):
        train(cfg, get_task("ae"))


def test_cache_of_other_data_is_refused(caches, libero_data, tmp_path):
    cfg = tiny_config("vlm", libero_data, tmp_path / "r", **FROZEN, **{"model.vision_cache": str(caches["ae"])})
    with pytest.raises(FeatureCacheError, match="was computed from"):
        fixed_batch(get_task("vlm"), cfg, n=1)


def test_cache_cli_errors(libero_data, tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    (out / "something").write_text("x")
    assert _write_cache("ae", libero_data, out) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_main(["cache-features", "--help"])
