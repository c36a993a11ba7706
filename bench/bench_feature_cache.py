"""Speed-up of the frozen-vision feature cache: real AE / VLM training steps from images vs from cached features.

Writes (or reuses, ``--data-dir``) the LIBERO-like RLDS of ``bench_datasets.py`` (two 256x256 JPEG views per
step), extracts waypoints + stats, builds the cache with ``wp_training.engine.feature_cache.write_cache`` (the code
behind ``wp-data cache-features``) and then runs the real trainer (``configs/train/tiny_*_libero.yaml`` with
``freeze: [vision]``, DataLoader in-process) from images and from the cache. A step from images pays JPEG decode +
resize + the SigLIP forward; a cached step reads [V, N, D] features instead. ``--vision`` enlarges the tiny vision
tower (e.g. ``--vision width=256 depth=4 mlp_dim=512 num_heads=4 patch_size=14``) to see the effect of a heavier
tower. Example (a few minutes on 2 cores)::

    .venv/bin/python bench/bench_feature_cache.py --episodes 16 --steps 20
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_datasets import prepare

from wp_policy.config_io import load_config
from wp_policy.paths import config_dir
from wp_training.data.text_tokenizer import train_sentencepiece
from wp_training.engine.feature_cache import read_index, write_cache
from wp_training.engine.metrics_log import read_jsonl
from wp_training.engine.train_config import TrainConfig
from wp_training.engine.trainer import train
from wp_training.tasks.interface import get_task


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=16, help="LIBERO-like episodes to write (~150 steps each)")
    p.add_argument("--modes", nargs="+", choices=("ae", "vlm"), default=["ae", "vlm"])
    p.add_argument("--steps", type=int, default=20, help="training steps per run (the first --warmup not timed)")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vision", nargs="*", default=[], metavar="FIELD=INT", help="VisionSpec overrides of tiny")
    p.add_argument("--data-dir", default="", help="reuse/keep the written data here (default: a temp dir)")
    return p.parse_args(argv)


def run_config(mode: str, paths: dict, run_dir: Path, args, cache: str = "") -> TrainConfig:
    data = {"data.stats_path": str(paths["stats"]), "data.tokenizer_path": str(paths["tokenizer"])}
    if mode == "ae":
        data |= {"data.rlds_dir": str(paths["rlds"]), "data.waypoint_indices": str(paths["index"])}
    else:
        data |= {"data.rlds_dir": str(paths["filtered"]), "data.stride": 1}
    vision = {k: int(v) for k, v in (item.split("=", 1) for item in args.vision)}
    overrides = {"run_dir": str(run_dir), "num_steps": args.steps, "batch_size": args.batch, "freeze": ["vision"],
                 "log.every_steps": 1, "checkpoint.every_steps": args.steps, "optim.warmup_steps": 1,
                 "loader.num_workers": 0, "model.vision": vision, "model.vision_cache": cache, **data}
    return load_config(TrainConfig, config_dir() / f"train/tiny_{mode}_libero.yaml", overrides)


def step_ms(cfg: TrainConfig, warmup: int) -> float:
    steps, _ = read_jsonl(cfg.run_dir / "metrics.jsonl")
    return 1e3 / float(np.median([r["train/steps_per_sec"] for r in steps[warmup:]]))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        root = Path(args.data_dir or tmp)
        paths = prepare(root, args.episodes)
        paths["tokenizer"] = train_sentencepiece(Path(tmp) / "sp.model")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}; {args.episodes} episodes; batch {args.batch}; "
              f"vision {yaml.safe_dump(args.vision, default_flow_style=True).strip()}")
        rows = []
        for mode in args.modes:
            cache_dir = Path(tmp) / f"cache_{mode}"
            start = time.perf_counter()
            write_cache(run_config(mode, paths, Path(tmp) / "unused", args), cache_dir, show_progress=False)
            build_s = time.perf_counter() - start
            index = read_index(cache_dir)
            size = sum(f.stat().st_size for f in cache_dir.glob("*.safetensors")) / 2**20
            times = {}
            for label, cache in (("images", ""), ("cache", str(cache_dir))):
                cfg = run_config(mode, paths, Path(tmp) / f"run_{mode}_{label}", args, cache)
                train(cfg, get_task(mode))
                times[label] = step_ms(cfg, args.warmup)
            rows.append((mode, index["num_rows"], build_s, size, times["images"], times["cache"]))
        print(f"\n| mode | cached frames | cache build s | cache MiB | ms/step images | ms/step cache | speed-up |")
        print("|---|---|---|---|---|---|---|")
        for mode, n, build_s, size, t_img, t_cache in rows:
            print(f"| {mode} | {n} | {build_s:.1f} | {size:.1f} | {t_img:.0f} | {t_cache:.0f} | "
                  f"{t_img / t_cache:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
