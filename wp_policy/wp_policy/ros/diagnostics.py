"""Node health on /diagnostics: counters, event rates and latency percentiles in one DiagnosticStatus per node.

A node owns one :class:`Diagnostics`; it calls :meth:`count`, :meth:`event` and :meth:`latency` from its callbacks
and a timer publishes every ``period`` seconds (plus :meth:`alert` for urgent changes, e.g. a rejected message).
Counters are cumulative; rates and latencies cover the window since the previous publication. Values are published
as KeyValue strings named ``count.<key>``, ``rate_hz.<key>``, ``latency_ms.<key>.{p50,p99,max}`` so tools can parse
them. The node supplies the level and message through ``status_fn``; a condition that lasts as long as the node
(running on the CPU because ``device auto`` found no GPU) goes in :attr:`Diagnostics.standing` and keeps the level
at WARN or above, appended to every message.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import DIAGNOSTICS_TOPIC, TOPIC_QOS

OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE
StatusFn = Callable[[], tuple[bytes, str]]


class Diagnostics:
    """Collects one node's health numbers and publishes them (see module docstring)."""

    def __init__(self, node: Node, period: float, status_fn: StatusFn, hardware_id: str = "wp_policy"):
        if period <= 0:
            raise ValueError(f"diagnostics period must be positive, got {period}")
        self.node = node
        self.status_fn = status_fn
        self.hardware_id = hardware_id
        self.counters: Counter[str] = Counter()
        self.extra: list[Callable[[], Mapping[str, object]]] = []  # more values, e.g. a SafetyFilter's counters
        self.standing: list[str] = []  # lasting warnings, reported in every message (see module docstring)
        self._events: Counter[str] = Counter()
        self._latencies: defaultdict[str, list[float]] = defaultdict(list)
        self._window_start = time.monotonic()
        self._last_publish = -float("inf")
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, qos_profile(TOPIC_QOS[DIAGNOSTICS_TOPIC]))
        # the steady clock, also under sim time: diagnostics are the nodes' heartbeat (wp_policy.heartbeat), and a
        # paused simulation must not look like a frozen node
        self._timer = node.create_timer(period, self.publish_now, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def event(self, key: str) -> None:
        """One occurrence of a periodic event; reported as a rate (Hz) over the window."""
        self._events[key] += 1

    def latency(self, key: str, seconds: float) -> None:
        samples = self._latencies[key]
        if len(samples) < 10_000:  # bounded even if publishing stalls
            samples.append(seconds)

    def alert(self, min_interval: float = 0.1) -> None:
        """Publish now (a new fault should not wait a period), at most once per ``min_interval`` seconds."""
        if time.monotonic() - self._last_publish >= min_interval:
            self.publish_now()

    def publish_now(self) -> None:
        self._last_publish = time.monotonic()
        level, message = self.status_fn()
        if self.standing:
            level, message = max(level, WARN), "; ".join([message, *self.standing])
        status = DiagnosticStatus(
            level=level, name=self.node.get_fully_qualified_name(), message=message, hardware_id=self.hardware_id
        )
        status.values = [KeyValue(key=k, value=v) for k, v in self._values().items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)

    def _values(self) -> dict[str, str]:
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-9)
        values = {f"count.{k}": str(v) for k, v in sorted(self.counters.items())}
        values |= {f"rate_hz.{k}": f"{n / elapsed:.2f}" for k, n in sorted(self._events.items())}
        for key, samples in sorted(self._latencies.items()):
            if samples:
                ms = np.asarray(samples) * 1e3
                p50, p99 = np.percentile(ms, [50, 99])
                values |= {f"latency_ms.{key}.p50": f"{p50:.2f}", f"latency_ms.{key}.p99": f"{p99:.2f}",
                           f"latency_ms.{key}.max": f"{ms.max():.2f}"}
        for provider in self.extra:
            values |= {k: str(v) for k, v in provider().items()}
        self._events.clear()
        self._latencies.clear()
        self._window_start = now
        return values


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    """KeyValue list -> dict (for tools and tests reading /diagnostics)."""
    return {kv.key: kv.value for kv in status.values}
