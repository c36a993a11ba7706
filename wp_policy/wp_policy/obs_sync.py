"""Observation synchronisation: camera frames + joint feedback -> one observation set with ONE stamp.

Two clocks are involved and kept apart on purpose:
- **header stamps** (``stamp_ns``: integer nanoseconds, so a stamp survives the round trip exactly) align inputs with
  each other: every view of a set lies within ``tolerance`` of the set stamp, and the proprio is the feedback sample
  nearest to it (also within ``tolerance``). A set waits until every feedback topic has a sample at or after the set
  stamp, so "nearest" never depends on which callback ran first (sets are reproducible in lock-step replay);
- **receive times** (``received``, the node clock at arrival) decide liveness: an input not heard from for
  ``timeout`` seconds is stale and no set is produced. Receive times keep working when a bag is replayed with its
  original (past) header stamps.

The set stamp is the newest view stamp of the set. A set is produced once per camera frame group: only when every
view has a frame not used by the previous set, so three unsynchronised 15 Hz cameras give one 15 Hz stream.

A stamp that jumps back by more than ``BACKWARD_JUMP_S`` (a bag replayed again, a simulation reset) starts a new
timeline: buffered frames and samples are dropped and sets resume once every input has arrived again.

The receiving side (planner, filler) rebuilds a set from the per-topic messages with :class:`StampedSetCollector`.

Shapes: images ``uint8 [H, W, 3]`` (already at model resolution); proprio ``float64 [proprio_dim]`` physical units.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wp_policy.robot_config import FeedbackConfig, RobotConfig

BACKWARD_JUMP_S = 1.0  # an input whose stamps go back by more than this restarts synchronisation
DEFAULT_SYNC_TOLERANCE = 0.05  # s; the aggregator's default ``sync_tolerance`` (also wp-data from-bags')
DEFAULT_INPUT_TIMEOUT = 0.5  # s; the aggregator's default ``input_timeout`` (also wp-data from-bags')
PROPRIO_PART = "proprio"  # part name of the proprio vector in a StampedSetCollector


class InvalidInput(ValueError):
    """A feedback or image input is malformed (wrong length, non-finite, unknown source); it is dropped."""


def joint_state_position(msg) -> np.ndarray:
    """``msg.position`` of a JointState (rclpy or rosbags message) as float64 [n]; names (when given) must match it
    in length. Finiteness is the caller's (:meth:`ObsSynchronizer.add_feedback` checks it)."""
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    if len(msg.name) and len(msg.name) != pos.size:
        raise InvalidInput(f"JointState has {len(msg.name)} names but {pos.size} positions")
    return pos


def pick_joints(position: np.ndarray, names: Sequence[str], joint_names: Sequence[str], indices: Sequence[int],
                where: str) -> np.ndarray:
    """The values of ``joint_names`` in a message (``position`` float64 [n] with its ``names``), by name; by position
    (``indices``) when the message carries no names or the config gives none. InvalidInput names a missing joint."""
    if len(names) and len(joint_names):
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in joint_names if n not in index]
        if missing:
            raise InvalidInput(f"{where}: no joint(s) {missing} in the message (it has {list(names)}); fix the "
                               "robot config's joint_names")
        return position[[index[n] for n in joint_names]]
    need = max(indices) + 1
    if position.size < need:
        raise InvalidInput(f"{where}: {position.size} positions, need at least {need}")
    return position[list(indices)]


def feedback_values(fb: FeedbackConfig, position: Sequence[float], names: Sequence[str] = ()) -> np.ndarray:
    """The proprio values (``[len(fb.proprio_dims)]``, in ``proprio_dims`` order) a feedback message carries;
    InvalidInput for a missing joint, too few positions or a non-finite value."""
    values = pick_joints(np.asarray(position, dtype=np.float64).reshape(-1), names, fb.joint_names,
                         fb.source_indices, fb.topic)
    if not np.all(np.isfinite(values)):
        raise InvalidInput(f"{fb.topic}: non-finite position {values.tolist()}")
    return values


