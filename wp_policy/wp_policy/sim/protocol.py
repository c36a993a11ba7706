"""The LIBERO evaluation protocol as constants and pure helpers (no simulator needed).

Sources: LIBERO's own evaluation scripts and openpi's LIBERO example (the protocol openpi/OpenVLA report numbers
with; written out in docs/simulation.md): 50 trials per task with the suite's fixed init states, seed 7, the first 10
steps send the wait action so objects settle, a per-suite step budget on top of those wait steps, success = the env's
``done``, one 10 FPS MP4 per episode named ``rollout_{task}_t{trial}_{success|failure}.mp4``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from wp_policy.sim.conventions import WAIT_ACTION

SUITE_MAX_STEPS: Mapping[str, int] = MappingProxyType(
    {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
)
LIBERO_SUITES: tuple[str, ...] = tuple(SUITE_MAX_STEPS)

NUM_WAIT_STEPS = 10  # steps of WAIT_ACTION before the policy acts (objects drop onto the table)
NUM_TRIALS_PER_TASK = 50
EVAL_SEED = 7
RENDER_SIZE = 256  # camera_heights / camera_widths of the env
VIDEO_FPS = 10

__all__ = [
    "EVAL_SEED",
    "LIBERO_SUITES",
    "NUM_TRIALS_PER_TASK",
    "NUM_WAIT_STEPS",
    "RENDER_SIZE",
    "SUITE_MAX_STEPS",
    "VIDEO_FPS",
    "WAIT_ACTION",
    "max_steps_for_suite",
    "video_filename",
]


def max_steps_for_suite(suite: str) -> int:
    """Policy step budget of a LIBERO suite (the wait steps come on top)."""
    try:
        return SUITE_MAX_STEPS[suite]
    except KeyError:
        raise ValueError(f"unknown LIBERO suite {suite!r}; known: {list(LIBERO_SUITES)}") from None


def video_filename(task: str, trial: int, success: bool) -> str:
    """``rollout_{task}_t{trial}_{success|failure}.mp4``; the task text becomes one safe path segment."""
    if trial < 0:
        raise ValueError(f"trial must be >= 0, got {trial}")
    segment = re.sub(r"[^A-Za-z0-9.-]+", "_", task.strip()).strip("_")
    if not segment:
        raise ValueError(f"task name {task!r} has no usable characters for a file name")
    return f"rollout_{segment}_t{trial}_{'success' if success else 'failure'}.mp4"
