"""AdamW with decoupled weight decay on matrices only, and a linear-warmup + cosine learning-rate schedule.

The schedule is a pure function of the step (:class:`WarmupCosine`), wrapped in a ``LambdaLR`` so that its state
is just the step counter: a resumed run rebuilds it from the config and continues exactly.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from wp_training.engine.train_config import OptimConfig


class WarmupCosine:
    """LR multiplier (of ``peak_lr``): linear warmup from ``peak/(warmup+1)``, then cosine down to ``end_lr``."""

    def __init__(self, peak_lr: float, end_lr: float, warmup_steps: int, total_steps: int):
        self.peak_lr = peak_lr
        self.end_lr = end_lr
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / (self.warmup_steps + 1)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.end_lr + 0.5 * (self.peak_lr - self.end_lr) * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.peak_lr


def split_decay(named_params: Iterable[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    """(decay, no_decay): weight decay on >= 2-D weights only; biases, norm scales and scalars are left alone."""
    decay, no_decay = [], []
    for _, param in named_params:
        (decay if param.ndim >= 2 else no_decay).append(param)
    return decay, no_decay


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]], cfg: OptimConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (its two states take each parameter's dtype: fp32 master weights
    give fp32 states, precision bf16 gives bf16 states)."""
    decay, no_decay = split_decay(named_params)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters: check 'freeze' and 'lora' in the config")
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(
        groups, lr=cfg.peak_lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=device.type == "cuda"
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = WarmupCosine(cfg.peak_lr, cfg.end_lr, cfg.warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
