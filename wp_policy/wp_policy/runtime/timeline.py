"""The observation time base the planner and the filler share: which timeline a stamp belongs to, and which work is
stale.

Observation stamps only grow within a timeline. A stamp more than ``BACKWARD_JUMP_S`` older than the newest one (a bag
replayed again, a simulation reset) starts a new timeline, as in :mod:`wp_policy.obs_sync`; a plan stamped more than
that past the newest set belongs to a timeline this node has not seen yet. A stop, a resume or a new instruction cuts
the current one (:meth:`Timeline.cut`): plans made from sets up to then are stale, and work started before then (an
older ``epoch``) is discarded. Both nodes apply the same rule, so they agree on when an episode starts.
"""

from __future__ import annotations

from wp_policy.obs_sync import BACKWARD_JUMP_S

JUMP_NS = int(BACKWARD_JUMP_S * 1e9)


def jumps_back(newest_ns: int, stamp_ns: int, margin_ns: int = 0) -> bool:
    """Whether ``stamp_ns`` lies more than a timeline jump (plus ``margin_ns``) before ``newest_ns``: a node that has
    seen ``newest_ns`` starts a new timeline with it. A sender that must be sure of that (the LIBERO bridge, at an
    episode's start) asks with a margin, so the decision never rests on the edge."""
    return stamp_ns < newest_ns - JUMP_NS - margin_ns


class Timeline:
    """The newest observation stamp of the current timeline, the cut before which plans are stale, and an epoch
    that changes with every new timeline and every cut."""

    def __init__(self):
        self.newest_ns = -1  # -1: no observation yet on this timeline
        self.cut_ns = -1  # plans made from sets at or before this stamp are stale
        self.epoch = 0

    def observe(self, stamp_ns: int) -> bool:
        """Take an observation stamp; True when it started a new timeline (everything before it is forgotten)."""
        jumped = self.newest_ns >= 0 and jumps_back(self.newest_ns, stamp_ns)
        if jumped:
            self.newest_ns = self.cut_ns = -1
            self.epoch += 1
        self.newest_ns = max(self.newest_ns, stamp_ns)
        return jumped

    def cut(self) -> None:
        """A stop, resume or new instruction: plans from the sets seen so far, and work in flight, are stale."""
        self.cut_ns = self.newest_ns
        self.epoch += 1

    def before_cut(self, stamp_ns: int) -> bool:
        return stamp_ns <= self.cut_ns

    def is_ahead(self, stamp_ns: int) -> bool:
        """A stamp further past the newest set than a timeline jump: it comes from a timeline not seen yet."""
        return self.newest_ns >= 0 and stamp_ns > self.newest_ns + JUMP_NS
