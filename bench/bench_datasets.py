"""AE / VLM dataset throughput and time to first batch, streaming from a LIBERO-sized RLDS on disk.

Writes a LIBERO-layout RLDS (two 256x256 JPEG views per step, like ``*_no_noops``), extracts waypoints and stats,
then times ``DataLoader(WaypointAEDataset | WaypointVLMDataset)`` at the model resolution (224): time from
creating the loader to the first batch, and samples/s over the following batches. The early-yield shuffle buffer
(warm-up 32) is compared with waiting for a full 2000-sample buffer, what cost the original recipe ~6 minutes.
The tokenizer is a tiny SentencePiece model trained on the fly (PaliGemma's is not available offline).

Example (a few minutes on 2 cores, mostly writing the dataset)::

    .venv/bin/python bench/bench_datasets.py --episodes 120 --batches 30
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from wp_policy.robot_config import load_robot_config
from wp_policy.tokenizer import TextTokenizer, TokenLayout, WaypointTokenizer
from wp_policy.transforms import collate
from wp_training.data.extract import ExtractConfig, run_extraction
from wp_training.data.rlds_writer import write_rlds
from wp_training.data.stats import run_stats
from wp_training.data.text_tokenizer import train_sentencepiece
from wp_training.datasets.ae_dataset import AEDataConfig, WaypointAEDataset
from wp_training.datasets.sample_stream import StreamConfig, make_dataloader
from wp_training.datasets.vlm_dataset import VLMDataConfig, WaypointVLMDataset


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=120, help="LIBERO-layout episodes to write (~150 steps each)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=30, help="batches timed after the first")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--data-dir", default="", help="reuse/keep the written data here (default: a temp dir)")
    return p.parse_args(argv)


def camera_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """``uint8 [n, 256, 256, 3]``: a textured scene drifting across the view, so JPEG sizes look like camera frames."""
    yy, xx = np.mgrid[0:256, 0:256]
    scene = np.stack([xx, yy, (xx + yy) // 2], -1) + rng.normal(0, 12, (256, 256, 3))
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    shifts = np.cumsum(rng.integers(-2, 3, (n, 2)), axis=0)
    return np.stack([np.roll(scene, tuple(s), axis=(0, 1)) for s in shifts])


def libero_like_episodes(n_episodes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n_episodes):
        n = int(rng.integers(110, 190))
        knots = np.sort(rng.choice(np.arange(1, n - 1), 4, replace=False))
        t_knots = np.concatenate([[0], knots, [n - 1]])
        pts = np.cumsum(rng.normal(0, 0.05, (6, 6)), axis=0)
        pose = np.stack([np.interp(np.arange(n), t_knots, pts[:, d]) for d in range(6)], 1)
        pose += rng.normal(0, 5e-4, pose.shape)
        closed = (np.arange(n) >= knots[1]) & (np.arange(n) < knots[3])
        fingers = np.where(closed, 0.001, 0.039)[:, None] * np.array([1.0, -1.0])
        delta = np.diff(pose, axis=0, append=pose[-1:])
        action = np.concatenate([np.clip(delta[:, :3] / 0.05, -1, 1), np.clip(delta[:, 3:] / 0.5, -1, 1),
                                 np.where(closed, 1.0, -1.0)[:, None]], 1)
        yield {"observation": {"image": camera_frames(rng, n), "wrist_image": camera_frames(rng, n),
                               "state": np.concatenate([pose, fingers], 1)},
               "action": action, "language_instruction": "put the bowl on the plate"}


def prepare(root: Path, episodes: int) -> dict:
    robot = load_robot_config("libero")
    rlds = root / "libero_bench" / "1.0.0"
    if not (rlds / "dataset_info.json").is_file():
        start = time.perf_counter()
        rlds = write_rlds(root, libero_like_episodes(episodes), robot, "libero_bench")
        print(f"wrote {rlds} in {time.perf_counter() - start:.1f} s")
    out = root / "wp"
    if not (out / "waypoint_indices.json").is_file():
        run_extraction(ExtractConfig(source_dir=str(rlds), out_dir=str(out), keys=("state",), threshold=0.005),
                       show_progress=False)
    stats, _ = run_stats(rlds, robot, out / "norm_stats" / "dataset_statistics.json", show_progress=False)
    return {"rlds": rlds, "index": out / "waypoint_indices.json",
            "filtered": out / "waypoint_filtered_rlds__libero" / "1.0.0", "stats": stats}


def time_loader(dataset, batch_size: int, workers: int, batches: int) -> tuple[float, float]:
    start = time.perf_counter()
    it = iter(make_dataloader(dataset, batch_size, collate, num_workers=workers))
    next(it)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return first, batches * batch_size / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    robot = load_robot_config("libero")
    with tempfile.TemporaryDirectory(prefix="bench_datasets_") as tmp:
        root = Path(args.data_dir or tmp)
        paths = prepare(root, args.episodes)
        sp = train_sentencepiece(Path(tmp) / "sp.model")
        tok = WaypointTokenizer(TextTokenizer(sp), TokenLayout(1024), robot.proprio.dim, 7, 256)
        size = sum(f.stat().st_size for f in Path(paths["rlds"]).glob("*.tfrecord*"))
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}; dataset {args.episodes} episodes, {size / 2**20:.0f} MiB; "
              f"batch {args.batch_size}, image {args.image_size}")
        early, full = StreamConfig(shuffle_buffer=2000, shuffle_warmup=32), StreamConfig(shuffle_buffer=2000,
                                                                                           shuffle_warmup=2000)
        rows = []
        for workers in args.workers:
            for label, stream in (("early yield (32)", early), ("full buffer (2000)", full)):
                ae = WaypointAEDataset(AEDataConfig(str(paths["rlds"]), str(paths["index"]), str(paths["stats"]),
                                                    image_size=args.image_size, stream=stream), robot, tok)
                vlm = WaypointVLMDataset(VLMDataConfig(str(paths["filtered"]), str(paths["stats"]),
                                                       image_size=args.image_size, stream=stream), robot, tok)
                for name, ds in (("AE", ae), ("VLM", vlm)):
                    first, rate = time_loader(ds, args.batch_size, workers, args.batches)
                    rows.append((name, workers, label, first, rate))
        print(f"\n| {'dataset':<7} | {'workers':>7} | {'shuffle buffer':<18} | {'first batch s':>13} | "
              f"{'samples/s':>9} |")
        print("|" + "|".join("-" * (w + 2) for w in (7, 7, 18, 13, 9)) + "|")
        for name, workers, label, first, rate in rows:
            print(f"| {name:<7} | {workers:>7} | {label:<18} | {first:>13.2f} | {rate:>9.0f} |")


if __name__ == "__main__":
    main()
