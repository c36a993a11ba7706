"""Process-group setup from the torchrun environment, per-rank seeding, DDP / FSDP wrapping and small collectives.

One process per GPU (``torchrun --nproc_per_node N``); a plain ``python`` run is world size 1 with no process
group. Backend ``auto`` picks nccl on GPU and gloo on CPU (the original recipe's machine needed gloo: nccl gave "CUDA
illegal memory access" there, hence the override). FSDP is FSDP2 (``fully_shard``): the task's unit classes, or
every element of every ``nn.ModuleList`` (the transformer layers), become shard units, then the root. A unit's
weights are gathered by its forward hook, so a unit must be a module the model calls (not one whose children it
calls directly).
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wp_policy.config_io import ConfigError
from wp_training.engine.train_config import DistSettings


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str  # "" when there is no process group (world size 1)
    owns_process_group: bool = False  # created here, so shutdown_distributed() destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise RuntimeError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from exc


def pick_device(settings: DistSettings, local_rank: int) -> torch.device:
    if settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("dist.device: cuda requested but torch.cuda.is_available() is False")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(settings: DistSettings) -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (torchrun) and create the process group when world size > 1."""
    rank, world, local_rank = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    device = pick_device(settings, local_rank)
    backend, owns = "", False
    if world > 1:
        backend = settings.backend if settings.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError("dist.backend: nccl needs CUDA devices; use gloo (or auto) on CPU")
        if not dist.is_initialized():
            kwargs = {"device_id": device} if backend == "nccl" else {}
            dist.init_process_group(backend, timeout=timedelta(minutes=30), **kwargs)
            owns = True
    return DistEnv(rank, local_rank, world, device, backend, owns)


def shutdown_distributed(env: DistEnv) -> None:
    if env.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int) -> None:
    """Seed python, numpy and torch (CPU + CUDA) with ``seed + rank``: ranks draw different noise, reproducibly."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def wrap_model(model: nn.Module, env: DistEnv, settings: DistSettings, fsdp_units: tuple[str, ...] = ()) -> nn.Module:
    """DDP or FSDP2 around ``model`` (already on ``env.device``); the bare model when world size is 1."""
    if not env.distributed:
        return model
    if settings.strategy == "fsdp":
        return _fully_shard(model, env, fsdp_units)
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=device_ids,
        find_unused_parameters=settings.find_unused_parameters,
        gradient_as_bucket_view=True,  # grads live in the buckets: no second grad-sized copy per GPU
    )


def fsdp_unit_modules(model: nn.Module, unit_classes: tuple[str, ...] = ()) -> list[nn.Module]:
    """Modules sharded as their own FSDP unit, innermost first: instances of ``unit_classes`` (class names), or by
    default every element of every ``nn.ModuleList``; parameter-free modules are skipped."""
    if unit_classes:
        chosen = [m for m in model.modules() if type(m).__name__ in unit_classes and m is not model]
    else:
        chosen = [layer for m in model.modules() if isinstance(m, nn.ModuleList) for layer in m]
    uses = _param_uses(model)
    # a unit holding a tied weight that is also used outside it (lm_head <-> embeddings) stays in the root unit
    chosen = [m for m in chosen if any(p.numel() for p in m.parameters())
              and all(n == uses[i] for i, n in _param_uses(m).items())]
    order = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(chosen, key=lambda m: -order[id(m)])  # descendants before their ancestors


def _param_uses(module: nn.Module) -> dict[int, int]:
    """How many times each parameter (by id) is registered in ``module`` (tied weights count twice)."""
    uses: dict[int, int] = {}
    for _, param in module.named_parameters(remove_duplicate=False):
        uses[id(param)] = uses.get(id(param), 0) + 1
    return uses


def _fully_shard(model: nn.Module, env: DistEnv, unit_classes: tuple[str, ...]) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    for module in fsdp_unit_modules(model, unit_classes):
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user module under a DDP wrapper (FSDP2 shards in place, so the model is its own root)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def grad_sync(model: nn.Module, sync: bool):
    """Context for one micro-step: gradients are all-reduced only when ``sync`` (the last micro-step)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2 module
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity without a process group)."""
    if dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def param_checksum(model: nn.Module) -> float:
    """float64 fingerprint of the local parameters; equal on every DDP rank when replicas are in sync."""
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for param in unwrap(model).parameters():
            local = param.to_local() if hasattr(param, "to_local") else param
            data = local.detach().double()
            total += (data.sum() + data.square().sum()).cpu()
    return float(total)


def check_replicas_in_sync(model: nn.Module, env: DistEnv) -> float:
    """Raise if DDP replicas diverged (compares every rank's checksum); returns this rank's checksum."""
    checksum = param_checksum(model)
    if env.distributed and isinstance(model, nn.parallel.DistributedDataParallel):
        gathered = [None] * env.world_size
        dist.all_gather_object(gathered, checksum)
        if len(set(gathered)) != 1:
            raise RuntimeError(f"DDP replicas out of sync: parameter checksums per rank {gathered}")
    return checksum
