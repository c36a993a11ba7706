"""The stop latch: once the robot is stopped it stays stopped until someone deliberately resumes it.

A stop (a ``/wp/stop`` message or service call, the operator's duration-0 waypoint on ``/wp/waypoints``, or the
model's own d = 0) engages the latch. Plans arriving while it is
engaged are dropped, whoever sent them and whatever observation they were made from, so a late plan, a plan from a
restarted planner or a hand-published trajectory cannot move a stopped robot. Only two things release it:

- ``/wp/resume`` (``std_srvs/Trigger``, offered by the filler, which owns the latch), or
- a new ``/wp/instruction`` message, i.e. one whose identity (publisher + sequence number) the filler has not seen.
  A latched instruction delivered again (a late-joining subscription, a restarted planner) is the same message,
  not a new one.

The filler publishes the latch state on ``/wp/stop_state`` (reliable, transient local: a planner that starts later
learns it at once) as JSON, and the planner follows it. ::

      start ──> RUNNING ── stop message / model stop ──> STOPPED ──┐
                   ^                                                │ plans: dropped
                   └──── /wp/resume, or a new instruction ─────────┘ repeated instruction: ignored

This module is ROS-free: the filler node drives it, the tests exercise it directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

SOURCES = ("startup", "stop_message", "stop_topic", "stop_service", "model_stop", "resume_service", "instruction")


@dataclass(frozen=True)
class LatchState:
    """What ``/wp/stop_state`` carries: whether the robot is latched stopped, by what, and when (wall time, s)."""

    stopped: bool
    source: str  # one of SOURCES: what caused the last change
    since: float  # time.time() of the last change
    instruction_id: str  # identity of the instruction in effect at that change ("" if none yet)
    detail: str = ""

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"stop state source must be one of {list(SOURCES)}, got {self.source!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LatchState:
        """Parse a ``/wp/stop_state`` payload; a ValueError names what is wrong."""
        try:
            data = json.loads(text)
            return cls(stopped=bool(data["stopped"]), source=str(data["source"]), since=float(data["since"]),
                       instruction_id=str(data["instruction_id"]), detail=str(data.get("detail", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed stop state {text!r}: {exc}") from None

    def released_after(self, stop_sent: float) -> bool:
        """Whether this state is a release made after a stop sent at ``stop_sent`` (wall time, s): that stop was
        already answered by it, so a copy of it arriving late (a slow best-effort path) must not stop a follower
        again while the latch owner runs. An unset stamp (0) is never considered answered."""
        return not self.stopped and 0 < stop_sent < self.since

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        if self.stopped:
            return f"stopped by {self.source} at {when}: holding until /wp/resume or a new instruction"
        return f"running since {when} ({self.source})"


class StopLatch:
    """The latch state machine (see the module docstring). Every transition returns whether the state changed."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self.state = LatchState(False, "startup", clock(), "")
        self.seen_instructions: set[str] = set()
        self.changes = 0

    @property
    def engaged(self) -> bool:
        return self.state.stopped

    def engage(self, source: str, instruction_id: str, detail: str = "") -> bool:
        if self.engaged:
            return False
        self._set(True, source, instruction_id, detail)
        return True

    def release(self, source: str, instruction_id: str, detail: str = "") -> bool:
        if not self.engaged:
            return False
        self._set(False, source, instruction_id, detail)
        return True

    def new_instruction(self, instruction_id: str) -> bool:
        """Record an instruction message; False when that very message was seen before (a re-delivery)."""
        if instruction_id in self.seen_instructions:
            return False
        self.seen_instructions.add(instruction_id)
        return True

    def _set(self, stopped: bool, source: str, instruction_id: str, detail: str) -> None:
        self.state = LatchState(stopped, source, self._clock(), instruction_id, detail)
        self.changes += 1


def message_identity(publisher_gid: bytes | None, sequence: int | None, source_timestamp: int) -> str:
    """A message's identity across re-deliveries: its publisher and sequence number (the DDS sample identity), or
    the source timestamp where the middleware reports neither."""
    if publisher_gid and sequence:
        return f"{publisher_gid.hex()}/{sequence}"
    return f"t/{source_timestamp}"
