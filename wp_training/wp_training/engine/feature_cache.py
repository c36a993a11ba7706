"""Frozen-vision feature cache (docs/training.md, feature cache section): run SigLIP once, train from its output.

When the vision tower is frozen its output for a given image never changes, yet every training step decodes,
resizes and re-encodes the same frames. ``wp-data cache-features`` runs the tower once over every frame the
mode's dataset can sample (AE: each pair's start step; VLM: every waypoint step) and stores the outputs; a run
whose ``model.vision_cache`` names that directory streams the features instead of images and skips the tower.

On disk (``<dir>``)::

    index.json            format, vision_hash, mode, source RLDS, image keys, feature shape/dtype, shard list
    shard_00000.safetensors   features [n, V, N, D] (SigLIP last_hidden_state per model view, before the
                              projector, which stays trainable), episode int64 [n], step int64 [n]

``vision_hash`` is a SHA-256 of the vision tower's weights as training holds them (after Pi0.5 loading and the
precision cast); :func:`check_on_first_cached_batch` compares it when the first cached batch reaches the model, so
features from another checkpoint, seed or precision are rejected instead of silently mismatching, and so is cached
input while any vision parameter trains. Features of a missing camera (zeros image, mask False) are stored too, so
a cached batch is numerically the batch the tower would have produced.

Batches carry ``VISION_FEATURES`` (model image key -> float32 [B, N, D], :mod:`wp_policy.batch`) instead of
``IMAGES``; both models take either (their image embedding skips the tower for features), so the model, its
parameter names, checkpoints and exports are those of an image-trained run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from wp_policy import batch as B
from wp_policy.config_io import ConfigError
from wp_policy.models.embeddings import vision_features

log = logging.getLogger(__name__)

FORMAT = "wp-vision-cache-v1"
INDEX_FILE = "index.json"


class FeatureCacheError(ConfigError):
    """The cache is missing, malformed, or does not belong to this model/dataset."""


def vision_tower(model: nn.Module) -> nn.Module:
    return model.paligemma.model.vision_tower


def vision_hash(model: nn.Module) -> str:
    """SHA-256 over the vision tower's parameters (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, param in sorted(vision_tower(model).named_parameters(), key=lambda kv: kv[0]):
        tensor = param.full_tensor() if hasattr(param, "full_tensor") else param  # FSDP DTensor
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def read_index(cache_dir: str | Path) -> dict:
    path = Path(cache_dir) / INDEX_FILE
    if not path.is_file():
        raise FeatureCacheError(f"vision_cache: {path} not found; write the cache with `wp-data cache-features`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise FeatureCacheError(f"vision_cache: {path} has format {index.get('format')!r}, expected {FORMAT!r}")
    return index


# ---- reading (dataset side) ---------------------------------------------------------------------------------------
class FeatureStore:
    """Per-(episode, step) features of one cache; shards are memory-mapped lazily in each process."""

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.index = read_index(self.dir)
        self.image_keys = tuple(self.index["image_keys"])
        self._rows: dict[tuple[int, int], tuple[int, int]] = {}
        for s, shard in enumerate(self.index["shards"]):
            with safe_open(str(self.dir / shard["file"]), framework="pt") as f:
                episodes, steps = f.get_tensor("episode").tolist(), f.get_tensor("step").tolist()
            for row, key in enumerate(zip(episodes, steps)):
                self._rows[key] = (s, row)
        self._handles: dict[int, Any] = {}

    def __getstate__(self):  # safetensors handles do not pickle; spawned workers reopen them
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, episode: int, step: int) -> np.ndarray:
        """float32 [V, N, D] for (episode, step); KeyError-free: a missing frame is a FeatureCacheError."""
        where = self._rows.get((int(episode), int(step)))
        if where is None:
            raise FeatureCacheError(f"vision_cache {self.dir}: no features for episode {episode} step {step}; "
                                    f"the cache was written for other data or settings (e.g. max_duration, "
                                    f"mid_pair_starts), re-run `wp-data cache-features`")
        shard, row = where
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(str(self.dir / self.index["shards"][shard]["file"]),
                                                      framework="pt")
        return handle.get_slice("features")[row : row + 1].float().numpy()[0]


