"""The training loop shared by every mode: one step = ``grad_accum`` micro-batches, clip, AdamW, LR schedule.

Per step and rank: ``grad_accum`` micro-batches of ``batch_size`` samples run forward under bf16 autocast (when
``precision: bf16``) and backward with gradients all-reduced only on the last micro-batch; the gradient norm is
clipped (a non-finite norm stops the run with the step number); the optimiser and scheduler advance. Every
``log.every_steps`` the loss, model metrics, lr, grad_norm, steps/s, samples/s and peak memory are averaged over
ranks and logged; every ``checkpoint.every_steps`` (and at the end) an atomic checkpoint is written. At the end
the last checkpoint is exported for inference (``final_model/``, LoRA merged) by rebuilding the model from it,
which also proves the checkpoint loads.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm import tqdm

from wp_policy.config_io import ConfigError, to_dict
from wp_training.engine.batch_stream import BatchStream, DataPosition, to_device
from wp_training.engine.distributed import (
    DistEnv,
    all_reduce_mean,
    check_replicas_in_sync,
    grad_sync,
    init_distributed,
    seed_everything,
    shutdown_distributed,
    unwrap,
    wrap_model,
)
from wp_training.engine.metrics_log import MetricsLogger
from wp_training.engine.model_setup import build_training_model, export_for_inference, param_counts
from wp_training.engine.optim import build_optimizer, build_scheduler
from wp_training.engine.train_config import TrainConfig, check_global_batch, check_paths, global_batch
from wp_training.engine.train_state import (
    CheckpointError,
    LoadedCheckpoint,
    RankState,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    restore_rng,
    save_checkpoint,
)
from wp_training.tasks.interface import DataShard, TrainTask

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
FINAL_MODEL_DIR = "final_model"
# Config fields a resumed run must share with its checkpoint: they define the parameters or the data stream.
RESUME_MUST_MATCH = ("mode", "seed", "batch_size", "grad_accum", "model", "data", "lora", "freeze", "frozen_dtype")


@dataclass(frozen=True)
class TrainResult:
    step: int
    last_loss: float | None
    checkpoint: Path | None
    export_dir: Path | None
    history: list[dict] = field(default_factory=list)  # the logged records (main rank)


def autocast_context(device: torch.device, precision: str):
    if precision in ("bf16", "bf16_mixed"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_gib(device: torch.device) -> float:
    """Peak CUDA memory allocated on GPU; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def accumulate_gradients(
    model: nn.Module, batches: Iterator, grad_accum: int, device: torch.device, precision: str
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward/backward ``grad_accum`` micro-batches into ``.grad``; returns the mean loss and mean metrics.

    Each micro-batch loss is divided by ``grad_accum``, so batch b x accum k gives the gradient of batch b*k.
    """
    loss_sum = torch.zeros((), device=device)
    metric_sums: dict[str, torch.Tensor] = {}
    for micro in range(grad_accum):
        batch = to_device(next(batches), device)
        with grad_sync(model, sync=micro == grad_accum - 1):
            with autocast_context(device, precision):
                loss, metrics = _forward(model, batch)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError(f"model(batch) must return (scalar loss tensor, metrics); got loss {loss!r:.80}")
            (loss / grad_accum).backward()
        loss_sum += loss.detach().float()
        for key, value in metrics.items():
            value = torch.as_tensor(value).detach().float().to(device)
            metric_sums[key] = metric_sums.get(key, torch.zeros((), device=device)) + value
    return loss_sum / grad_accum, {k: v / grad_accum for k, v in metric_sums.items()}


def _forward(model: nn.Module, batch):
    try:
        return model(batch)
    except RuntimeError as exc:
        if "DTensor" in str(exc):
            raise RuntimeError(
                f"FSDP: a shard unit's weights were used without its forward() being called ({exc}); set the task's "
                f"fsdp_units to module classes the model calls (see wp_training.tasks.interface.TrainTask)"
            ) from exc
        raise


def apply_update(params: list, optimizer, scheduler, clip_norm: float, step: int) -> torch.Tensor:
    """Clip, check, step, clear the grads; returns the pre-clip gradient norm. Raises on a non-finite norm."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP
        grad_norm = grad_norm.full_tensor()
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(
            f"step {step}: gradient norm is {float(grad_norm)} (non-finite loss or gradients); check the data for "
            f"NaN/inf and consider a lower optim.peak_lr"
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm.detach()


class _Meter:
    """Sums per-step values on the device; ``flush`` averages over steps and ranks (a collective)."""

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._steps = 0
        self._since = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0) + value
        self._steps += 1

    def flush(self) -> tuple[dict[str, float], int, float]:
        keys = sorted(self._sums)
        means = all_reduce_mean(torch.stack([self._sums[k] for k in keys]) / self._steps).tolist()
        elapsed = time.perf_counter() - self._since
        out = (dict(zip(keys, means)), self._steps, elapsed)
        self._sums, self._steps, self._since = {}, 0, time.perf_counter()
        return out


@dataclass
class _Run:
    cfg: TrainConfig
    task: TrainTask
    env: DistEnv
    model: nn.Module  # the wrapped training module (DDP / FSDP / bare)
    optimizer: Any
    scheduler: Any
    stream: BatchStream
    logger: MetricsLogger
    model_cfg: Any
    step: int = 0

    @property
    def checkpoint_root(self) -> Path:
        return self.cfg.run_dir / CHECKPOINT_DIR


def train(cfg: TrainConfig, task: TrainTask, *, resume: bool = False, source: str = "<config>") -> TrainResult:
    """Run (or with ``resume`` continue) training as configured; one call per process (torchrun starts N)."""
    check_paths(cfg)
    model_cfg, data_cfg = task.parse_configs(cfg.model, cfg.data, source)
    env = init_distributed(cfg.dist)
    try:
        run = _setup(cfg, task, env, model_cfg, data_cfg, resume)
        try:
            return _loop(run)
        finally:
            run.logger.close()
    finally:
        shutdown_distributed(env)


def _resume_point(root: Path, resume: bool) -> Path | None:
    latest = latest_checkpoint(root)
    if resume and latest is None:
        raise CheckpointError(f"--resume: no complete checkpoint under {root}")
    if not resume and latest is not None:
        raise CheckpointError(f"{root} already holds checkpoints (latest {latest.name}); pass --resume to continue "
                              f"that run, or choose a new run_dir")
    return latest


def _check_resume_config(saved: dict, cfg: TrainConfig) -> None:
    current = to_dict(cfg)
    mismatched = [k for k in RESUME_MUST_MATCH if saved.get(k) != current.get(k)]
    if mismatched:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in mismatched)
        raise CheckpointError(f"cannot resume exactly, config differs from the checkpoint's: {details}")
    changed = sorted(k for k in current if k not in RESUME_MUST_MATCH and saved.get(k) != current.get(k))
    if changed:
        log.warning("resuming with changed settings %s (the run continues, but not as the original would)", changed)


