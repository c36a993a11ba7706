"""The last gate before a robot command: every execution-space action passes :class:`SafetyFilter` or is replaced.

Rules, applied in this order to each proposed command (``float [action_dim]``, execution space, e.g. R1 Lite
joint radians + gripper stroke mm):

1. wrong length or any non-finite value -> rejected, a hold is sent instead;
2. watchdog: no observation set for ``obs_timeout`` or no joint feedback for ``feedback_timeout`` -> hold;
3. clamp to ``[lower, upper]`` from the robot config;
4. limit the change from the previous emitted command to ``max_step`` per dim (None: no rate limit).

A **hold** keeps the robot where it is: position robots command the measured position (action dims matched to proprio
dims by name); delta robots (LIBERO) command zero motion and repeat the last gripper command. Holds go through the
same clamp and rate limit, so *every* emitted command is within limits and within ``max_step`` of the one before; when
the arm tracks its command (tracking error below ``max_step``) the hold equals the measured position at once.

Every rejection, clamp and hold is counted in :attr:`SafetyFilter.counters` (published on /diagnostics by nodes).
``now`` arguments are seconds on the caller's clock (the node clock, which follows /clock in simulation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from wp_policy.robot_config import RobotConfig


class HoldReason(str, Enum):
    """Why a command is a hold. The value is the name users see: ``hold:<value>`` in a command's ``header.frame_id``,
    ``count.hold.<value>`` on /diagnostics and, for the filter's own reasons, its counter of that name; a member is a
    ``str`` equal to its value, so tools, tests and logs keep matching the plain strings."""

    __str__ = str.__str__  # format as the value on every Python version (enum.StrEnum needs 3.11)
    __format__ = str.__format__

    HOLD_REQUESTED = "hold_requested"  # SafetyFilter.hold() without a reason
    REJECTED_LENGTH = "rejected_length"  # a command of the wrong size
    REJECTED_NON_FINITE = "rejected_non_finite"  # a command with NaN or inf
    STALE_OBS = "stale_obs"  # no observation set within obs_timeout
    STALE_FEEDBACK = "stale_feedback"  # no joint feedback within feedback_timeout
    OTHER_WRITER = "other_writer"  # another node publishes on a command topic
    WAITING_OBS = "waiting_obs"  # no observation set since the last stop, reset or start
    WAITING_PLAN = "waiting_plan"  # the queue is empty and the requested plan has not arrived
    FILL_PENDING = "fill_pending"  # the pair that must start is still being filled
    FILL_ERROR = "fill_error"  # the fill failed; the plan is dropped and a new one requested
    STOPPED = "stopped"  # the stop latch is engaged (operator or model stop)
    OVERRUN = "overrun"  # lock-step: too many sets waiting for their command
    TIME_JUMP = "time_jump"  # lock-step: sets of the old timeline when a new one starts
    SHUTDOWN = "shutdown"  # the filler's final holds as it shuts down
    FILLER_GONE = "filler_gone"  # the final_hold node's holds for a filler that died
    NO_COMMAND = "no_command"  # the LIBERO bridge, wall clock: no command has arrived yet this episode


COUNTERS = (
    "passed",  # commands emitted unchanged by the watchdog (possibly clamped)
    HoldReason.REJECTED_LENGTH.value,
    HoldReason.REJECTED_NON_FINITE.value,
    "clamped_limit",  # at least one dim clamped to [lower, upper]
    "clamped_step",  # at least one dim limited by max_step
    HoldReason.STALE_OBS.value,
    HoldReason.STALE_FEEDBACK.value,
    "holds",  # every hold emitted, whatever the reason
    "no_reference",  # a command or hold was needed but no measured position exists yet: nothing emitted
    "feedback_rejected",  # measured positions that were not finite / wrong length
)


@dataclass(frozen=True)
class SafetyDecision:
    """What to send: ``action`` float64 [action_dim] (checked), whether it is a hold, and why."""

    action: np.ndarray
    hold: bool
    reason: str  # "" for a passed command; else the HoldReason (a str) that caused the hold


class SafetyFilter:
    """Stateful command gate for one robot (see module docstring).

    ``hold_from_proprio[i]``: proprio dim holding action dim i's measured value (position robots), or None for a
    delta robot, whose hold is 0 on every dim except ``hold_gripper`` dims (value: last command, else the default).
    """

    def __init__(
        self,
        lower: Sequence[float],
        upper: Sequence[float],
        max_step: Sequence[float] | None,
        hold_from_proprio: Sequence[int] | None,
        hold_gripper: dict[int, float] | None = None,
        obs_timeout: float = 0.5,
        feedback_timeout: float = 0.2,
    ):
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.dim = self.lower.size
        self.max_step = None if max_step is None else np.asarray(max_step, dtype=np.float64)
        self.hold_from_proprio = None if hold_from_proprio is None else list(hold_from_proprio)
        self.hold_gripper = dict(hold_gripper or {})
        self.obs_timeout = obs_timeout
        self.feedback_timeout = feedback_timeout
        self._validate()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.last_command: np.ndarray | None = None
        self.measured: np.ndarray | None = None  # latest measured proprio (physical units)
        self._obs_time = -math.inf
        self._feedback_time = -math.inf

    def _validate(self) -> None:
        bounds = [self.lower, self.upper] + ([] if self.max_step is None else [self.max_step])
        if not all(np.all(np.isfinite(b)) for b in bounds):
            raise ValueError(f"limits must be finite: lower {self.lower.tolist()}, upper {self.upper.tolist()}, "
                             f"max_step {None if self.max_step is None else self.max_step.tolist()}")
        if self.upper.shape != (self.dim,) or np.any(self.lower > self.upper):
            raise ValueError(f"lower {self.lower.tolist()} / upper {self.upper.tolist()} must match and lower <= upper")
        if self.max_step is not None and (self.max_step.shape != (self.dim,) or np.any(self.max_step <= 0)):
            raise ValueError(f"max_step must have {self.dim} positive values, got {self.max_step.tolist()}")
        if self.hold_from_proprio is not None and len(self.hold_from_proprio) != self.dim:
            raise ValueError(f"hold_from_proprio needs {self.dim} entries, got {len(self.hold_from_proprio)}")
        if self.obs_timeout <= 0 or self.feedback_timeout <= 0:
            raise ValueError(f"timeouts must be positive, got obs {self.obs_timeout}, feedback {self.feedback_timeout}")

    @classmethod
    def from_robot(cls, robot: RobotConfig, obs_timeout: float = 0.5, feedback_timeout: float = 0.2) -> SafetyFilter:
        """Limits from the robot config; hold by measured position (joint robots) or zero motion (delta robots)."""
        lim = robot.limits
        if robot.action_kind == "delta_eef":
            open_value = float(robot.gripper.action_to_execution(np.array(1.0)))  # model space 1.0 = open
            return cls(lim.lower, lim.upper, lim.max_step, None, dict.fromkeys(robot.action.gripper_dims, open_value),
                       obs_timeout, feedback_timeout)
        missing = [n for n in robot.action.names if n not in robot.proprio.names]
        if missing:
            raise ValueError(f"{robot.robot_type}: action dims {missing} have no proprio dim of the same name to hold")
        src = [robot.proprio.names.index(n) for n in robot.action.names]
        return cls(lim.lower, lim.upper, lim.max_step, src, None, obs_timeout, feedback_timeout)

    def observe_obs(self, now: float) -> None:
        """An observation set arrived (feeds the observation watchdog)."""
        self._obs_time = now

    def observe_feedback(self, proprio: Sequence[float], now: float) -> bool:
        """Measured proprio (physical units); returns False (and counts) if it is malformed and ignored."""
        p = np.asarray(proprio, dtype=np.float64).reshape(-1)
        need = 0 if self.hold_from_proprio is None else max(self.hold_from_proprio) + 1
        if p.size < need or not np.all(np.isfinite(p)):
            self.counters["feedback_rejected"] += 1
            return False
        self.measured = p.copy()
        self._feedback_time = now
        return True

    def check(self, command: Sequence[float] | np.ndarray, now: float) -> SafetyDecision | None:
        """The command to send for this tick: ``command`` made safe, or a hold. None: nothing may be sent."""
        cmd = np.asarray(command, dtype=np.float64).reshape(-1)
        if cmd.size != self.dim:
            return self.hold(HoldReason.REJECTED_LENGTH)
        if not np.all(np.isfinite(cmd)):
            return self.hold(HoldReason.REJECTED_NON_FINITE)
        stale = self._watchdog(now)
        if stale:
            return self.hold(stale)
        out = self._limit(cmd)
        if out is None:
            return None
        self.counters["passed"] += 1
        return SafetyDecision(out, hold=False, reason="")

    def hold(self, reason: HoldReason = HoldReason.HOLD_REQUESTED) -> SafetyDecision | None:
        """Hold the current position (see module docstring); ``reason`` is counted when it names a counter."""
        if reason in self.counters:
            self.counters[reason] += 1
        target = self._hold_target()
        if target is None:
            self.counters["no_reference"] += 1
            return None
        out = self._limit(target)
        if out is None:
            return None
        self.counters["holds"] += 1
        return SafetyDecision(out, hold=True, reason=reason)

    def _watchdog(self, now: float) -> HoldReason | None:
        if now - self._obs_time > self.obs_timeout:
            return HoldReason.STALE_OBS
        if now - self._feedback_time > self.feedback_timeout:
            return HoldReason.STALE_FEEDBACK
        return None

    def reset_history(self) -> None:
        """A new episode: the next command's max_step counts from the measured position again, not from the last
        episode's final command. Counters, the measured position and the watchdog times are kept."""
        self.last_command = None

    def _hold_target(self) -> np.ndarray | None:
        if self.hold_from_proprio is not None:
            return None if self.measured is None else self.measured[self.hold_from_proprio]
        target = np.zeros(self.dim)
        for d, default in self.hold_gripper.items():
            target[d] = default if self.last_command is None else self.last_command[d]
        return target

    def _reference(self) -> np.ndarray | None:
        """What max_step is measured from: the last command, else the measured position (first command)."""
        if self.last_command is not None:
            return self.last_command
        if self.hold_from_proprio is not None and self.measured is not None:
            return np.clip(self.measured[self.hold_from_proprio], self.lower, self.upper)
        return None

    def _limit(self, target: np.ndarray) -> np.ndarray | None:
        out = np.clip(target, self.lower, self.upper)
        if np.any(out != target):
            self.counters["clamped_limit"] += 1
        if self.max_step is not None:
            ref = self._reference()
            if ref is None:
                self.counters["no_reference"] += 1
                return None
            step = np.clip(out - ref, -self.max_step, self.max_step)
            if np.any(step != out - ref):
                self.counters["clamped_step"] += 1
            out = np.clip(ref + step, self.lower, self.upper)
        self.last_command = out
        return out.copy()
