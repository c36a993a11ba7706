"""Checkpoints: exact round trip (no pickle), tied weights, atomic publish, keep-last-K, corruption and RNG."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import wp_training.engine.train_state as ts
from wp_training.engine.distributed import DistEnv
from wp_training.engine.optim import build_optimizer, build_scheduler
from wp_training.engine.train_config import OptimConfig

CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend="")


class Tied(nn.Module):
    """An embedding tied to the output head, like Gemma's lm_head (safetensors refuses aliased tensors)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(torch.tanh(self.mid(self.embed(tokens))))


def _trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    model = Tied()
    cfg = OptimConfig(peak_lr=1e-2, warmup_steps=1)
    opt = build_optimizer(model.named_parameters(), cfg, torch.device("cpu"))
    sched = build_scheduler(opt, cfg, total_steps=10)
    for _ in range(steps):
        model(torch.tensor([[1, 2, 3]])).logsumexp(-1).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def _save(root, step, model, opt, sched, keep_last=3):
    state = ts.RankState(data_epoch=1, data_batches=step, rng=ts.capture_rng(CPU.device))
    return ts.save_checkpoint(root, step, model, opt, sched, state, CPU, {"seed": 0}, keep_last)


def test_round_trip_is_exact_and_pickle_free(tmp_path):
    model, opt, sched = _trained()
    path = _save(tmp_path, 3, model, opt, sched)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["model.safetensors", "optimizer.safetensors", "trainer.json", "rank_0.json", "manifest.json"])
    fresh, fresh_opt, fresh_sched = _trained(seed=1, steps=1)
    loaded = ts.load_checkpoint(path, fresh, fresh_opt, fresh_sched, CPU)
    assert loaded.step == 3 and loaded.rank_state.data_batches == 3 and loaded.config == {"seed": 0}
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert fresh.head.weight is fresh.embed.weight  # tie survives
    for p_ref, p_new in zip(model.parameters(), fresh.parameters()):
        s_ref, s_new = opt.state[p_ref], fresh_opt.state[p_new]
        assert all(torch.equal(s_ref[k], s_new[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert fresh_sched.last_epoch == sched.last_epoch and fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert fresh_opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_interrupted_save_is_never_picked_up(tmp_path, monkeypatch):
    model, opt, sched = _trained()
    good = _save(tmp_path, 4, model, opt, sched)
    real_save = ts.save_file

    def dies_on_optimizer(tensors, filename, metadata=None):
        if filename.endswith("optimizer.safetensors"):
            raise KeyboardInterrupt("killed while writing")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ts, "save_file", dies_on_optimizer)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 8, model, opt, sched)
    assert (tmp_path / "step_00000008.tmp" / "model.safetensors").is_file()  # partial write left behind...
    assert ts.latest_checkpoint(tmp_path) == good  # ...but never used
    monkeypatch.setattr(ts, "save_file", real_save)
    _save(tmp_path, 12, model, opt, sched)
    assert not list(tmp_path.glob("*.tmp")) and ts.latest_checkpoint(tmp_path).name == "step_00000012"


def test_keep_last_k(tmp_path):
    model, opt, sched = _trained()
    for step in range(1, 6):
        _save(tmp_path, step, model, opt, sched, keep_last=2)
    assert [s for s, _ in ts.list_checkpoints(tmp_path)] == [4, 5]


def test_truncated_file_is_detected(tmp_path):
    model, opt, sched = _trained()
    path = _save(tmp_path, 2, model, opt, sched)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ts.CheckpointError, match="model.safetensors: expected .* bytes"):
        ts.load_checkpoint(path, *_trained(), CPU)


def test_world_size_mismatch_is_refused(tmp_path):
    model, opt, sched = _trained()
    path = _save(tmp_path, 2, model, opt, sched)
    two = DistEnv(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
    with pytest.raises(ts.CheckpointError, match="written by 1 processes, resuming with 2"):
        ts.load_checkpoint(path, *_trained(), two)


def test_rng_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json.loads(json.dumps(ts.capture_rng(torch.device("cpu"))))  # survives JSON
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ts.restore_rng(state, torch.device("cpu"))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
