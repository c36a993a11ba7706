"""The one simulation interface the evaluation loop and the ROS bridge drive (ROS-free).

An env holds a fixed list of tasks. ``reset(task, init_state=..., seed=...)`` puts the scene into a reproducible start
(a saved MuJoCo state, or a seeded random placement) and returns the first observation; ``step(action)`` applies one
7-D LIBERO action (one 20 Hz control tick) and reports whether the task is solved. Observations follow LIBERO's
conventions (see :mod:`wp_policy.sim.conventions`), whichever simulator produced them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from wp_policy.sim.conventions import ACTION_DIM, STATE_DIM


class SimUnavailableError(RuntimeError):
    """A simulator (package, assets, renderer) is missing; the message says what and how to get it."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of an env: what to ask for and how long an episode may run."""

    name: str  # unique within the env (file-name safe for robosuite; LIBERO's own task names)
    instruction: str  # the language instruction given to the policy
    max_steps: int  # policy steps per episode (LIBERO: the suite's budget; wait steps come on top)

    def __post_init__(self):
        if not self.name:
            raise ValueError("task name must not be empty")
        if not self.instruction:
            raise ValueError(f"task {self.name!r}: instruction must not be empty")
        if self.max_steps <= 0:
            raise ValueError(f"task {self.name!r}: max_steps must be positive, got {self.max_steps}")


@dataclass(frozen=True)
class SimObservation:
    """One observation in LIBERO conventions.

    images: view ("primary", "wrist") -> uint8 [H, W, 3], already rotated 180 degrees; empty when rendering is off.
    state: float32 [8] = eef pos (3) + eef axis-angle (3) + finger qpos (2).
    """

    images: Mapping[str, np.ndarray]
    state: np.ndarray
    instruction: str

    def __post_init__(self):
        if self.state.shape != (STATE_DIM,) or self.state.dtype != np.float32:
            raise ValueError(f"state must be float32 [{STATE_DIM}], got {self.state.dtype} {self.state.shape}")
        for view, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {view!r} must be uint8 [H, W, 3], got {img.dtype} {img.shape}")


@dataclass(frozen=True)
class StepResult:
    """Outcome of one control tick. ``done`` is the env's success signal (LIBERO ends an episode on it)."""

    obs: SimObservation
    reward: float
    done: bool
    info: dict = field(default_factory=dict)


def validate_action(action) -> np.ndarray:
    """A float64 [7] copy of ``action``; rejects wrong shapes and non-finite values (they would corrupt the sim)."""
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action contains NaN or inf: {arr.tolist()}")
    return arr.copy()


class SimEnv(abc.ABC):
    """Base class of every simulation env. Not thread-safe; one env per worker process."""

    @property
    @abc.abstractmethod
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The tasks this env can reset to, in a stable order."""

    @abc.abstractmethod
    def reset(self, task: str, *, init_state: np.ndarray | None = None, seed: int | None = None) -> SimObservation:
        """Start an episode of ``task``. ``init_state`` (a flat MuJoCo state [1 + nq + nv]) wins over ``seed``."""

    @abc.abstractmethod
    def step(self, action) -> StepResult:
        """Apply one 7-D action (see :func:`validate_action`) for one control tick."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release renderers and simulators."""

    def project_points(self, points, view: str = "primary") -> np.ndarray:
        """World points [N, 3] (the frame of the state's eef position) -> pixel (x, y) [N, 2] in ``view`` as
        observed (LIBERO convention), NaN rows for points behind the camera. Episode videos draw plans with it."""
        raise NotImplementedError(f"{type(self).__name__} has no camera model to project points with")

    def task(self, name: str) -> TaskSpec:
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown task {name!r}; this env has {[t.name for t in self.tasks]}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
