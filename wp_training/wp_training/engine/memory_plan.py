"""GPU memory planner: will a training config fit, with DDP or FSDP, and at what per-GPU batch?

Per GPU it adds up (the OpenVLA-OFT memory arithmetic reproduced in docs/training.md, memory planner section,
extended with activations):

* weights: every parameter at its storage dtype;
* gradients: trainable parameters only, at the parameter dtype;
* AdamW: two states per trainable parameter (fp32 in the note's recipe; torch keeps them at the parameter dtype,
  so fp32 master weights -> 2 x 4 B and ``precision: bf16`` -> 2 x 2 B);
* activations per sample, for each transformer stack: without checkpointing every layer keeps its norm inputs,
  Q/K/V, attention output and MLP intermediates; with checkpointing only each layer's input (the residual stream)
  is kept and one layer is recomputed at a time; plus LM logits (``logits_bytes_per_element`` covers the bf16
  logits, their fp32 log-softmax and the gradients);
* a fixed overhead (CUDA context, cuBLAS workspace, allocator slack).

DDP keeps all static memory on every GPU; FSDP (full shard) divides it by the GPU count and adds the gather buffers
of the largest shard unit (two units' weights in flight + one unit's unsharded gradients).

Parameter counts come from the real model when its code is installed (built on the meta device through the
trainer's own setup, so LoRA, freezing and dtypes are exactly what training would do), otherwise from the
component list of a spec YAML (``configs/memory/*.yaml``). LoRA parameter counts for specs follow from the rank and
the adapted Linear shapes: ``rank x (in + out)`` per module.

Example::

    wp-train plan-memory --config configs/train/waypoint_vlm_libero.yaml --gpu-mem 24GiB --gpus 4
    wp-train plan-memory --spec configs/memory/openvla_oft_7b_lora.yaml --gpu-mem 23.52GiB --gpus 4
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from wp_policy.cli_help import HelpFormatter
from wp_policy.config_io import ConfigError, load_config, parse_overrides
from wp_training.engine.distributed import fsdp_unit_modules
from wp_training.engine.train_config import TrainConfig, load_train_config

log = logging.getLogger(__name__)

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
Dtype = Literal["float32", "bfloat16", "float16"]
# precision -> (compute/activation bytes, residual-stream bytes) for the activation estimate
ACT_BYTES = {"fp32": (4, 4), "bf16_mixed": (2, 4), "bf16": (2, 2)}


@dataclass(frozen=True)
class LinearShape:
    """``count`` Linear modules of this shape adapted by LoRA."""

    in_features: int
    out_features: int
    count: int = 1


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    params: int
    trainable_params: int | None = None  # None: all of it trains (unless its group is frozen)
    group: str = ""  # matched against a training config's freeze / lora.also_train entries
    lora_linears: tuple[LinearShape, ...] = ()  # what LoRA adapts in this component (when enabled)
    lora_trains_fully: bool = False  # new layers (heads) train in full beside LoRA, like a task's lora_also_train

    def __post_init__(self):
        if self.params < 0:
            raise ValueError(f"component {self.name}: params must be >= 0, got {self.params}")
        if self.trainable_params is not None and not 0 <= self.trainable_params <= self.params:
            raise ValueError(f"component {self.name}: trainable_params ({self.trainable_params}) must be in "
                             f"[0, params={self.params}]")


@dataclass(frozen=True)
class StackSpec:
    """A transformer stack for the activation estimate; tokens per sample = fixed + per_view x image views."""

    name: str
    layers: int
    hidden: int
    attn_dim: int  # heads x head_dim
    kv_dim: int  # kv heads x head_dim
    mlp: int
    heads: int = 1
    gated_mlp: bool = True  # GeGLU/SwiGLU (gate, up, act, product) vs fc1 + act
    tokens_per_view: int = 0
    fixed_tokens: int = 0
    logits_vocab: int = 0  # > 0: an LM head over the positions below
    logits_tokens: int = 0
    logits_tokens_per_view: int = 0  # e.g. HF PaliGemma computes logits at image positions too
    checkpointable: bool = True  # False: the model never checkpoints this stack
    eager_attention: bool = False  # True: attention scores + probabilities are stored (no fused SDPA)

    def tokens(self, views: int) -> int:
        return self.fixed_tokens + self.tokens_per_view * views

    def layer_params(self) -> int:
        attn = self.hidden * (self.attn_dim + 2 * self.kv_dim) + self.attn_dim * self.hidden
        return attn + (3 if self.gated_mlp else 2) * self.hidden * self.mlp


@dataclass(frozen=True)
class MemorySpec:
    """A model described by its parts (for planning without its code) and by its stacks (for activations).

    The dtype fields describe the spec's own recipe; planning a TrainConfig uses the config's precision instead.
    """

    name: str
    components: tuple[ComponentSpec, ...]
    stacks: tuple[StackSpec, ...] = ()
    weights_dtype: Dtype = "bfloat16"
    grad_dtype: Dtype = "bfloat16"
    optimizer_state_dtype: Dtype = "float32"
    optimizer_states: int = 2
    largest_unit_params: int = 0  # biggest FSDP unit (0: the largest stack layer)
    logits_bytes_per_element: float = 12.0
    overhead_gib: float = 1.0
    image_views: int = 0  # views per sample when the spec is planned on its own

    def __post_init__(self):
        if not self.components:
            raise ValueError("components: at least one component is required")


@dataclass(frozen=True)
class ParamBudget:
    """Static memory inputs, in bytes, plus where the counts came from."""

    total_params: int
    trainable_params: int
    weight_bytes: float
    grad_bytes: float
    optimizer_bytes: float
    largest_unit_bytes: float
    source: str

    @property
    def static_bytes(self) -> float:
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes


def lora_params(linears: tuple[LinearShape, ...], rank: int) -> int:
    """LoRA adds A [rank, in] and B [out, rank] per adapted Linear (no bias)."""
    return sum(rank * (s.in_features + s.out_features) * s.count for s in linears)


def load_memory_spec(path: str | Path) -> MemorySpec:
    return load_config(MemorySpec, path)


# ---------------------------------------------------------------------------------------------------- budgets


def _component_trainable(comp: ComponentSpec, cfg: TrainConfig) -> int:
    """Trainable parameters of a component under a training config (mirrors model_setup's rules)."""
    if comp.group and comp.group in cfg.freeze:
        return 0
    if not cfg.lora.enabled:
        return comp.params
    full = comp.group in cfg.lora.also_train if cfg.lora.also_train else comp.lora_trains_fully
    return comp.params if full else lora_params(comp.lora_linears, cfg.lora.rank)


def budget_from_spec(spec: MemorySpec, cfg: TrainConfig | None = None) -> ParamBudget:
    """Counts from the spec's components. Alone, the spec's recipe (its trainable counts and dtypes); with a
    training config, that config's freezing, LoRA and precision."""
    if cfg is None:
        total = sum(c.params for c in spec.components)
        trainable = sum(c.params if c.trainable_params is None else c.trainable_params for c in spec.components)
        w = w_frozen = DTYPE_BYTES[spec.weights_dtype]
        g, o = DTYPE_BYTES[spec.grad_dtype], DTYPE_BYTES[spec.optimizer_state_dtype] * spec.optimizer_states
    else:
        rank = cfg.lora.rank if cfg.lora.enabled else 0
        total = sum(c.params + lora_params(c.lora_linears, rank) for c in spec.components)
        trainable = sum(_component_trainable(c, cfg) for c in spec.components)
        w = 2 if cfg.precision == "bf16" else 4
        w_frozen = 2 if cfg.precision == "bf16" else DTYPE_BYTES[cfg.frozen_dtype]
        g, o = w, 2 * w  # grads and both AdamW states take the parameter dtype
    unit = spec.largest_unit_params or max((s.layer_params() for s in spec.stacks), default=0)
    return ParamBudget(
        total_params=total,
        trainable_params=trainable,
        weight_bytes=trainable * w + (total - trainable) * w_frozen,
        grad_bytes=trainable * g,
        optimizer_bytes=trainable * o,
        largest_unit_bytes=unit * w,
        source=f"spec {spec.name}",
    )


def _largest_unit_bytes(model: nn.Module, unit_classes: tuple[str, ...]) -> float:
    """Largest FSDP unit as the trainer shards it (distributed.fsdp_unit_modules, innermost first; each unit owns
    the parameters not already owned by a unit inside it; the root owns the rest)."""
    owned: set[int] = set()
    sizes = [0.0]
    for unit in fsdp_unit_modules(model, unit_classes):
        own = [p for p in unit.parameters() if id(p) not in owned]
        owned.update(id(p) for p in own)
        sizes.append(sum(p.numel() * p.element_size() for p in own))
    root = sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in owned)
    return max(max(sizes), root)