def open_for_dataset(cache_dir: str, rlds_dir: str, image_keys: tuple[str, ...]) -> FeatureStore | None:
    """The dataset's feature source for ``model.vision_cache`` (None when unset), checked against its data."""
    if not cache_dir:
        return None
    store = FeatureStore(cache_dir)
    from wp_training.data.rlds_layout import resolve_dataset_dir

    source = str(resolve_dataset_dir(rlds_dir).resolve())
    if store.index["source"] != source:
        raise FeatureCacheError(f"vision_cache: {cache_dir} was computed from {store.index['source']}, but "
                                f"data.rlds_dir is {source}")
    if store.image_keys != tuple(image_keys):
        raise FeatureCacheError(f"vision_cache: {cache_dir} holds views {list(store.image_keys)}, the model reads "
                                f"{list(image_keys)}")
    return store


def cached_image_fields(store: FeatureStore, raw: dict, masks: dict) -> dict:
    """The batch fields replacing IMAGES for one compact sample (``episode``/``step`` identify the frame)."""
    feats = store.lookup(raw["episode"], raw["step"])
    return {B.VISION_FEATURES: {k: feats[i] for i, k in enumerate(store.image_keys)}, B.IMAGE_MASKS: masks}


# ---- model side ---------------------------------------------------------------------------------------------------
def check_vision_weights(model: nn.Module, cache_dir: str) -> None:
    """The tower must be frozen and hold exactly the weights the cache was computed with."""
    if any(p.requires_grad for p in vision_tower(model).parameters()):
        raise ConfigError("model.vision_cache: the vision tower is trainable; cached features need it frozen "
                          "(add 'vision' to freeze:)")
    expected, actual = read_index(cache_dir)["vision_hash"], vision_hash(model)
    if expected != actual:
        raise FeatureCacheError(f"vision_cache {cache_dir}: computed with other vision weights (hash {expected[:12]}, "
                                f"this model {actual[:12]}): different pretrained_path, seed or precision; re-run "
                                f"`wp-data cache-features` with this config")


def check_on_first_cached_batch(model: nn.Module, cache_dir: str) -> None:
    """Run :func:`check_vision_weights` when the first ``VISION_FEATURES`` batch reaches ``model`` (a forward
    pre-hook that then removes itself). Not earlier: the weights are final only after pretrained loading, freezing
    and the precision cast, and exporting or inspecting the model needs no cache."""
    def check(module: nn.Module, args: tuple, kwargs: dict) -> None:
        batch = args[0] if args else kwargs.get("batch")
        if isinstance(batch, Mapping) and B.VISION_FEATURES in batch:
            check_vision_weights(module, cache_dir)
            handle.remove()

    handle = model.register_forward_pre_hook(check, with_kwargs=True)


# ---- writing (`wp-data cache-features`) -----------------------------------------------------------------------------
def _frames(dataset, show_progress: bool) -> Iterator[tuple[int, int, dict]]:
    """(episode, step, camera bytes by rlds_key) for every frame ``dataset`` can sample (its ``image_steps``)."""
    reader = dataset.reader
    cams = [c.rlds_key for c in dataset.robot.cameras]
    bar = tqdm(total=reader.num_episodes, desc="cache-features", unit="ep", disable=not show_progress)
    for index, episode in reader.episodes(observation_keys=cams, step_keys=()):
        length = len(episode["observation"][cams[0]])
        for step in dataset.image_steps(index, length).tolist():
            yield index, int(step), {c: episode["observation"][c][step] for c in cams}
        bar.update(1)
    bar.close()


