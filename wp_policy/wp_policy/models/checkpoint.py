"""Checkpoints: our directory format and Pi0.5-base (openpi) weight import. safetensors only, never pickle.

Directory format (``save_pretrained`` / ``from_pretrained``)::

    <dir>/model.safetensors     every parameter once (a tied alias such as ``paligemma.lm_head.weight`` is stored
                                under its canonical name only)
    <dir>/model_config.yaml     the model config (``kind: waypoint_ae | waypoint_vlm`` + sizes), read through
                                config_io, so the graph is rebuilt without knowing the preset

Loading our format is strict: a missing, unexpected or mis-shaped tensor raises :class:`CheckpointError` (a model
that "loaded" random weights is the worst failure on a robot). ``load_pi05_base`` is the lenient import of a
converted openpi ``pi05_base`` file: keys are renamed (:func:`neutral_name`), every name+shape match is copied, shape
mismatches (``time_mlp_in`` 1024 -> 2048 inputs) are skipped with a warning, and a :class:`LoadReport` lists what
was loaded, skipped, missing and unexpected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from wp_policy.config_io import ConfigError, from_dict, load_yaml, to_dict
from wp_policy.models.config import CONFIG_CLASSES, ModelConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.yaml"
log = logging.getLogger(__name__)

# openpi / transformers 4.x names -> ours (transformers 5.x), applied in order to the key's start or anywhere.
PREFIX_RENAMES = (
    ("paligemma_with_expert.", ""),
    ("gemma_expert.model.", "expert."),
    ("gemma_expert.", "expert."),
    ("paligemma.language_model.model.", "paligemma.model.language_model."),  # transformers <= 4.51
    ("paligemma.language_model.lm_head.", "paligemma.lm_head."),
    ("paligemma.vision_tower.", "paligemma.model.vision_tower."),
    ("paligemma.multi_modal_projector.", "paligemma.model.multi_modal_projector."),
)
INFIX_RENAMES = ((".vision_tower.vision_model.", ".vision_tower."),)  # transformers 5 dropped ``vision_model``


class CheckpointError(ConfigError):
    """A checkpoint is missing, malformed or does not match the model config (a configuration error: the message
    names the file)."""


@dataclass(frozen=True)
class LoadReport:
    """Outcome of :func:`load_pi05_base`. Names are ours except ``unexpected`` (the file's). ``missing`` are model
    tensors the file does not provide at all; shape-skipped ones are listed only under ``skipped_shape_mismatch``.
    Both keep their random initialisation."""

    loaded: tuple[str, ...]
    skipped_shape_mismatch: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatch_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # name -> (file shape, model shape)

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)}, skipped (shape) {len(self.skipped_shape_mismatch)}, "
                f"missing {len(self.missing)}, unexpected {len(self.unexpected)}")


def neutral_name(key: str) -> str:
    """openpi / transformers-4.x checkpoint key -> our parameter name (both models share the ``paligemma.*``
    names; the AE adds ``expert.*`` and top-level projections)."""
    for old, new in PREFIX_RENAMES:
        if key.startswith(old):
            key = new + key[len(old):]
    for old, new in INFIX_RENAMES:
        key = key.replace(old, new)
    return key


def canonical_parameters(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """-> (canonical name -> tensor, alias name -> canonical name) over parameters and persistent buffers."""
    canonical, aliases, seen = {}, {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases[name] = seen[id(tensor)]
        else:
            seen[id(tensor)] = name
            canonical[name] = tensor
    return canonical, aliases


def build_model(config: ModelConfig) -> nn.Module:
    """Random-initialised model for ``config`` (dispatch on ``config.kind``)."""
    from wp_policy.models.action_expert import WaypointActionExpert
    from wp_policy.models.vlm import WaypointVLM

    return {"waypoint_ae": WaypointActionExpert, "waypoint_vlm": WaypointVLM}[config.kind](config)


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model.safetensors`` + ``model_config.yaml`` into ``directory`` (created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, _ = canonical_parameters(model)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / WEIGHTS_FILE),
              metadata={"format": "pt", "kind": model.config.kind})
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(model.config), sort_keys=False))
    return directory


def load_model_config(directory: str | Path, **overrides) -> ModelConfig:
    """Read ``<directory>/model_config.yaml`` into the config class its ``kind`` names (with field overrides)."""
    path = Path(directory) / CONFIG_FILE
    data = {**load_yaml(path), **overrides}
    kind = data.get("kind")
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"{path}: kind: expected one of {sorted(CONFIG_CLASSES)}, got {kind!r}")
    return from_dict(CONFIG_CLASSES[kind], data, source=str(path))


def from_pretrained(directory: str | Path, device: str | torch.device = "cpu", **overrides) -> nn.Module:
    """Rebuild the model from ``model_config.yaml`` and load ``model.safetensors`` strictly (see module doc).

    ``overrides`` change config fields that do not alter the weights' shapes (``gradient_checkpointing``,
    ``dtype``); a shape-changing override fails the strict load.
    """
    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    config = load_model_config(directory, **overrides)
    with torch.device(device):
        model = build_model(config)
    tensors, _ = canonical_parameters(model)
    try:
        with safe_open(str(weights), framework="pt", device=str(device)) as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(tensors) - keys), sorted(keys - set(tensors))
            bad = [f"{k}: file {tuple(f.get_slice(k).get_shape())} vs model {tuple(tensors[k].shape)}"
                   for k in sorted(keys & set(tensors)) if tuple(f.get_slice(k).get_shape()) != tuple(tensors[k].shape)]
            if missing or unexpected or bad:
                raise CheckpointError(
                    f"{weights} does not match {directory / CONFIG_FILE}: missing {_head(missing)}, unexpected "
                    f"{_head(unexpected)}, shape mismatches {_head(bad)}")
            with torch.no_grad():
                for name, tensor in tensors.items():
                    tensor.copy_(f.get_tensor(name))
    except SafetensorError as exc:  # truncated or corrupt file: safetensors' own message names no file
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from None
    return model


def load_pi05_base(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy every tensor of a Pi0.5-base safetensors file (or a directory holding ``model.safetensors``) whose
    renamed key and shape match ``model``; see the module docstring. Logs a warning per shape mismatch."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Pi0.5 checkpoint not found: {path}")
    tensors, aliases = canonical_parameters(model)
    loaded, skipped, unexpected, shapes = [], [], [], {}
    with safe_open(str(path), framework="pt", device="cpu") as f, torch.no_grad():
        for key in sorted(f.keys()):
            name = neutral_name(key)
            target = tensors.get(aliases.get(name, name))
            if target is None:
                unexpected.append(key)
                continue
            file_shape = tuple(f.get_slice(key).get_shape())
            if file_shape != tuple(target.shape):
                skipped.append(name)
                shapes[name] = (file_shape, tuple(target.shape))
                log.warning("skipping %s: checkpoint shape %s != model shape %s", key, file_shape, tuple(target.shape))
                continue
            target.copy_(f.get_tensor(key))
            loaded.append(aliases.get(name, name))
    loaded_set = set(loaded)
    missing = sorted(n for n in tensors if n not in loaded_set and n not in shapes)
    report = LoadReport(tuple(sorted(loaded_set)), tuple(sorted(skipped)), tuple(missing), tuple(unexpected), shapes)
    log.info("Pi0.5 import from %s: %s", path, report.summary())
    return report


def _head(names: list[str], n: int = 8) -> str:
    if not names:
        return "none"
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return f"{names[:n]}{more}"
