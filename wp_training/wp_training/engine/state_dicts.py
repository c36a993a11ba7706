"""Full, name-keyed model and optimizer state dicts for a bare module, DDP or FSDP, and back.

Checkpoints store parameters and AdamW states by parameter name (never by position), so a checkpoint written
under DDP resumes under FSDP and vice versa. Sharded (FSDP) models go through ``torch.distributed.checkpoint``,
which gathers the full tensors on rank 0 (a collective: every rank calls it); replicated models (bare or DDP) use
``state_dict()`` directly, which avoids that module's import (~2 s per process) and its side effects.

Optimizer state format (both paths): ``{"state": {name: {"step"|"exp_avg"|...: tensor}},
"param_groups": [{hyperparameters..., "params": [name, ...]}]}``.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from wp_training.engine.distributed import unwrap


def is_sharded(model: nn.Module) -> bool:
    """True when parameters are DTensors (FSDP2 shards)."""
    return any(hasattr(p, "placements") for p in model.parameters())


def _dcp():
    from torch.distributed.checkpoint import state_dict

    return state_dict


def _param_order(model: nn.Module, optimizer) -> list[str]:
    """Names of the optimizer's parameters in its positional order (how ``optimizer.state_dict()`` numbers them)."""
    names = {id(p): n for n, p in unwrap(model).named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def get_full_state(model: nn.Module, optimizer) -> tuple[dict, dict]:
    """(model state, optimizer state) with full tensors: on every rank when replicated, on rank 0 when sharded."""
    if is_sharded(model):
        dcp = _dcp()
        full = dcp.StateDictOptions(full_state_dict=True, cpu_offload=True)
        return dcp.get_model_state_dict(model, options=full), dcp.get_optimizer_state_dict(model, optimizer, options=full)
    order = _param_order(model, optimizer)
    raw = optimizer.state_dict()
    state = {order[i]: dict(s) for i, s in raw["state"].items()}
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in raw["param_groups"]]
    return unwrap(model).state_dict(), {"state": state, "param_groups": groups}


def set_full_state(model: nn.Module, optimizer, model_state: Mapping, optim_state: Mapping) -> None:
    """Load full state dicts (strict) into ``model`` and ``optimizer``; every rank passes the full dicts."""
    if is_sharded(model):
        dcp = _dcp()
        dcp.set_model_state_dict(model, dict(model_state), options=dcp.StateDictOptions(full_state_dict=True))
        # not strict: a trainable parameter that never received a gradient has no AdamW state, in the saved
        # optimizer as in the live one (the bare/DDP path below behaves the same way)
        optim_options = dcp.StateDictOptions(full_state_dict=True, strict=False)
        dcp.set_optimizer_state_dict(model, optimizer, dict(optim_state), options=optim_options)
    else:
        unwrap(model).load_state_dict(model_state, strict=True)
        index = {name: i for i, name in enumerate(_param_order(model, optimizer))}
        unknown = sorted(set(optim_state["state"]) - set(index))
        if unknown:
            raise KeyError(f"optimizer state for parameters the model does not train: {unknown[:5]}")
        optimizer.load_state_dict({
            "state": {index[name]: s for name, s in optim_state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in optim_state["param_groups"]],
        })
    for group in optimizer.param_groups:  # JSON / DCP hand betas back as a list; AdamW documents a tuple
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])


SEP = "::"


def flatten_optimizer_state(optim_state: Mapping) -> tuple[dict[str, torch.Tensor], list]:
    """Tensors keyed ``"<param name>::<state name>"`` (safetensors) and the param groups (JSON)."""
    flat = {}
    for name, states in optim_state["state"].items():
        for key, value in states.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {name}.{key} is a {type(value).__name__}, expected a tensor")
            flat[f"{name}{SEP}{key}"] = value
    return flat, list(optim_state["param_groups"])


def unflatten_optimizer_state(flat: Mapping[str, torch.Tensor], groups: list) -> dict:
    state: dict = {}
    for flat_key, value in flat.items():
        name, key = flat_key.rsplit(SEP, 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": groups}
