"""Batch builders and helpers shared by the model tests (tiny configs, random weights, nothing downloaded)."""

from __future__ import annotations

import numpy as np
import torch

from wp_policy import batch as B
from wp_policy.tokenizer import WaypointTokenizer

PROPRIO_DIM = 8  # LIBERO


def seeded(cls, config, seed: int = 0):
    torch.manual_seed(seed)
    return cls(config)


def images(config, n: int, seed: int = 0, masks=None) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    imgs = {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in config.image_keys}
    mask = {k: torch.ones(n, dtype=torch.bool) for k in config.image_keys}
    for k, m in (masks or {}).items():
        mask[k] = torch.as_tensor(m, dtype=torch.bool)
    return imgs, mask


def ae_batch(config, n: int = 3, seed: int = 0, prompt_len: int = 10, durations=None, real_dims: int = 7) -> dict:
    """A valid AE batch: random images/prompt/proprio, actions zero after each duration, real dims < real_dims."""
    g = torch.Generator().manual_seed(seed)
    imgs, mask = images(config, n, seed)
    dur = torch.as_tensor(durations if durations is not None else torch.randint(1, 33, (n,), generator=g))
    steps = torch.arange(config.horizon)[None, :] < dur[:, None]
    dims = torch.arange(config.action_dim) < real_dims
    input_mask = torch.ones(n, prompt_len, dtype=torch.bool)
    input_mask[0, prompt_len - 3:] = False  # one right-padded prompt
    actions = torch.rand(n, config.horizon, config.action_dim, generator=g) * 2 - 1
    actions = actions * steps[:, :, None] * dims[None, None, :]
    real = dims[: config.proprio_dim]
    proprio = lambda: (torch.rand(n, config.proprio_dim, generator=g) * 2 - 1) * real  # noqa: E731
    return {
        B.IMAGES: imgs, B.IMAGE_MASKS: mask,
        B.TOKENS: torch.randint(3, 400, (n, prompt_len), generator=g) * input_mask, B.INPUT_MASK: input_mask,
        B.START_PROPRIO: proprio(), B.END_PROPRIO: proprio(), B.DURATION: dur.long(),
        B.ACTIONS: actions, B.STEP_MASK: steps, B.DIM_MASK: dims[None].expand(n, -1).clone(),
    }


def without_actions(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in (B.ACTIONS, B.STEP_MASK, B.DIM_MASK)}


def vlm_batch(config, tokenizer: WaypointTokenizer, examples, seed: int = 0) -> dict:
    """``examples``: list of (instruction, state [P], waypoint proprio [K, P], durations [K])."""
    seqs = [tokenizer.encode_training(*ex) for ex in examples]
    imgs, mask = images(config, len(seqs), seed)
    stack = lambda f, dt: torch.as_tensor(np.stack([getattr(s, f) for s in seqs])).to(dt)  # noqa: E731
    return {B.IMAGES: imgs, B.IMAGE_MASKS: mask, B.TOKENS: stack("tokens", torch.long),
            B.INPUT_MASK: stack("input_mask", torch.bool), B.AR_MASK: stack("ar_mask", torch.int32),
            B.LOSS_MASK: stack("loss_mask", torch.bool)}


def random_example(rng: np.random.Generator, num_waypoints: int = 3, stop: bool = True):
    state = rng.uniform(-1, 1, PROPRIO_DIM)
    proprio = rng.uniform(-1, 1, (num_waypoints, PROPRIO_DIM))
    durations = rng.integers(1, 33, num_waypoints)
    if stop:
        durations[-1] = 0
    return "pick up the red cube", state, proprio, durations




def randomize_adarms(model, seed: int = 0) -> None:
    """Zero-initialised AdaRMSNorm gates make every expert layer the identity; give them weights so attention
    actually carries information between tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.expert.named_parameters():
            if ".dense." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while running ``fn`` (what activation checkpointing reduces)."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)