def _build(cfg: TrainConfig, task: TrainTask, env: DistEnv, model_cfg, fresh: bool):
    """(wrapped model, optimizer, scheduler, parameter counts) for this rank."""
    seed_everything(cfg.seed, rank=0)  # identical initial weights on every rank (FSDP does not broadcast them)
    model, _ = build_training_model(task, cfg, model_cfg, load_pretrained=fresh)
    counts = param_counts(model)
    wrapped = wrap_model(model.to(env.device), env, cfg.dist, task.fsdp_units)
    trainable = [(n, p) for n, p in unwrap(wrapped).named_parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, cfg.optim, env.device)
    return wrapped, optimizer, build_scheduler(optimizer, cfg.optim, cfg.num_steps), counts


def _setup(cfg: TrainConfig, task: TrainTask, env: DistEnv, model_cfg, data_cfg, resume: bool) -> _Run:
    total_batch = check_global_batch(cfg, env.world_size)
    resume_from = _resume_point(cfg.run_dir / CHECKPOINT_DIR, resume)
    wrapped, optimizer, scheduler, counts = _build(cfg, task, env, model_cfg, fresh=resume_from is None)
    loaded: LoadedCheckpoint | None = None
    if resume_from is not None:
        loaded = load_checkpoint(resume_from, wrapped, optimizer, scheduler, env)
        _check_resume_config(loaded.config, cfg)
        optimizer.zero_grad(set_to_none=True)  # DCP (FSDP) initialises the optimizer state with zero grads
    position = DataPosition(loaded.rank_state.data_epoch, loaded.rank_state.data_batches) if loaded else DataPosition()
    stream = BatchStream(
        lambda shard: task.build_dataset(model_cfg, data_cfg, shard), cfg.batch_size, cfg.loader,
        DataShard(env.rank, env.world_size, cfg.seed, position.epoch), task.collate, position,
        pin_memory=env.device.type == "cuda", show_progress=env.is_main,
    )
    if loaded is not None:
        restore_rng(loaded.rank_state.rng, env.device)  # last: building and fast-forwarding drew random numbers
    else:
        seed_everything(cfg.seed, env.rank)
    step = loaded.step if loaded else 0
    logger = MetricsLogger(cfg.run_dir, cfg.log, to_dict(cfg), env.is_main, resume_step=step if loaded else None)
    logger.summary({**counts, "global_batch": total_batch, "world_size": env.world_size, "start_step": step})
    if env.is_main:
        log.info("global batch = %d (batch_size) x %d (processes) x %d (grad_accum) = %d (min_global_batch %d)",
                 cfg.batch_size, env.world_size, cfg.grad_accum, total_batch, cfg.min_global_batch)
        log.info("parameters: %s; device %s; %s", counts, env.device, f"resumed at step {step}" if loaded else "fresh")
    return _Run(cfg, task, env, wrapped, optimizer, scheduler, stream, logger, model_cfg, step)


