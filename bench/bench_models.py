"""Latency of the two model calls the runtime makes: ``plan`` (VLM, 7 waypoints, KV cache) and ``fill`` (AE
``sample_actions``, 10 Euler steps), per preset and batch size, on random weights.

Example (CPU, a few seconds)::

    .venv/bin/python bench/bench_models.py --preset tiny --batch 1 4

On a GPU: ``--preset pi05 --device cuda --batch 1 4`` (bf16, as the preset says). Planning is timed with
``min_duration=1`` so every sample decodes all M waypoints (random weights would otherwise stop at random).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from tqdm import tqdm

from wp_policy import batch as B
from wp_policy.models import PRESETS, WaypointActionExpert, WaypointVLM, ae_config, vlm_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=tuple(PRESETS))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes to time")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--views", type=int, default=2, help="camera views (LIBERO 2, R1 Lite 3)")
    p.add_argument("--prompt-len", type=int, default=48, help="prompt tokens (instruction + state bins)")
    p.add_argument("--proprio-dim", type=int, default=8, help="robot proprio dims per waypoint (LIBERO 8)")
    p.add_argument("--num-waypoints", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    return p.parse_args(argv)


def make_inputs(cfg, n: int, prompt_len: int, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    return {
        B.IMAGES: {k: (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device) for k in cfg.image_keys},
        B.IMAGE_MASKS: {k: torch.ones(n, dtype=torch.bool, device=device) for k in cfg.image_keys},
        B.TOKENS: torch.randint(3, 400, (n, prompt_len), generator=g).to(device),  # plain text ids in any vocab
        B.INPUT_MASK: torch.ones(n, prompt_len, dtype=torch.bool, device=device),
    }


def timed(fn, repeats: int, warmup: int, device: torch.device, label: str) -> np.ndarray:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in tqdm(range(repeats), desc=label, leave=False):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def bench(args) -> list[tuple[str, int, float, float]]:
    device = torch.device(args.device)
    keys = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")[: args.views]
    torch.manual_seed(0)
    with torch.device(device):
        vlm = WaypointVLM(vlm_config(args.preset, proprio_dim=args.proprio_dim, image_keys=keys)).eval()
        ae = WaypointActionExpert(ae_config(args.preset, image_keys=keys)).eval()
    rows = []
    for n in args.batch:
        obs = make_inputs(vlm.config, n, args.prompt_len, device)
        ar = torch.zeros_like(obs[B.TOKENS])
        ar[:, -3:] = 1  # "Action: " is causal, as WaypointTokenizer.encode_prompt marks it
        plan = lambda: vlm.plan(obs[B.IMAGES], obs[B.IMAGE_MASKS], obs[B.TOKENS], obs[B.INPUT_MASK], ar,  # noqa: E731
                                args.num_waypoints, min_duration=1)
        ms = timed(plan, args.repeats, args.warmup, device, f"plan B={n}")
        rows.append(("plan", n, float(np.median(ms)), float(np.percentile(ms, 90))))
        fill_batch = {**obs, B.START_PROPRIO: torch.zeros(n, ae.config.proprio_dim, device=device),
                      B.END_PROPRIO: torch.zeros(n, ae.config.proprio_dim, device=device),
                      B.DURATION: torch.full((n,), 16, dtype=torch.long, device=device)}
        gen = torch.Generator(device=device).manual_seed(0)
        fill = lambda: ae.sample_actions(fill_batch, gen, num_steps=10)  # noqa: E731
        ms = timed(fill, args.repeats, args.warmup, device, f"fill B={n}")
        rows.append(("fill", n, float(np.median(ms)), float(np.percentile(ms, 90))))
    return rows


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench(args)
    print(f"preset {args.preset} | {args.views} views | prompt {args.prompt_len} | M={args.num_waypoints} "
          f"P={args.proprio_dim} | {machine(args.device)}")
    print(f"{'call':<6}{'batch':>6}{'median ms':>12}{'p90 ms':>10}")
    for name, n, med, p90 in rows:
        print(f"{name:<6}{n:>6}{med:>12.1f}{p90:>10.1f}")


if __name__ == "__main__":
    main()