def budget_from_model(model: nn.Module, source: str, fsdp_units: tuple[str, ...] = ()) -> ParamBudget:
    """Exact counts and dtypes from a (meta-device) model after the trainer's setup."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return ParamBudget(
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in trainable),
        weight_bytes=sum(p.numel() * p.element_size() for p in params),
        grad_bytes=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_bytes=sum(2 * p.numel() * p.element_size() for p in trainable),  # AdamW: exp_avg, exp_avg_sq
        largest_unit_bytes=_largest_unit_bytes(model, fsdp_units),
        source=source,
    )


def budget_for_config(cfg: TrainConfig, spec: MemorySpec | None, source: str) -> ParamBudget:
    """From the real model when the mode's code is installed (meta device, no memory), else from the spec."""
    from wp_training.engine.model_setup import build_training_model
    from wp_training.tasks.interface import TaskUnavailable, get_task

    try:
        task = get_task(cfg.mode)
    except TaskUnavailable as exc:
        if spec is None:
            raise ConfigError(f"memory.spec: mode {cfg.mode!r} is not installed ({exc}) and no spec is configured")
        log.warning("%s; counting parameters from %s instead", exc, spec.name)
        return budget_from_spec(spec, cfg)
    model_cfg, _ = task.parse_configs(cfg.model, cfg.data, source)
    with torch.device("meta"):
        model, _ = build_training_model(task, cfg, model_cfg, load_pretrained=False)
    return budget_from_model(model, f"model of mode {cfg.mode!r} (built on the meta device)", task.fsdp_units)


