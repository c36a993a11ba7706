"""Can the planner's vision tower see where the object is? Regress the first grasp position from the first frame.

A diagnostic for a planner that places its grasp waypoints near the middle of the object's placement range: it
trains the VLM config's own SigLIP tower (random init, the same width, depth, patch and image size) with a linear
head to regress the arm's x/y position at the demo's first gripper close (where the expert grasped, i.e. where the
object is) from the episode's first frame, on the demos' images preprocessed as in training (resize-with-pad to
the model size, then ``data.augment`` when asked), and reports the median error on held-out episodes. If this
direct regression gets well below the spread of the grasp positions, the tower and the images can localise the
object, and a planner that does not has a training-signal problem, not a vision problem. Each row is one setting
(views x augmentation), trained side by side from the same seed. Example (about 1.5 min per row on 2 cores)::

    .venv/bin/python bench/bench_localisation.py --rlds /tmp/wp_demo/waypoints/waypoint_filtered_rlds__libero/1.0.0
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import numpy as np
import torch
from transformers import SiglipVisionModel

from wp_policy.config_io import load_yaml
from wp_policy.image_proc import resize_with_pad
from wp_policy.models.backbone import siglip_hf_config
from wp_policy.models.config import VisionSpec
from wp_policy.paths import config_dir
from wp_training.data.rlds_reader import read_rlds
from wp_training.datasets.augment import AugmentConfig, augment_image


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rlds", required=True, help="an RLDS with 'image', 'wrist_image' and an 8-D 'state' (LIBERO "
                   "layout), e.g. the waypoint-filtered demos of scripts/train_demo_policy.sh")
    p.add_argument("--config", default=str(config_dir() / "train" / "demo_vlm_lift.yaml"),
                   help="training config whose model.vision is probed")
    p.add_argument("--gripper-dim", type=int, default=6, help="state dim of the gripper opening")
    p.add_argument("--closed-below", type=float, default=0.03, help="gripper opening that counts as closed")
    p.add_argument("--held-out", type=int, default=100, help="last episodes kept for the error")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def first_frames(path: str, gripper_dim: int, closed_below: float):
    """(primary [N, H, W, 3], wrist [N, H, W, 3], grasp xy [N, 2]) of the episodes that close the gripper."""
    primary, wrist, grasp = [], [], []
    for ep in read_rlds(path):
        obs = ep["observation"]
        closed = np.flatnonzero(obs["state"][:, gripper_dim] < closed_below)
        if closed.size:
            primary.append(obs["image"][0])
            wrist.append(obs["wrist_image"][0])
            grasp.append(obs["state"][closed[0], :2])
    if len(grasp) < 2:
        raise SystemExit(f"{path}: fewer than 2 episodes close the gripper (state[{gripper_dim}] < {closed_below})")
    return np.stack(primary), np.stack(wrist), np.asarray(grasp, np.float32)


def model_images(frames: np.ndarray, size: int, wrist: bool, augment: AugmentConfig | None,
                 rng: np.random.Generator) -> torch.Tensor:
    """Frames as the trainer feeds them: resize-with-pad, optional augmentation, [-1, 1], channels first."""
    out = []
    for rgb in frames:
        x = resize_with_pad(rgb, size, size).astype(np.float32) / np.float32(255.0)
        if augment is not None:
            x = augment_image(x, wrist, augment, rng)
        out.append(x * 2.0 - 1.0)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def probe(spec: VisionSpec, views: dict[str, tuple[np.ndarray, bool]], grasp: np.ndarray, held_out: int,
          augment: AugmentConfig | None, args) -> float:
    """Held-out median xy error (m) of the tower + linear head after ``args.steps`` AdamW steps on MSE."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tower = SiglipVisionModel(siglip_hf_config(spec, spec.width))
    tokens = (spec.image_size // spec.patch_size) ** 2
    head = torch.nn.Linear(len(views) * tokens * spec.width, 2)
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=1e-3, weight_decay=1e-4)
    y = torch.from_numpy(grasp)
    mean, std = y[:-held_out].mean(0), y[:-held_out].std(0)
    clean = {k: model_images(f, spec.image_size, w, None, rng) for k, (f, w) in views.items()}

    def predict(images: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = [tower(pixel_values=images[k]).last_hidden_state.flatten(1) for k in views]
        return head(torch.cat(feats, dim=1))

    train = len(grasp) - held_out
    for _ in range(args.steps):
        idx = rng.integers(0, train, args.batch)
        batch = ({k: model_images(f[idx], spec.image_size, w, augment, rng) for k, (f, w) in views.items()}
                 if augment is not None else {k: v[idx] for k, v in clean.items()})
        loss = torch.nn.functional.mse_loss(predict(batch), (y[idx] - mean) / std)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = predict({k: v[train:] for k, v in clean.items()}) * std + mean
    return float((pred - y[train:]).norm(dim=1).median())


def main(argv=None) -> None:
    args = parse_args(argv)
    spec = VisionSpec(**load_yaml(args.config)["model"]["vision"])
    primary, wrist, grasp = first_frames(args.rlds, args.gripper_dim, args.closed_below)
    held_out = min(args.held_out, len(grasp) // 2)
    centre = grasp[-held_out:] - grasp[:-held_out].mean(0)
    print(f"# {len(grasp)} episodes ({held_out} held out); tower {dataclasses.asdict(spec)}; {args.steps} steps of "
          f"batch {args.batch}; torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print(f"# predicting the training mean: median error {np.median(np.linalg.norm(centre, axis=1)) * 100:.2f} cm")
    openpi = AugmentConfig(enabled=True)
    colour = dataclasses.replace(openpi, crop_scale=1.0, rotate_deg=0.0)
    print("| views | augmentation | held-out median error (cm) | seconds |\n|---|---|---:|---:|")
    rows = [("primary + wrist", {"primary": (primary, False), "wrist": (wrist, True)}),
            ("primary", {"primary": (primary, False)}), ("wrist", {"wrist": (wrist, True)})]
    for label, views in rows:
        for aug_label, aug in (("none", None), ("colour only", colour), ("openpi (crop 95 %, rotate 5 deg, colour)",
                                                                          openpi)):
            start = time.perf_counter()
            err = probe(spec, views, grasp, held_out, aug, args)
            print(f"| {label} | {aug_label} | {err * 100:.2f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