def _loop(run: _Run) -> TrainResult:
    cfg, env = run.cfg, run.env
    params = [p for p in unwrap(run.model).parameters() if p.requires_grad]
    meter, history, last_ckpt, last_loss = _Meter(), [], None, None
    bar = tqdm(total=cfg.num_steps, initial=run.step, desc=f"train {run.task.name}", disable=not env.is_main)
    while run.step < cfg.num_steps:
        lr = run.scheduler.get_last_lr()[0]
        loss, metrics = accumulate_gradients(run.model, run.stream, cfg.grad_accum, env.device, cfg.precision)
        grad_norm = apply_update(params, run.optimizer, run.scheduler, cfg.optim.clip_grad_norm, run.step)
        run.step += 1
        meter.add({**{f"train/{k}": v for k, v in metrics.items()}, "train/loss": loss, "train/grad_norm": grad_norm})
        bar.update(1)
        if run.step % cfg.log.every_steps == 0 or run.step == cfg.num_steps:
            record = _log_record(run, meter, lr)
            history.append(record)
            last_loss = record["train/loss"]
            bar.set_postfix(loss=f"{last_loss:.4g}")
        if run.step % cfg.checkpoint.every_steps == 0 or run.step == cfg.num_steps:
            last_ckpt = _save(run)
    bar.close()
    export_dir = _export(run, last_ckpt) if last_ckpt is not None and env.is_main else None
    return TrainResult(run.step, last_loss, last_ckpt, export_dir, history)


def _log_record(run: _Run, meter: _Meter, lr: float) -> dict:
    means, steps, elapsed = meter.flush()
    record = {
        **means,
        "train/lr": lr,
        "train/steps_per_sec": steps / elapsed,
        "train/samples_per_sec": steps * global_batch(run.cfg, run.env.world_size) / elapsed,
        "train/peak_mem_gib": peak_memory_gib(run.env.device),
    }
    run.logger.log(run.step, record)
    return {"step": run.step, **record}


def _save(run: _Run) -> Path:
    position = run.stream.position
    checksum = None if run.cfg.dist.strategy == "fsdp" else check_replicas_in_sync(run.model, run.env)
    rank_state = RankState(position.epoch, position.batches, capture_rng(run.env.device), checksum)
    return save_checkpoint(
        run.checkpoint_root, run.step, run.model, run.optimizer, run.scheduler, rank_state, run.env,
        to_dict(run.cfg), run.cfg.checkpoint.keep_last,
    )


def _export(run: _Run, checkpoint: Path) -> Path:
    """Rebuild the model on CPU from ``checkpoint`` and export it (works the same after DDP and FSDP)."""
    return export_checkpoint(run.task, run.cfg, run.model_cfg, checkpoint, run.cfg.run_dir / FINAL_MODEL_DIR)


def export_checkpoint(task: TrainTask, cfg: TrainConfig, model_cfg: Any, checkpoint: Path, out_dir: Path) -> Path:
    """Inference export of a training checkpoint: build, load the stored weights strictly, merge LoRA, save."""
    model, tuner = build_training_model(task, cfg, model_cfg, load_pretrained=False)
    missing, unexpected = model.load_state_dict(load_model_weights(checkpoint), strict=False)
    if missing or unexpected:
        raise ConfigError(f"checkpoint {checkpoint} does not match the configured model: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]} (different model/lora settings?)")
    out = export_for_inference(task, model, tuner, out_dir)
    log.info("exported inference model to %s", out)
    return out
