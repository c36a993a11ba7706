"""Turn a task's freshly built model into the module that trains: Pi0.5-base weights, gradient checkpointing,
LoRA (peft), freezing and parameter dtypes; and back into an inference checkpoint (LoRA merged) at the end.

Trainability rules, applied in this order:
  0. Parameters the model froze itself at construction (weights its forward never reads) never train.
  1. LoRA off: every other parameter trains. LoRA on: only the adapters on ``lora.targets`` (Linear modules) and
     the parameters matched by ``lora.also_train`` train (new heads that have no pretrained weights).
  2. ``freeze`` switches off whatever it matches (adapters inside a frozen module included).
Then parameters (never buffers) are cast for ``precision`` (:func:`apply_precision`).
Patterns are the task's group names (``vision`` -> its globs) or fnmatch globs over parameter / module names;
a pattern that matches nothing is an error (a typo would otherwise silently train the wrong thing).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from wp_policy.config_io import ConfigError
from wp_training.engine.train_config import LoraSettings, TrainConfig
from wp_training.tasks.interface import TrainTask

log = logging.getLogger(__name__)


def expand_patterns(patterns: Iterable[str], groups: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Group names become their globs; anything else is a glob already."""
    out: list[str] = []
    for pattern in patterns:
        out.extend(groups.get(pattern, (pattern,)))
    return out


def _matches(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _resolve(field: str, patterns: Iterable[str], names: list[str], groups: Mapping) -> list[str]:
    """Globs for ``patterns``; ConfigError naming ``field`` when one of them matches none of ``names``."""
    globs: list[str] = []
    for pattern in patterns:
        pattern_globs = expand_patterns([pattern], groups)
        if not any(_matches(n, pattern_globs) for n in names):
            raise ConfigError(f"{field}: {pattern!r} matches no parameter of the model")
        globs.extend(pattern_globs)
    return globs


def lora_target_names(model: nn.Module, globs: Iterable[str]) -> list[str]:
    globs = list(globs)
    return [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and _matches(name, globs)]


def inject_lora(model: nn.Module, settings: LoraSettings, task: TrainTask):
    """Add LoRA adapters in place (peft); returns the peft tuner (kept for merging at export)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    patterns = settings.targets or task.lora_targets
    if not patterns:
        raise ConfigError("lora.targets: empty and the task defines no default LoRA targets")
    names = lora_target_names(model, expand_patterns(patterns, task.module_groups))
    if not names:
        raise ConfigError(f"lora.targets: {list(patterns)} match no nn.Linear module of the model")
    regex = "^(?:" + "|".join(re.escape(n) for n in names) + ")$"  # exact names (peft's list form also suffix-matches)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=regex)
    return LoraModel(model, config, "default")


def set_trainable(model: nn.Module, cfg: TrainConfig, task: TrainTask, never_train: set[int]) -> None:
    """Apply the rules in the module docstring (after LoRA injection, which already froze the base weights).

    ``never_train``: ids of the parameters the model froze itself at construction (e.g. weights its forward never reads,
    which DDP would otherwise report as unused); no rule turns them on.
    """
    names = [n for n, _ in model.named_parameters()]
    if cfg.lora.enabled:
        globs = _resolve("lora.also_train", cfg.lora.also_train or task.lora_also_train, names, task.module_groups)
        for name, param in model.named_parameters():
            if _matches(name, globs):
                param.requires_grad_(True)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    frozen = _resolve("freeze", cfg.freeze, names, task.module_groups)
    for name, param in model.named_parameters():
        if id(param) in never_train or _matches(name, frozen):
            param.requires_grad_(False)


def _adapters_of_unused(model: nn.Module, never_train: set[int]) -> set[int]:
    """Ids of LoRA adapters sitting on a weight the model never reads (they would never get a gradient)."""
    out: set[int] = set()
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and any(id(p) in never_train for p in base.parameters()):
            out |= {id(p) for name, p in module.named_parameters() if "lora_" in name}
    return out


def cast_parameters(model: nn.Module, dtype: torch.dtype, trainable: bool | None = None) -> None:
    """Cast parameters (``trainable``: only those with/without grads; None: all) but never buffers: the models
    keep e.g. RoPE tables in their own precision, and ``model.to(dtype)`` would round them."""
    for param in model.parameters():
        if (trainable is None or param.requires_grad == trainable) and param.dtype != dtype:
            param.data = param.data.to(dtype)


def apply_precision(model: nn.Module, cfg: TrainConfig) -> None:
    """``bf16``: every weight in bf16. ``fp32``/``bf16_mixed``: trainable weights fp32 (masters for AdamW),
    frozen ones in ``frozen_dtype`` (no grads or optimiser state, so bf16 costs them no precision)."""
    if cfg.precision == "bf16":
        cast_parameters(model, torch.bfloat16)
    else:
        cast_parameters(model, torch.float32, trainable=True)
        cast_parameters(model, getattr(torch, cfg.frozen_dtype), trainable=False)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """The project's models expose ``set_gradient_checkpointing(True)``; HF models ``gradient_checkpointing_enable()``."""
    if hasattr(model, "set_gradient_checkpointing"):
        model.set_gradient_checkpointing(True)
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    else:
        raise ConfigError(f"gradient_checkpointing: {type(model).__name__} has no way to enable it")


def build_training_model(task: TrainTask, cfg: TrainConfig, model_cfg: Any, load_pretrained: bool):
    """(model, lora_tuner_or_None) on CPU, ready to move to the device and wrap."""
    model = task.build_model(model_cfg)
    never_train = {id(p) for p in model.parameters() if not p.requires_grad}  # ids survive peft's renaming
    if load_pretrained and cfg.pretrained_path is not None:
        if task.load_pretrained is None:
            raise ConfigError(f"pretrained_path: mode {task.name!r} has no pretrained-weight loader")
        report = task.load_pretrained(model, cfg.pretrained_path)
        log.info("loaded pretrained weights from %s: %s", cfg.pretrained_path, report)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    tuner = inject_lora(model, cfg.lora, task) if cfg.lora.enabled else None
    if tuner is not None:
        never_train |= _adapters_of_unused(model, never_train)
    set_trainable(model, cfg, task, never_train)
    apply_precision(model, cfg)
    return model, tuner


def param_counts(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable, "frozen_params": total - trainable}


def export_for_inference(task: TrainTask, model: nn.Module, tuner, out_dir: Path) -> Path:
    """Write the inference checkpoint (``task.save_model``, i.e. ``save_pretrained``) with LoRA merged, fp32.

    Modifies ``model`` (merge + cast): call it on a model that is not trained further.
    """
    cast_parameters(model, torch.float32)  # merge in fp32: bf16 base weights would round the LoRA delta
    merged = tuner.merge_and_unload() if tuner is not None else model
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    task.save_model(merged, tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