def feedback_layout(fb: FeedbackConfig, proprio: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Inverse of :func:`feedback_values` (what a driver publishes): names and positions with each joint at its
    ``source_indices`` entry (unused slots: name "", value 0), from the full proprio ``[proprio_dim]``."""
    size = max(fb.source_indices) + 1
    names, position = [""] * size, np.zeros(size)
    for dim, name, src in zip(fb.proprio_dims, fb.joint_names, fb.source_indices):
        names[src], position[src] = name, proprio[dim]
    return names, position


@dataclass(frozen=True)
class ObsSet:
    """One synchronised observation: every view and the proprio belong to ``stamp_ns``."""

    stamp_ns: int
    images: Mapping[str, np.ndarray]  # view -> uint8 [H, W, 3]
    proprio: np.ndarray  # float64 [proprio_dim], physical units
    received: float = 0.0  # receive time (node clock, s) of the newest frame, for latency; 0 in the direct sim loop

    @property
    def stamp(self) -> float:
        return self.stamp_ns * 1e-9


@dataclass(frozen=True)
class SyncStatus:
    """Why (or whether) sets are flowing. ``ages`` are seconds since each input was last received."""

    ok: bool
    missing: tuple[str, ...] = ()  # never received
    stale: tuple[str, ...] = ()  # not received within timeout
    ages: Mapping[str, float] = field(default_factory=dict)

    def message(self) -> str:
        if self.ok:
            return "synchronised"
        parts = []
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if self.stale:
            parts.append("stale: " + ", ".join(f"{n} ({self.ages[n]:.2f} s)" for n in self.stale))
        return "; ".join(parts) or "waiting for synchronised inputs"


@dataclass
class _Frame:
    stamp_ns: int
    received: float
    image: np.ndarray
    seq: int


class ObsSynchronizer:
    """Latest camera frames + buffered feedback samples -> :class:`ObsSet` (see module docstring)."""

    def __init__(
        self,
        views: Sequence[str],
        feedback: Sequence[FeedbackConfig],
        proprio_dim: int,
        tolerance: float,
        timeout: float,
        history: int = 64,
    ):
        if not views:
            raise ValueError("at least one camera view is required")
        covered = sorted(d for fb in feedback for d in fb.proprio_dims)
        if covered != list(range(proprio_dim)):
            raise ValueError(f"feedback topics must fill every proprio dim 0..{proprio_dim - 1} once, got {covered}")
        self.views = tuple(views)
        self.feedback = {fb.topic: fb for fb in feedback}
        self.proprio_dim = proprio_dim
        self.configure(tolerance, timeout)
        self._frames: dict[str, _Frame] = {}
        self._samples: dict[str, deque[tuple[int, np.ndarray]]] = {t: deque(maxlen=history) for t in self.feedback}
        self._fb_received: dict[str, float] = {}
        self._used_seq: dict[str, int] = {}
        self._seq = 0
        self.last_set_stamp_ns = -1
        self.time_jumps = 0  # backward stamp jumps (bag restarted, simulation reset) that cleared the buffers

    @classmethod
    def from_robot(cls, robot: RobotConfig, tolerance: float, timeout: float) -> ObsSynchronizer:
        return cls(robot.camera_views, robot.ros.feedback, robot.proprio.dim, tolerance, timeout)

    def configure(self, tolerance: float, timeout: float) -> None:
        """Set the stamp tolerance and the liveness timeout (seconds); both must be positive."""
        if not (tolerance > 0 and timeout > 0):
            raise ValueError(f"tolerance ({tolerance}) and timeout ({timeout}) must be positive")
        self.tolerance = float(tolerance)
        self.timeout = float(timeout)
        self._tol_ns = int(round(tolerance * 1e9))

    def add_image(self, view: str, stamp_ns: int, image: np.ndarray, received: float) -> None:
        if view not in self.views:
            raise InvalidInput(f"unknown view {view!r}; expected one of {list(self.views)}")
        frame = self._frames.get(view)
        self._check_jump(int(stamp_ns), frame.stamp_ns if frame else None)
        self._seq += 1
        self._frames[view] = _Frame(int(stamp_ns), received, image, self._seq)

    def add_feedback(self, topic: str, stamp_ns: int, position: Sequence[float], received: float,
                     names: Sequence[str] = ()) -> None:
        """Store the proprio dims one feedback topic carries (by joint name when ``names`` are given, see
        :func:`feedback_values`); raises InvalidInput for a malformed sample."""
        fb = self.feedback.get(topic)
        if fb is None:
            raise InvalidInput(f"unknown feedback topic {topic!r}; expected one of {list(self.feedback)}")
        values = feedback_values(fb, position, names)
        samples = self._samples[topic]
        self._check_jump(int(stamp_ns), samples[-1][0] if samples else None)
        samples.append((int(stamp_ns), values))
        self._fb_received[topic] = received

    def _check_jump(self, stamp_ns: int, newest_ns: int | None) -> None:
        """Stamps more than BACKWARD_JUMP_S older than an input's newest: a new timeline; forget the old one."""
        if newest_ns is None or stamp_ns >= newest_ns - int(BACKWARD_JUMP_S * 1e9):
            return
        self.time_jumps += 1
        self._frames.clear()
        self._used_seq.clear()
        for samples in self._samples.values():
            samples.clear()
        self.last_set_stamp_ns = -1

    def status(self, now: float) -> SyncStatus:
        received = {v: f.received for v, f in self._frames.items()} | dict(self._fb_received)
        names = [*self.views, *self.feedback]
        missing = tuple(n for n in names if n not in received)
        ages = {n: now - received[n] for n in names if n in received}
        stale = tuple(n for n, age in ages.items() if age > self.timeout)
        return SyncStatus(ok=not missing and not stale, missing=missing, stale=stale, ages=ages)

    def try_assemble(self, now: float) -> ObsSet | None:
        """A new set if every input is live, every view has a new frame, and all stamps agree; else None.

        Call it after every input (image or feedback): the input that completes a set can be either.
        """
        if not self.status(now).ok:
            return None
        frames = [self._frames[v] for v in self.views]
        if any(f.seq == self._used_seq.get(v) for v, f in zip(self.views, frames)):
            return None
        stamp = max(f.stamp_ns for f in frames)
        if stamp <= self.last_set_stamp_ns or any(stamp - f.stamp_ns > self._tol_ns for f in frames):
            return None
        proprio = self._proprio_at(stamp)
        if proprio is None:
            return None
        self._used_seq = {v: f.seq for v, f in zip(self.views, frames)}
        self.last_set_stamp_ns = stamp
        return ObsSet(stamp_ns=stamp, images={v: f.image for v, f in zip(self.views, frames)}, proprio=proprio,
                      received=max(f.received for f in frames))

    def _proprio_at(self, stamp: int) -> np.ndarray | None:
        """Nearest feedback sample per topic, once every topic has one at or after ``stamp``; else None (wait)."""
        out = np.empty(self.proprio_dim, dtype=np.float64)
        for topic, fb in self.feedback.items():
            samples = self._samples[topic]
            if not samples or samples[-1][0] < stamp:
                return None
            t, values = min(samples, key=lambda s: abs(s[0] - stamp))
            if abs(t - stamp) > self._tol_ns:
                return None
            out[list(fb.proprio_dims)] = values
        return out


class StampedSetCollector:
    """Receiving side: per-topic parts (views + ``proprio``) -> one dict once every part of a stamp has arrived.

    Parts arrive on separate topics in any order; only stamps seen within the last ``max_pending`` stamps are kept,
    so a lost message costs one set, never memory. Stamps are integer nanoseconds (compared exactly).
    """

    def __init__(self, parts: Sequence[str], max_pending: int = 8):
        if not parts:
            raise ValueError("at least one part is required")
        self.parts = frozenset(parts)
        self.max_pending = max_pending
        self._pending: dict[int, dict[str, Any]] = {}
        self.last_stamp_ns = -1
        self.dropped = 0  # incomplete sets evicted

    def add(self, part: str, stamp_ns: int, data: Any) -> tuple[int, dict[str, Any]] | None:
        """Store one part; returns ``(stamp_ns, {part: data})`` when it completes a set, else None."""
        if part not in self.parts:
            raise InvalidInput(f"unknown part {part!r}; expected one of {sorted(self.parts)}")
        stamp = int(stamp_ns)
        if stamp < self.last_stamp_ns - int(BACKWARD_JUMP_S * 1e9):  # new timeline (see module docstring)
            self._pending.clear()
            self.last_stamp_ns = -1
        if stamp <= self.last_stamp_ns:
            return None
        entry = self._pending.setdefault(stamp, {})
        entry[part] = data
        if entry.keys() == self.parts:
            del self._pending[stamp]
            self.dropped += sum(1 for s in self._pending if s < stamp)
            self._pending = {s: e for s, e in self._pending.items() if s > stamp}
            self.last_stamp_ns = stamp
            return stamp, entry
        while len(self._pending) > self.max_pending:
            del self._pending[min(self._pending)]
            self.dropped += 1
        return None
