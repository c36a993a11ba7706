"""Atomic, pickle-free training checkpoints and exact resume.

Layout of ``<run_dir>/checkpoints/step_00001000/``::

    model.safetensors      full (unsharded) state dict of the training module (LoRA adapters included)
    optimizer.safetensors  AdamW tensors keyed "<param name>::<state>" + param groups as JSON metadata
    trainer.json           step, world size, LR-scheduler state, the run's config
    rank_<r>.json          per rank: data position, python/numpy/torch(/cuda) RNG states, parameter checksum
    manifest.json          byte size of every file above (written last; checked on load)

Nothing here is pickled: tensors go to safetensors, everything else to JSON, so loading a checkpoint can never
execute code. A checkpoint is written into ``step_N.tmp`` and renamed to ``step_N`` only when every rank has
finished writing and every file is fsynced; the rename is atomic, so a run killed mid-save leaves a ``.tmp``
directory that is never picked up (and is removed by the next save). The last ``keep_last`` checkpoints are kept.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wp_training.engine.distributed import DistEnv, barrier
from wp_training.engine.state_dicts import (
    flatten_optimizer_state,
    get_full_state,
    set_full_state,
    unflatten_optimizer_state,
)

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
MANIFEST_FILE = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not match the run it should resume."""


@dataclass(frozen=True)
class RankState:
    data_epoch: int
    data_batches: int
    rng: dict = field(default_factory=dict)
    param_checksum: float | None = None


@dataclass(frozen=True)
class LoadedCheckpoint:
    step: int
    rank_state: RankState
    config: dict


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, dir), oldest first; ``.tmp`` leftovers are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / MANIFEST_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


# ---------------------------------------------------------------------------------------------------- RNG states


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng(device: torch.device) -> dict:
    """Every RNG this process draws from, as JSON-able data."""
    version, internal, py_gauss = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [version, list(internal), py_gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": _b64(torch.get_rng_state()),
    }
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def restore_rng(state: Mapping, device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if device.type == "cuda":
        if "cuda" not in state:
            raise CheckpointError("checkpoint was written on CPU and has no CUDA RNG state; cannot resume exactly on GPU")
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


# ------------------------------------------------------------------------------------------- tensor (de)serialising


def _dedupe_shared(tensors: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """safetensors refuses aliased tensors (tied embeddings): keep one name per storage, return aliases."""
    unique, aliases, seen = {}, {}, {}
    for name, tensor in tensors.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = tensor.detach().contiguous()
    return unique, aliases


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))
    _fsync(path)


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict) -> None:
    unique, aliases = _dedupe_shared(tensors)
    unique = {k: v.cpu() for k, v in unique.items()}
    save_file(unique, str(path), metadata={**metadata, "aliases": json.dumps(aliases)})
    _fsync(path)


def _load_tensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(str(path))
    for alias, source in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[source]
    return tensors, metadata


def _scheduler_state(scheduler) -> dict:
    """LambdaLR state without the schedule function (rebuilt from the config on resume)."""
    return {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}


# ------------------------------------------------------------------------------------------------------ save/load


def save_checkpoint(
    root: Path, step: int, model: nn.Module, optimizer, scheduler, rank_state: RankState, env: DistEnv,
    config: Mapping, keep_last: int,
) -> Path:
    """Collective: every rank must call it. Returns the final checkpoint directory."""
    final, tmp = step_dir(root, step), step_dir(root, step).with_suffix(".tmp")
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    model_sd, optim_sd = get_full_state(model, optimizer)  # a collective under FSDP
    if env.is_main:
        _save_tensors(tmp / MODEL_FILE, model_sd, {"step": str(step)})
        flat, groups = flatten_optimizer_state(optim_sd)
        _save_tensors(tmp / OPTIM_FILE, flat, {"param_groups": json.dumps(groups)})
        trainer = {"step": step, "world_size": env.world_size, "scheduler": _scheduler_state(scheduler),
                   "config": dict(config)}
        _write_json(tmp / TRAINER_FILE, trainer)
    _write_json(tmp / f"rank_{env.rank}.json", asdict(rank_state))
    barrier()
    if env.is_main:
        _publish(tmp, final)
        prune_checkpoints(root, keep_last)
    barrier()
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Write the manifest, fsync, and atomically rename ``tmp`` to ``final`` (replacing an older copy)."""
    sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    _write_json(tmp / MANIFEST_FILE, sizes)
    _fsync(tmp)
    if final.exists():
        old = final.with_suffix(".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    _fsync(final.parent)


def prune_checkpoints(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, and leftovers of interrupted saves."""
    for _, path in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(path)
    for leftover in Path(root).glob("step_*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in Path(root).glob("step_*.old"):
        shutil.rmtree(leftover, ignore_errors=True)


def verify_checkpoint(path: Path) -> None:
    """Raise CheckpointError if a file is missing or its size differs from the manifest (truncated copy)."""
    manifest_path = Path(path) / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST_FILE}; not a complete checkpoint")
    for name, size in json.loads(manifest_path.read_text()).items():
        file = Path(path) / name
        if not file.is_file() or file.stat().st_size != size:
            actual = file.stat().st_size if file.is_file() else "missing"
            raise CheckpointError(f"{file}: expected {size} bytes, found {actual} (corrupted checkpoint)")


def read_trainer_state(path: Path) -> dict:
    verify_checkpoint(path)
    return json.loads((Path(path) / TRAINER_FILE).read_text())


def load_model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The full training-module state dict stored in a checkpoint directory."""
    verify_checkpoint(path)
    tensors, _ = _load_tensors(Path(path) / MODEL_FILE)
    return tensors


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, env: DistEnv) -> LoadedCheckpoint:
    """Restore model, optimizer and scheduler in place; the caller restores data position and RNG last."""
    trainer = read_trainer_state(path)
    if trainer["world_size"] != env.world_size:
        raise CheckpointError(
            f"{path}: written by {trainer['world_size']} processes, resuming with {env.world_size}; the per-rank data "
            f"streams cannot continue exactly (resume with the same number of GPUs)"
        )
    flat, metadata = _load_tensors(Path(path) / OPTIM_FILE)
    optim_sd = unflatten_optimizer_state(flat, json.loads(metadata["param_groups"]))
    try:
        set_full_state(model, optimizer, load_model_weights(path), optim_sd)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not fit the configured model/optimizer: {exc}") from exc
    scheduler.load_state_dict({**trainer["scheduler"], "lr_lambdas": [None] * len(scheduler.lr_lambdas)})
    rank_file = Path(path) / f"rank_{env.rank}.json"
    rank_state = RankState(**json.loads(rank_file.read_text()))
    return LoadedCheckpoint(step=trainer["step"], rank_state=rank_state, config=trainer["config"])
