"""``wp-train``: train the Action Expert or the VLM planner, plan GPU memory, export a checkpoint.

Examples::

    # one process (debug) / two GPUs with DDP / continue the same run after a crash
    wp-train --mode ae --config configs/train/waypoint_ae_libero.yaml grad_accum=2
    .venv/bin/torchrun --standalone --nnodes=1 --nproc_per_node=2 -m wp_training.train_cli \\
        --mode vlm --config configs/train/waypoint_vlm_libero.yaml
    .venv/bin/torchrun --standalone --nnodes=1 --nproc_per_node=2 -m wp_training.train_cli \\
        --mode vlm --config configs/train/waypoint_vlm_libero.yaml --resume

    # will it fit? per-GPU memory for DDP and FSDP, and a batch/accumulation recommendation
    wp-train plan-memory --config configs/train/waypoint_vlm_libero.yaml --gpu-mem 24GiB --gpus 4

    # inference export (LoRA merged) of any training checkpoint (its run's config is stored in it)
    wp-train export --checkpoint runs/ae_libero/checkpoints/step_00010000 --out runs/ae_libero/export_10000

    # ship the planner checkpoint with the most simulated successes on held-out seeds (see --help)
    wp-train select --runs runs/vlm --policy runs/base_policy.yaml --eval-config configs/eval/eval_lift.yaml \\
        --seed 1000 --episodes 20 --every 1000 --out runs/select

Overrides are ``key=value`` with dotted keys and YAML values (``optim.peak_lr=6e-5 lora.enabled=true``). Use the
venv's torchrun (a system torchrun runs another interpreter), and on GPU set
``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` for the VLM (fragmentation OOMs otherwise).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from wp_policy.config_io import ConfigError, parse_overrides
from wp_policy.cli_help import HelpFormatter
from wp_training.engine.train_config import load_train_config, train_config_from_checkpoint
from wp_training.engine.train_state import CheckpointError
from wp_training.tasks.interface import TaskUnavailable, get_task

SUBCOMMANDS = ("plan-memory", "export", "select")


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-train",
        description="Train a waypoint-VLA model (also: 'wp-train plan-memory --help', 'wp-train export --help', "
                    "'wp-train select --help').",
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--mode", required=True, help="ae | vlm (must match the config's mode), or module:attribute")
    parser.add_argument("--config", required=True, help="training YAML (configs/train/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run_dir")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    return parser


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-train export", formatter_class=HelpFormatter,
        description="Export a training checkpoint for inference (save_pretrained format, LoRA merged). The model is "
                    "built from the run's config stored in the checkpoint, or from --config.",
        epilog="example:\n  wp-train export --checkpoint runs/ae_libero/checkpoints/step_00010000 --out /tmp/ae_10k")
    parser.add_argument("--checkpoint", required=True, help="a checkpoints/step_XXXXXXXX directory")
    parser.add_argument("--out", required=True, help="output directory (save_pretrained format)")
    parser.add_argument("--config", default=None,
                        help="training YAML to build the model from instead of the config stored in the checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    return parser


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
    )


def _run_train(argv: list[str]) -> int:
    from wp_training.engine.trainer import train

    args = _train_parser().parse_args(argv)
    cfg = load_train_config(args.config, parse_overrides(args.overrides))
    if args.mode != cfg.mode:
        raise ConfigError(f"{args.config}: mode: config is for {cfg.mode!r} but --mode {args.mode!r} was given")
    result = train(cfg, get_task(cfg.mode), resume=args.resume, source=args.config)
    if result.export_dir is not None:
        print(f"done: step {result.step}, loss {result.last_loss}, inference model in {result.export_dir}")
    return 0


def _run_export(argv: list[str]) -> int:
    from wp_training.engine.trainer import export_checkpoint

    args = _export_parser().parse_args(argv)
    overrides = parse_overrides(args.overrides)
    if args.config is not None:
        cfg, source = load_train_config(args.config, overrides), args.config
    else:
        cfg, source = train_config_from_checkpoint(Path(args.checkpoint), overrides), args.checkpoint
    task = get_task(cfg.mode)
    model_cfg, _ = task.parse_configs(cfg.model, cfg.data, source)
    out = export_checkpoint(task, cfg, model_cfg, Path(args.checkpoint), Path(args.out))
    print(f"exported {args.checkpoint} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        if argv and argv[0] == "plan-memory":
            from wp_training.engine.memory_plan import main as plan_main

            return plan_main(argv[1:])
        if argv and argv[0] == "export":
            return _run_export(argv[1:])
        if argv and argv[0] == "select":
            from wp_training.engine.select_checkpoint import main as select_main

            return select_main(argv[1:])
        return _run_train(argv)
    except ConfigError as exc:
        print(f"wp-train: config error: {exc}", file=sys.stderr)
        return 2
    except (TaskUnavailable, CheckpointError) as exc:
        print(f"wp-train: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # selection: an episode failed in the simulator (EpisodeError names it)
        print(f"wp-train: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
