"""A small real training task for the trainer tests: a residual MLP regressing a fixed random function.

It exercises everything the AE/VLM tasks rely on: ``model(batch) -> (loss, metrics)``, noise drawn from the
global torch RNG (like flow-matching noise, so exact resume needs the RNG restored), real gradient checkpointing
(``set_gradient_checkpointing`` -> ``torch.utils.checkpoint``), ``save_pretrained``/``from_pretrained``, an ``nn.ModuleList`` of
layers (FSDP units), and an iterable dataset sharded by rank and DataLoader worker with a seeded shuffle.

Importable as ``toy_task:TASK`` (tests put this directory on ``sys.path`` / ``PYTHONPATH``). ``toy_task:killing_task``
additionally SIGKILLs its own process after ``TOY_KILL_AFTER_SAMPLES`` samples (the kill-and-resume test).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import IterableDataset, get_worker_info

from wp_training.tasks.interface import DataShard, TrainTask


@dataclass(frozen=True)
class ToyModelConfig:
    in_dim: int = 8
    hidden: int = 32
    depth: int = 2
    noise_std: float = 0.05  # input noise from the global torch RNG

    def __post_init__(self):
        if self.in_dim <= 0 or self.hidden <= 0 or self.depth <= 0:
            raise ValueError(f"in_dim/hidden/depth must be > 0, got {self.in_dim}/{self.hidden}/{self.depth}")


@dataclass(frozen=True)
class ToyDataConfig:
    num_samples: int = 64  # per epoch, over all ranks
    in_dim: int = 8
    function_seed: int = 1234  # the regression target; fixed across runs


class Block(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, 2 * hidden)
        self.fc2 = nn.Linear(2 * hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(h))))


class ToyModel(nn.Module):
    """x float32 [B, in_dim] -> prediction [B]; loss = MSE against y float32 [B]."""

    def __init__(self, cfg: ToyModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.in_dim, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg.hidden) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.hidden, 1)
        self.checkpointing = False
        self.checkpoint_calls = 0

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = enabled

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x = batch["x"]
        if self.training and self.cfg.noise_std > 0:
            x = x + self.cfg.noise_std * torch.randn_like(x)
        h = self.embed(x)
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled():
                self.checkpoint_calls += 1
                h = checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
        pred = self.head(h).squeeze(-1).float()
        err = pred - batch["y"]
        return err.square().mean(), {"mae": err.abs().mean().detach()}

    def save_pretrained(self, out_dir: Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(self.cfg)))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out_dir / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: Path) -> "ToyModel":
        path = Path(path)
        model = cls(ToyModelConfig(**json.loads((path / "config.json").read_text())))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model


def target_function(x: np.ndarray, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).standard_normal((x.shape[-1],)).astype(np.float32)
    return np.sin(x @ w).astype(np.float32)


class ToyDataset(IterableDataset):
    """Samples of one (rank, worker) shard in a per-epoch seeded order; sample i is a pure function of i."""

    def __init__(self, cfg: ToyDataConfig, shard: DataShard):
        self.cfg = cfg
        self.shard = shard

    def sample(self, index: int) -> dict:
        x = np.random.default_rng([self.cfg.function_seed, index]).uniform(-1, 1, self.cfg.in_dim).astype(np.float32)
        return {"x": x, "y": target_function(x, self.cfg.function_seed), "index": index}

    def __iter__(self):
        order = np.random.default_rng([self.shard.seed, self.shard.epoch]).permutation(self.cfg.num_samples)
        mine = order[self.shard.rank :: self.shard.world_size]
        info = get_worker_info()
        if info is not None:
            mine = mine[info.id :: info.num_workers]
        for index in mine:
            yield self.sample(int(index))


def build_dataset(model_cfg: ToyModelConfig, data_cfg: ToyDataConfig, shard: DataShard) -> ToyDataset:
    if data_cfg.in_dim != model_cfg.in_dim:
        raise ValueError(f"data.in_dim {data_cfg.in_dim} != model.in_dim {model_cfg.in_dim}")
    return ToyDataset(data_cfg, shard)


def load_pretrained(model: ToyModel, path: Path) -> dict:
    state = load_file(str(Path(path) / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    return {"loaded": len(state) - len(unexpected), "missing": missing, "unexpected": unexpected}


TASK = TrainTask(
    name="toy",
    model_config_cls=ToyModelConfig,
    data_config_cls=ToyDataConfig,
    build_model=ToyModel,
    build_dataset=build_dataset,
    load_pretrained=load_pretrained,
    module_groups={"embed": ("embed.*",), "blocks": ("blocks.*",), "head": ("head.*",)},
    lora_targets=("blocks.*.fc1", "blocks.*.fc2"),
    lora_also_train=("head",),
)


class _KillingDataset(ToyDataset):
    def __init__(self, cfg, shard, counter: list, kill_after: int):
        super().__init__(cfg, shard)
        self.counter, self.kill_after = counter, kill_after

    def __iter__(self):
        for item in super().__iter__():
            self.counter[0] += 1
            if self.counter[0] > self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield item


def killing_task() -> TrainTask:
    """TASK whose data loader SIGKILLs the process after TOY_KILL_AFTER_SAMPLES samples (use num_workers=0);
    without the variable it is TASK (same mode string, so the killed run can be resumed)."""
    kill_after = int(os.environ.get("TOY_KILL_AFTER_SAMPLES", "-1"))
    if kill_after < 0:
        return TASK
    counter = [0]
    return dataclasses.replace(
        TASK, build_dataset=lambda m, d, shard: _KillingDataset(d, shard, counter, kill_after)
    )