# ----------------------------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class ActivationModel:
    stacks: tuple[StackSpec, ...]
    image_views: int
    act_bytes: int
    residual_bytes: int
    logits_bytes_per_element: float
    checkpointing: bool

    def layer_bytes(self, stack: StackSpec) -> float:
        """One layer's saved activations for one sample (no checkpointing)."""
        tokens = stack.tokens(self.image_views)
        mlp = (4 if stack.gated_mlp else 2) * stack.mlp
        per_token = 2 * stack.hidden * self.residual_bytes + self.act_bytes * (
            2 * stack.hidden + 2 * stack.attn_dim + 2 * stack.kv_dim + mlp
        )
        if stack.eager_attention:
            per_token += 2 * stack.heads * tokens * self.act_bytes
        return tokens * per_token

    def logits_bytes(self, stack: StackSpec) -> float:
        positions = stack.logits_tokens + stack.logits_tokens_per_view * self.image_views
        return positions * stack.logits_vocab * self.logits_bytes_per_element

    def per_sample_bytes(self) -> float:
        stored, recompute = 0.0, 0.0
        for stack in self.stacks:
            layer = self.layer_bytes(stack)
            if self.checkpointing and stack.checkpointable:
                stored += stack.layers * stack.tokens(self.image_views) * stack.hidden * self.residual_bytes
                recompute = max(recompute, layer)
            else:
                stored += stack.layers * layer
            stored += self.logits_bytes(stack)
        return stored + recompute


def activation_model(spec: MemorySpec | None, precision: str, views: int, checkpointing: bool) -> ActivationModel:
    act, residual = ACT_BYTES[precision]
    stacks = spec.stacks if spec is not None else ()
    bpe = spec.logits_bytes_per_element if spec is not None else 12.0
    return ActivationModel(stacks, views, act, residual, bpe, checkpointing)


# ----------------------------------------------------------------------------------------------- per-GPU totals