def write_cache(cfg, out_dir: str | Path, *, batch_size: int = 32, rows_per_shard: int = 4096,
                device: str = "cpu", overwrite: bool = False, show_progress: bool = True) -> Path:
    """Compute and store the vision features for training config ``cfg`` (a TrainConfig); returns the index path.

    The model is built exactly as a fresh run of ``cfg`` builds it (seed, Pi0.5 weights, freeze, precision), so
    its vision weights, and hence the hash, match that run.
    """
    from wp_training.datasets.collate import image_inputs
    from wp_training.engine.distributed import seed_everything
    from wp_training.engine.model_setup import build_training_model
    from wp_training.tasks.interface import DataShard, get_task
    from wp_training.engine.trainer import autocast_context

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    task = get_task(cfg.mode)
    model_cfg, data_cfg = task.parse_configs(cfg.model, cfg.data, str(cfg.mode))
    if getattr(model_cfg, "vision_cache", ""):
        import dataclasses

        model_cfg = dataclasses.replace(model_cfg, vision_cache="")  # build the plain model
    seed_everything(cfg.seed, rank=0)
    model, _ = build_training_model(task, cfg, model_cfg, load_pretrained=True)
    dev = torch.device(device)
    model = model.to(dev).eval()
    dataset = task.build_dataset(model_cfg, data_cfg, DataShard(0, 1, cfg.seed, 0))
    keys, size = model.config.image_keys, model.config.vision.image_size

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards, pending, buffered, shape, dtype = [], [], [], None, None

    def flush_shard():
        nonlocal buffered
        if not buffered:
            return
        feats = torch.cat([b[2] for b in buffered])
        name = f"shard_{len(shards):05d}.safetensors"
        save_file({"features": feats.contiguous(),
                   "episode": torch.tensor([e for b in buffered for e in b[0]], dtype=torch.int64),
                   "step": torch.tensor([s for b in buffered for s in b[1]], dtype=torch.int64)},
                  str(tmp / name), metadata={"format": FORMAT})
        shards.append({"file": name, "rows": int(feats.shape[0])})
        buffered = []

    def run_batch():
        nonlocal pending, shape, dtype
        if not pending:
            return
        images = {k: torch.stack([torch.from_numpy(p[2][0][k]) for p in pending]) for k in keys}
        with torch.no_grad(), autocast_context(dev, cfg.precision):
            hidden = vision_features(model.paligemma, images, keys).cpu()  # [n, V, N, D]
        shape, dtype = tuple(hidden.shape[1:]), str(hidden.dtype).removeprefix("torch.")
        buffered.append(([p[0] for p in pending], [p[1] for p in pending], hidden))
        pending = []
        if sum(b[2].shape[0] for b in buffered) >= rows_per_shard:
            flush_shard()

    rows = 0
    for episode, step, encoded in _frames(dataset, show_progress):
        pending.append((episode, step, image_inputs(encoded, dataset.robot, keys, size)))
        rows += 1
        if len(pending) == batch_size:
            run_batch()
    run_batch()
    flush_shard()
    if rows == 0:
        raise ValueError(f"{data_cfg.rlds_dir}: no frames to cache")
    from wp_training.data.rlds_layout import resolve_dataset_dir

    index = {
        "format": FORMAT,
        "vision_hash": vision_hash(model),
        "mode": cfg.mode,
        "source": str(resolve_dataset_dir(data_cfg.rlds_dir).resolve()),
        "split": data_cfg.split,
        "image_keys": list(keys),
        "feature_shape": list(shape),  # [V, N, D] per frame
        "dtype": dtype,
        "precision": cfg.precision,
        "seed": cfg.seed,
        "pretrained_path": str(cfg.pretrained_path) if cfg.pretrained_path else None,
        "num_rows": rows,
        "shards": shards,
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log.info("cached %d frames (%s x %s) in %s", rows, shape, dtype, out)
    return out / INDEX_FILE
