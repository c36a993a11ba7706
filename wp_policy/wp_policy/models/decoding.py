"""Constrained greedy decoding of waypoint blocks ``(<wp> p_1..p_W <dur> d)`` for the VLM planner.

``proprio_dim`` here is the block's token count W: the robot's P, or fewer when the model's ``waypoint_dims`` leave
out coupled dims (one token per gripper), which the caller rebuilds (``WaypointPolicy.plan``).

Structure tokens are forced, never predicted; the argmax at a proprio position is taken over the 256 proprio-bin ids
only and at a duration position over the allowed duration ids only, so every decoded stream parses. A sample stops
after ``M`` blocks or after a block with d = 0 (stop); the batch stops when every sample has.

The decoder talks to the model through a ``feed(tokens [B, k]) -> log-probs [B, V]`` callable returning the
next-token distribution after appending ``tokens``; the VLM provides a KV-cached and an uncached feeder, which must
decode identically. Forced tokens ride along with the previous choice (``[p_P, <dur>]`` and ``[d, <wp>]`` are fed
together), so a block costs W + 1 model calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from wp_policy.tokenizer import ProprioTokenizer, TokenLayout

Feed = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PlanResult:
    """Decoded plans (CPU tensors). Entries at index >= ``num_valid`` are zero."""

    proprio: torch.Tensor  # float32 [B, M, W] normalised proprio of the waypoint dims (bin centres, q99 space)
    durations: torch.Tensor  # int64 [B, M] steps to reach each waypoint; 0 = stop
    num_valid: torch.Tensor  # int64 [B] decoded waypoints, a final d = 0 stop block included
    stopped: torch.Tensor  # bool [B] the plan ends with a d = 0 block
    log_probs: torch.Tensor  # float32 [B, M, W + 1] full-vocabulary log-prob of each chosen bin / duration token
    tokens: torch.Tensor  # int64 [B, M * (W + 3)] generated stream incl. forced tokens; pad_id after the end


def allowed_ids(vocab_size: int, ids: np.ndarray, device) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[torch.as_tensor(np.asarray(ids), device=device)] = True
    return mask


def constrained_decode(feed: Feed, layout: TokenLayout, batch_size: int, proprio_dim: int, num_waypoints: int,
                       device, min_duration: int = 0, max_duration: int | None = None,
                       pad_id: int = 0) -> PlanResult:
    """Greedy-decode up to ``num_waypoints`` blocks per sample through ``feed`` (see module docstring)."""
    max_duration = layout.max_duration if max_duration is None else max_duration
    if not 0 <= min_duration <= max_duration <= layout.max_duration:
        raise ValueError(f"need 0 <= min_duration ({min_duration}) <= max_duration ({max_duration}) <= "
                         f"{layout.max_duration}")
    if num_waypoints < 1:
        raise ValueError(f"num_waypoints must be >= 1, got {num_waypoints}")
    bin_ok = allowed_ids(layout.vocab_size, layout.proprio_token(np.arange(layout.num_bins)), device)
    dur_ok = allowed_ids(layout.vocab_size, layout.duration_token(np.arange(min_duration, max_duration + 1)), device)
    b = batch_size
    full = lambda tok: torch.full((b, 1), tok, dtype=torch.long, device=device)  # noqa: E731
    pending = full(layout.wp_token)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    count = torch.zeros(b, dtype=torch.long, device=device)
    chosen, logps = [], []
    for _ in range(num_waypoints):
        for j in range(proprio_dim + 1):
            if j == proprio_dim:
                pending = torch.cat([pending, full(layout.dur_token)], dim=1)
            logp = feed(pending)
            tok = logp.masked_fill(~(bin_ok if j < proprio_dim else dur_ok), float("-inf")).argmax(dim=-1)
            chosen.append(tok)
            logps.append(logp.gather(1, tok[:, None])[:, 0])
            pending = tok[:, None]
        count += (~done).long()
        done |= tok == int(layout.duration_token(0))
        if bool(done.all()):
            break
        pending = torch.cat([pending, full(layout.wp_token)], dim=1)
    return _assemble(layout, torch.stack(chosen, 1).cpu(), torch.stack(logps, 1).float().cpu(), count.cpu(),
                     done.cpu(), proprio_dim, num_waypoints, pad_id)


def _assemble(layout: TokenLayout, chosen: torch.Tensor, logps: torch.Tensor, count: torch.Tensor,
              stopped: torch.Tensor, proprio_dim: int, num_waypoints: int, pad_id: int) -> PlanResult:
    """``chosen``/``logps`` [B, K * (W + 1)] for the K <= M decoded blocks -> padded :class:`PlanResult`."""
    b, per = chosen.shape[0], proprio_dim + 1
    k = chosen.shape[1] // per
    blocks = chosen.reshape(b, k, per).numpy()
    valid = np.arange(k)[None, :] < count.numpy()[:, None]  # [B, K]
    proprio = np.zeros((b, num_waypoints, proprio_dim), np.float32)
    proprio[:, :k] = ProprioTokenizer(layout.num_bins).decode(layout.bin_of(blocks[..., :proprio_dim]))
    durations = np.zeros((b, num_waypoints), np.int64)
    durations[:, :k] = layout.duration_of(blocks[..., proprio_dim])
    proprio[:, :k][~valid] = 0.0
    durations[:, :k][~valid] = 0
    log_probs = torch.zeros(b, num_waypoints, per)
    log_probs[:, :k] = logps.reshape(b, k, per) * torch.as_tensor(valid)[..., None]
    stream = np.full((b, num_waypoints, proprio_dim + 3), pad_id, np.int64)
    wp, dur = np.full((b, k, 1), layout.wp_token), np.full((b, k, 1), layout.dur_token)
    head = np.concatenate([wp, blocks[..., :proprio_dim], dur, blocks[..., proprio_dim:]], axis=-1)
    stream[:, :k] = np.where(valid[..., None], head, pad_id)
    return PlanResult(torch.from_numpy(proprio), torch.from_numpy(durations), count, stopped, log_probs,
                      torch.from_numpy(stream.reshape(b, -1)))
