"""Warmup + cosine schedule values, LambdaLR wiring, and which parameters get weight decay."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wp_training.engine.optim import WarmupCosine, build_optimizer, build_scheduler, split_decay
from wp_training.engine.train_config import OptimConfig


def test_schedule_endpoints_and_shape():
    s = WarmupCosine(peak_lr=1e-3, end_lr=1e-5, warmup_steps=4, total_steps=20)
    assert s.lr(0) == pytest.approx(1e-3 / 5)
    assert s.lr(3) == pytest.approx(1e-3 * 4 / 5)
    assert s.lr(4) == pytest.approx(1e-3)
    assert s.lr(12) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half way through the decay
    assert s.lr(20) == pytest.approx(1e-5) and s.lr(500) == pytest.approx(1e-5)
    warm = [s.lr(i) for i in range(5)]
    decay = [s.lr(i) for i in range(4, 21)]
    assert warm == sorted(warm) and decay == sorted(decay, reverse=True)


def test_scheduler_drives_optimizer_lr():
    cfg = OptimConfig(peak_lr=2e-3, end_lr=1e-4, warmup_steps=3)
    param = nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer([("w", param)], cfg, torch.device("cpu"))
    sched = build_scheduler(opt, cfg, total_steps=10)
    reference = WarmupCosine(2e-3, 1e-4, 3, 10)
    for step in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(reference.lr(step))
        opt.step()
        sched.step()


def test_weight_decay_only_on_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    decay, no_decay = split_decay(model.named_parameters())
    assert [p.shape for p in decay] == [torch.Size([4, 3])]
    assert len(no_decay) == 3  # linear bias, norm weight and bias
    opt = build_optimizer(model.named_parameters(), OptimConfig(weight_decay=0.1), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and math.isclose(opt.param_groups[0]["lr"], 5e-5)


def test_no_trainable_parameters_is_an_error():
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([], OptimConfig(), torch.device("cpu"))
