"""Training step time and peak memory of the real AE / VLM models in the real trainer (synthetic batches), with the
memory planner's prediction beside the measurement.

The batches are random tensors in the ``wp_policy.batch`` layout, so the numbers are the model + optimiser step
only (data loading is benchmarked by ``bench/bench_datasets.py``). Examples::

    .venv/bin/python bench/bench_train_step.py --model ae --preset tiny --batch 4 --steps 12
    .venv/bin/python bench/bench_train_step.py --model vlm --preset tiny --batch 4 --steps 12
    # on a GPU (planner: pi05 spec activations; measured: torch.cuda.max_memory_allocated)
    python bench/bench_train_step.py --model ae --preset pi05 --batch 8 --precision bf16 --checkpointing --device cuda
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from wp_policy import batch as B
from wp_policy.config_io import from_dict
from wp_policy.models import PRESETS, WaypointActionExpert, WaypointVLM, ae_config, save_pretrained, vlm_config
from wp_policy.paths import config_dir
from wp_training.engine.memory_plan import GIB, activation_model, budget_from_model, gpu_usage, load_memory_spec
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.model_setup import build_training_model
from wp_training.engine.train_config import TrainConfig
from wp_training.engine.trainer import train
from wp_training.tasks.interface import DataShard, TrainTask


@dataclass(frozen=True)
class SyntheticModel:
    kind: str  # "ae" | "vlm"
    preset: str
    views: int = 2
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SyntheticData:
    prompt_len: int = 48
    seq_len: int = 128  # VLM sequence (prompt + waypoint tokens)


def build_model_config(cfg: SyntheticModel):
    keys = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")[: cfg.views]
    make = ae_config if cfg.kind == "ae" else vlm_config
    return make(cfg.preset, image_keys=keys, **cfg.overrides)


def build_model(cfg: SyntheticModel) -> torch.nn.Module:
    return (WaypointActionExpert if cfg.kind == "ae" else WaypointVLM)(build_model_config(cfg))


class SyntheticSamples(IterableDataset):
    """Endless random samples for one rank (seeded by the shard), shaped for the model's config."""

    def __init__(self, model: SyntheticModel, data: SyntheticData, shard: DataShard):
        self.model, self.data, self.shard = model, data, shard

    def __iter__(self):
        rng = np.random.default_rng([self.shard.seed, self.shard.rank, self.shard.epoch])
        cfg = build_model_config(self.model)
        while True:
            yield ae_sample(cfg, self.data, rng) if self.model.kind == "ae" else vlm_sample(cfg, self.data, rng)


def _observation(cfg, length: int, rng: np.random.Generator) -> dict:
    size = cfg.vision.image_size
    return {
        B.IMAGES: {k: rng.uniform(-1, 1, (3, size, size)).astype(np.float32) for k in cfg.image_keys},
        B.IMAGE_MASKS: {k: np.bool_(True) for k in cfg.image_keys},
        B.TOKENS: rng.integers(3, 400, length).astype(np.int64),
        B.INPUT_MASK: np.ones(length, bool),
    }


def ae_sample(cfg, data: SyntheticData, rng: np.random.Generator) -> dict:
    duration = int(rng.integers(1, cfg.horizon + 1))
    steps = np.arange(cfg.horizon) < duration
    return {
        **_observation(cfg, data.prompt_len, rng),
        B.START_PROPRIO: rng.uniform(-1, 1, cfg.proprio_dim).astype(np.float32),
        B.END_PROPRIO: rng.uniform(-1, 1, cfg.proprio_dim).astype(np.float32),
        B.DURATION: np.int64(duration),
        B.ACTIONS: (rng.uniform(-1, 1, (cfg.horizon, cfg.action_dim)) * steps[:, None]).astype(np.float32),
        B.STEP_MASK: steps,
        B.DIM_MASK: np.arange(cfg.action_dim) < 7,
    }


def vlm_sample(cfg, data: SyntheticData, rng: np.random.Generator) -> dict:
    sample = _observation(cfg, data.seq_len, rng)
    postfix = np.arange(data.seq_len) >= data.prompt_len
    sample[B.TOKENS] = rng.integers(3, cfg.vocab_size - 1, data.seq_len).astype(np.int64)
    sample[B.AR_MASK] = postfix.astype(np.int32)
    sample[B.LOSS_MASK] = postfix
    return sample


TASK = TrainTask(
    name="synthetic",
    model_config_cls=SyntheticModel,
    data_config_cls=SyntheticData,
    build_model=build_model,
    build_dataset=lambda m, d, shard: SyntheticSamples(m, d, shard),
    save_model=save_pretrained,
    fsdp_units=("SiglipEncoderLayer", "GemmaMLP", "Linear"),
)


def bench_config(args, run_dir: Path) -> TrainConfig:
    return from_dict(TrainConfig, {
        "mode": "synthetic", "run_dir": str(run_dir), "num_steps": args.steps, "batch_size": args.batch,
        "precision": args.precision, "gradient_checkpointing": args.checkpointing,
        "optim": {"peak_lr": 1e-4, "warmup_steps": 1}, "log": {"every_steps": 1},
        "checkpoint": {"every_steps": args.steps, "keep_last": 1},
        "loader": {"num_workers": 0, "pin_memory": False}, "dist": {"device": args.device},
        "model": {"kind": args.model, "preset": args.preset, "views": args.views},
        "data": {"prompt_len": args.prompt_len, "seq_len": args.seq_len},
    }, source="bench")


def predicted_gib(cfg: TrainConfig, args) -> float:
    model_cfg, _ = TASK.parse_configs(cfg.model, cfg.data, "bench")
    with torch.device("meta"):
        model, _ = build_training_model(TASK, cfg, model_cfg, load_pretrained=False)
    budget = budget_from_model(model, "bench", TASK.fsdp_units)
    spec = load_memory_spec(config_dir() / "memory" / f"pi05_{args.model}.yaml") if args.preset == "pi05" else None
    acts = activation_model(spec, cfg.precision, args.views, args.checkpointing)
    return gpu_usage(budget, acts, args.batch, "ddp", 1, 0.0).total_bytes / GIB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=("ae", "vlm"), default="ae")
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    p.add_argument("--batch", type=int, default=4, help="per-GPU batch")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps (the first --warmup are not timed)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16_mixed", "bf16"), default="fp32")
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=48)
    p.add_argument("--seq-len", type=int, default=128, help="VLM token sequence length")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args, Path(tmp) / "run")
        train(cfg, TASK)
        steps, _ = read_jsonl(cfg.run_dir / "metrics.jsonl")
    timed = steps[args.warmup:] or steps
    step_ms = 1e3 / np.median([r["train/steps_per_sec"] for r in timed])
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    peak = "max_memory_allocated" if args.device == "cuda" else "process max RSS"
    print(f"{args.model} {args.preset} | batch {args.batch} | {args.precision} | checkpointing {args.checkpointing} | "
          f"{args.views} views | {where} | torch {torch.__version__}")
    print(f"{'ms/step':>9}{'samples/s':>11}{f'peak GiB ({peak})':>34}{'planner GiB (DDP, 1 GPU)':>27}")
    print(f"{step_ms:>9.1f}{args.batch * 1e3 / step_ms:>11.1f}{steps[-1]['train/peak_mem_gib']:>34.2f}"
          f"{predicted_gib(cfg, args):>27.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
