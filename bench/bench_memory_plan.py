"""The memory planner against the original recipe's measured GPU memory (2 x 97.9 GB; docs/training.md).

For each measured point it prints the planner's per-GPU DDP prediction twice: under the original recipe's own
training setup (``seed-like``: bf16 weights/grads/AdamW as in openpi; the AE's SigLIP not checkpointed and eager
attention; the VLM through HF PaliGemma, whose loss projects every position, image tokens included, and keeps fp32
copies of the logits, ~28 B per logit) and under this project's specs as shipped (``configs/memory/pi05_*.yaml``: SDPA,
every tower checkpointed, logits on text positions only, 12 B per logit). Runs in a second, no GPU needed::

    .venv/bin/python bench/bench_memory_plan.py
"""

from __future__ import annotations

import argparse
import dataclasses

from wp_policy.paths import config_dir
from wp_training.engine.memory_plan import (
    GIB,
    MemorySpec,
    activation_model,
    budget_from_spec,
    gpu_usage,
    load_memory_spec,
)

# (model, per-GPU batch, per-GPU memory as the original recipe reports it: "GB", nvidia-smi style, taken as GiB)
SEED_ANCHORS = [
    ("ae", 32, "59 / 50"),
    ("ae", 48, "~73 / ~63"),
    ("ae", 64, "~88 / ~78"),
    ("vlm", 4, "~48"),
    ("vlm", 12, "~91-93"),
    ("vlm", 16, "~93-94 (1 GPU); OOM under DDP"),
]


def seed_like(spec: MemorySpec, model: str) -> MemorySpec:
    """The original recipe's setup expressed in spec knobs (see the module docstring)."""
    if model == "ae":
        stacks = tuple(
            dataclasses.replace(s, eager_attention=True, checkpointable=s.name != "siglip") for s in spec.stacks
        )
        return dataclasses.replace(spec, stacks=stacks)
    stacks = tuple(dataclasses.replace(s, logits_tokens_per_view=256) if s.logits_vocab else s for s in spec.stacks)
    return dataclasses.replace(spec, stacks=stacks, logits_bytes_per_element=28.0)


def predict(spec: MemorySpec, batch: int, views: int) -> float:
    budget = budget_from_spec(spec)  # the spec's own recipe: bf16 weights, grads and AdamW states
    acts = activation_model(spec, "bf16", views, checkpointing=True)
    return gpu_usage(budget, acts, batch, "ddp", 2, spec.overhead_gib).total_bytes / GIB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=2, help="camera views per sample (LIBERO: 2)")
    args = parser.parse_args(argv)
    specs = {m: load_memory_spec(config_dir() / "memory" / f"pi05_{m}.yaml") for m in ("ae", "vlm")}
    print(f"{'model':<6}{'batch/GPU':>10}{'seed measured (GB)':>32}{'planner seed-like (GiB)':>26}"
          f"{'planner shipped spec (GiB)':>29}")
    for model, batch, measured in SEED_ANCHORS:
        spec = specs[model]
        print(f"{model:<6}{batch:>10}{measured:>32}{predict(seed_like(spec, model), batch, args.views):>26.1f}"
              f"{predict(spec, batch, args.views):>29.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