@dataclass(frozen=True)
class GpuUsage:
    strategy: str
    gpus: int
    static_bytes: float  # weights + grads + optimizer on this GPU
    gather_bytes: float  # FSDP all-gather / reduce-scatter buffers
    activation_bytes: float
    overhead_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.static_bytes + self.gather_bytes + self.activation_bytes + self.overhead_bytes


def gpu_usage(budget: ParamBudget, acts: ActivationModel, batch: int, strategy: str, gpus: int,
              overhead_gib: float) -> GpuUsage:
    if strategy == "fsdp":
        static, gather = budget.static_bytes / gpus, 3 * budget.largest_unit_bytes
    else:
        static, gather = budget.static_bytes, 0.0
    return GpuUsage(strategy, gpus, static, gather, batch * acts.per_sample_bytes(), overhead_gib * GIB)


def max_batch(budget: ParamBudget, acts: ActivationModel, strategy: str, gpus: int, usable_bytes: float,
              overhead_gib: float, limit: int = 4096) -> int:
    """Largest per-GPU batch whose total fits ``usable_bytes`` (0: not even one sample; ``limit`` caps it)."""
    fixed = gpu_usage(budget, acts, 0, strategy, gpus, overhead_gib).total_bytes
    per_sample = acts.per_sample_bytes()
    if fixed > usable_bytes:
        return 0
    if per_sample <= 0:
        return limit
    return min(limit, int((usable_bytes - fixed) // per_sample))


@dataclass(frozen=True)
class Recommendation:
    strategy: str
    batch_size: int
    grad_accum: int
    global_batch: int
    total_bytes: float


def recommend(budget: ParamBudget, acts: ActivationModel, strategy: str, gpus: int, usable_bytes: float,
              overhead_gib: float, target_global: int) -> Recommendation | None:
    """Fewest accumulation steps reaching ``target_global`` with a per-GPU batch that fits (None: nothing fits)."""
    fit = max_batch(budget, acts, strategy, gpus, usable_bytes, overhead_gib)
    if fit == 0:
        return None
    per_gpu = math.ceil(target_global / gpus)
    accum = math.ceil(per_gpu / fit)
    batch = math.ceil(per_gpu / accum)
    usage = gpu_usage(budget, acts, batch, strategy, gpus, overhead_gib)
    return Recommendation(strategy, batch, accum, batch * gpus * accum, usage.total_bytes)


# ---------------------------------------------------------------------------------------------------- the CLI

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(tib|gib|mib|tb|gb|mb)\s*$", re.IGNORECASE)
_UNITS = {"tib": 2**40, "gib": 2**30, "mib": 2**20, "tb": 1e12, "gb": 1e9, "mb": 1e6}


def parse_size(text: str) -> float:
    """'24GiB' / '80GB' / '512MiB' -> bytes (a unit is required: GB and GiB differ by 7%)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"--gpu-mem: {text!r} is not a size like 24GiB, 80GB or 512MiB")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def _cell(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value / GIB:.2f}"


def _row(label: str, ddp: float | str, fsdp: float | str) -> str:
    return f"  {label:<36}{_cell(ddp):>9}{_cell(fsdp):>12}"


def _recommendation_line(budget, acts, strategy, gpus, usable, overhead_gib, target_global) -> str:
    rec = recommend(budget, acts, strategy, gpus, usable, overhead_gib, target_global)
    if rec is None:
        text = "does not fit"
    elif acts.per_sample_bytes() == 0:
        text = "static memory fits; activations not modelled (the spec has no stacks), so no batch advice"
    else:
        text = (f"batch_size={rec.batch_size} x {gpus} GPUs x grad_accum={rec.grad_accum} = global "
                f"{rec.global_batch} ({rec.total_bytes / GIB:.1f} GiB per GPU)")
    return f"  recommended for global batch {target_global} with {strategy.upper()}: {text}"


def format_plan(title: str, budget: ParamBudget, acts: ActivationModel, batch: int, gpus: int, gpu_bytes: float,
                headroom: float, overhead_gib: float, target_global: int) -> str:
    """The per-GPU table for DDP and FSDP at ``batch``, the largest batch that fits, and a recommendation."""
    usable = gpu_bytes * (1 - headroom)
    ddp, fsdp = (gpu_usage(budget, acts, batch, s, gpus, overhead_gib) for s in ("ddp", "fsdp"))
    fits = [max_batch(budget, acts, s, gpus, usable, overhead_gib) for s in ("ddp", "fsdp")]
    if acts.per_sample_bytes() == 0:
        fits = ["n/a" if f else "0" for f in fits]
    lines = [
        title,
        f"  parameters: {budget.total_params:,} total, {budget.trainable_params:,} trainable ({budget.source})",
        f"  static: weights {budget.weight_bytes / GIB:.2f} + grads {budget.grad_bytes / GIB:.2f} + optimizer "
        f"{budget.optimizer_bytes / GIB:.2f} = {budget.static_bytes / GIB:.2f} GiB",
        f"  activations: {acts.per_sample_bytes() / GIB:.3f} GiB per sample (gradient checkpointing "
        f"{'on' if acts.checkpointing else 'off'}, {acts.image_views} image views)",
        _row("GiB per GPU", "DDP", f"FSDP x{gpus}"),
        _row("weights + grads + optimizer", ddp.static_bytes, fsdp.static_bytes),
        _row("FSDP gather buffers", ddp.gather_bytes, fsdp.gather_bytes),
        _row(f"activations (batch {batch})", ddp.activation_bytes, fsdp.activation_bytes),
        _row("overhead", ddp.overhead_bytes, fsdp.overhead_bytes),
        _row("total", ddp.total_bytes, fsdp.total_bytes),
        _row(f"largest batch in {usable / GIB:.1f} GiB", str(fits[0]), str(fits[1])),
    ]
    lines += [_recommendation_line(budget, acts, s, gpus, usable, overhead_gib, target_global) for s in ("ddp", "fsdp")]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-train plan-memory", description=__doc__.split("\n\n")[0],
                                     epilog="Example: " + __doc__.split("Example::", 1)[1].strip(),
                                     formatter_class=HelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="training YAML (counts from the model when installed, else memory.spec)")
    source.add_argument("--spec", help="a memory spec YAML (configs/memory/*.yaml) on its own")
    parser.add_argument("--gpu-mem", required=True, help="memory per GPU with a unit: 24GiB, 80GB")
    parser.add_argument("--gpus", type=int, default=1, help="number of GPUs (default 1)")
    parser.add_argument("--batch", type=int, help="per-GPU batch for the table (default: the config's batch_size)")
    parser.add_argument("--global-batch", type=int, help="target global batch (default: min_global_batch)")
    parser.add_argument("--views", type=int, help="image views per sample (default: memory.image_views)")
    parser.add_argument("--checkpointing", choices=("on", "off"), help="default: the config's setting")
    parser.add_argument("--headroom", type=float, default=0.10, help="fraction of GPU memory kept free (0.10)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="training-config overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.gpus < 1 or not 0 <= args.headroom < 1:
        raise ConfigError(f"--gpus must be >= 1 and --headroom in [0, 1), got {args.gpus} / {args.headroom}")
    gpu_bytes = parse_size(args.gpu_mem)
    if args.config:
        cfg = load_train_config(args.config, parse_overrides(args.overrides))
        spec_path = cfg.memory.spec_path()
        spec = load_memory_spec(spec_path) if spec_path is not None else None
        budget = budget_for_config(cfg, spec, args.config)
        ckpt = cfg.gradient_checkpointing if args.checkpointing is None else args.checkpointing == "on"
        acts = activation_model(spec, cfg.precision, args.views if args.views is not None else cfg.memory.image_views,
                                ckpt)
        batch, target, title = args.batch or cfg.batch_size, args.global_batch or cfg.min_global_batch, args.config
    else:
        spec = load_memory_spec(args.spec)
        budget = budget_from_spec(spec)
        views = args.views if args.views is not None else spec.image_views
        acts = activation_model(spec, "bf16", views, args.checkpointing == "on")
        batch, target, title = args.batch or 1, args.global_batch or 16, args.spec
    overhead = spec.overhead_gib if spec is not None else 1.0
    print(format_plan(f"memory plan: {title}", budget, acts, batch, args.gpus, gpu_bytes, args.headroom, overhead,
                      target))
    return 0
