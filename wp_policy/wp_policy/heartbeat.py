"""Heartbeats: which nodes stopped publishing their /diagnostics (frozen, deadlocked, or dead).

Every node of the graph publishes /diagnostics at least every ``diagnostics_period`` seconds from a timer on its
executor thread, so a node whose executor no longer runs (SIGSTOP, a deadlock, a callback that never returns) falls
silent there first. Only nodes heard at least once are judged: one that never started is the launcher's concern.
ROS-free; the aggregator feeds it and reports on /diagnostics.
"""

from __future__ import annotations

from collections.abc import Iterable


class HeartbeatMonitor:
    def __init__(self, names: Iterable[str], timeout: float):
        if timeout <= 0:
            raise ValueError(f"heartbeat timeout must be > 0, got {timeout}")
        self.names = {_qualified(n) for n in names}
        self.timeout = timeout
        self.last: dict[str, float] = {}
        self.lost = dict.fromkeys(self.names, 0)  # times each node went silent

    def beat(self, name: str, now: float) -> None:
        if name in self.names:
            self.last[name] = now

    def silent(self, now: float) -> dict[str, float]:
        """Watched nodes heard before but not for longer than ``timeout``: name -> seconds since the last beat."""
        return {n: now - t for n, t in sorted(self.last.items()) if now - t > self.timeout}

    def newly_silent(self, now: float, before: dict[str, float]) -> list[str]:
        """Nodes silent now that were not in ``before`` (counted in :attr:`lost`)."""
        new = [n for n in self.silent(now) if n not in before]
        for n in new:
            self.lost[n] += 1
        return new


def _qualified(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"
