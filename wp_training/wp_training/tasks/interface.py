"""The small interface a training mode (AE, VLM, ...) implements to plug into the generic trainer.

A :class:`TrainTask` says how to build the model and the per-rank dataset from the YAML ``model:`` / ``data:``
sections, how to load Pi0.5-base weights, which parameters form named groups (for ``freeze``) and where LoRA goes.
Everything else (devices, DDP/FSDP, precision, optimiser, accumulation, checkpoints, logging) is the trainer's.

The model contract: ``model(batch) -> (loss, metrics)`` with ``loss`` a scalar tensor (mean over the micro-batch)
and ``metrics`` a dict of scalar tensors/floats; ``batch`` is the collated dict keyed by ``wp_policy.batch``
constants. Inference export uses ``model.save_pretrained(dir)``; ``gradient_checkpointing_enable()`` is called
when the config asks for gradient checkpointing.

Modes resolve by name (``ae``, ``vlm``) or by an import path ``package.module:attribute`` naming a TrainTask (or a
zero-argument function returning one), which is how tests and new modes plug in without editing this file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from torch import nn

from wp_policy.config_io import ConfigError, from_dict

BUILTIN_TASKS = {
    "ae": "wp_training.tasks.ae_task:make_task",
    "vlm": "wp_training.tasks.vlm_task:make_task",
}


class TaskUnavailable(RuntimeError):
    """The mode's code (or the project module it needs, e.g. wp_policy.models) is not installed."""


@dataclass(frozen=True)
class DataShard:
    """Which slice of the data stream a dataset instance must produce.

    The dataset yields the samples of shard ``rank`` of ``world_size`` for ``epoch``, shuffled with a generator
    derived from ``(seed, epoch, rank)``, and splits further across DataLoader workers itself
    (``torch.utils.data.get_worker_info()``). The stream must be a pure function of these fields: exact
    ``--resume`` rebuilds it and skips the batches already consumed.
    """

    rank: int
    world_size: int
    seed: int
    epoch: int


def _save_pretrained(model: nn.Module, out_dir: Path) -> None:
    if not hasattr(model, "save_pretrained"):
        raise TypeError(f"{type(model).__name__} has no save_pretrained(dir); give the TrainTask a save_model")
    model.save_pretrained(out_dir)


@dataclass(frozen=True)
class TrainTask:
    name: str
    model_config_cls: type  # frozen dataclass parsed from the YAML 'model:' section
    data_config_cls: type  # frozen dataclass parsed from the YAML 'data:' section
    build_model: Callable[[Any], nn.Module]  # (model_cfg) -> fp32 module on the current default device
    build_dataset: Callable[[Any, Any, DataShard], Iterable[dict]]  # (model_cfg, data_cfg, shard) -> samples
    collate: Callable[[list], dict] | None = None  # None: torch's default_collate
    load_pretrained: Callable[[nn.Module, Path], Any] | None = None  # (model, path) -> load report
    save_model: Callable[[nn.Module, Path], None] = _save_pretrained  # inference export (default: the method)
    module_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> param-name globs
    lora_targets: tuple[str, ...] = ()  # default Linear-module globs adapted by LoRA
    lora_also_train: tuple[str, ...] = ()  # default groups/globs trained in full beside LoRA (new heads)
    # FSDP shard units: class names of modules whose forward() the model calls (FSDP gathers a unit's weights in
    # its forward hook). Empty: every element of every nn.ModuleList (the transformer layers).
    fsdp_units: tuple[str, ...] = ()

    def parse_configs(self, model_section: dict, data_section: dict, source: str) -> tuple[Any, Any]:
        """Typed model and data configs; errors name the file and the ``model.``/``data.`` field."""
        return (
            from_dict(self.model_config_cls, model_section, source, "model"),
            from_dict(self.data_config_cls, data_section, source, "data"),
        )


def get_task(mode: str) -> TrainTask:
    """Resolve ``mode`` to a TrainTask; TaskUnavailable when the project code it needs is not there (yet)."""
    target = BUILTIN_TASKS.get(mode, mode)
    if ":" not in target:
        raise ConfigError(f"mode: {mode!r} is not one of {sorted(BUILTIN_TASKS)} nor a 'module:attribute' path")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.split(".")[0] in ("wp_policy", "wp_training") or module_name.startswith(missing):
            raise TaskUnavailable(f"mode {mode!r}: cannot import {module_name} ({exc})") from exc
        raise
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"mode: {module_name} has no attribute {attr!r}")
    task = obj if isinstance(obj, TrainTask) else obj()
    if not isinstance(task, TrainTask):
        raise ConfigError(f"mode: {target} returned {type(task).__name__}, expected a TrainTask")
    return task
