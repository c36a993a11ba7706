"""Helpers for tests that talk to real node processes over DDS: a listening node and a captured subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

PYTHON = sys.executable


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02,
             detail: Callable[[], str] | None = None) -> None:
    """Poll ``predicate`` until it holds; on timeout fail with ``what`` and, if given, ``detail()`` (e.g. the output
    of the process that should have answered: without it a timeout in CI says nothing about why)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(poll)


class Listener(Node):
    """Subscribes to topics and keeps every message; spins in a background thread (see :meth:`started`)."""

    def __init__(self, name: str = "test_listener"):
        super().__init__(name)
        self.messages: dict[str, list] = defaultdict(list)
        self._lock = threading.Lock()
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def listen(self, msg_type, topic: str, reliable: bool = True, depth: int = 200, qos: QoSProfile | None = None,
               then: Callable[[object], None] | None = None) -> None:
        """Keep every message on ``topic``; ``qos`` replaces reliable/depth (e.g. a latched profile), ``then`` is
        called with each message after it is kept (e.g. to acknowledge it)."""
        if qos is None:
            qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else
                             ReliabilityPolicy.BEST_EFFORT)

        def keep(msg):
            self._store(topic, msg)
            if then is not None:
                then(msg)

        self.create_subscription(msg_type, topic, keep, qos)

    def _store(self, topic: str, msg) -> None:
        with self._lock:
            self.messages[topic].append(msg)

    def get(self, topic: str) -> list:
        with self._lock:
            return list(self.messages[topic])

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._thread.join(timeout=2.0)
        self.destroy_node()


class Proc:
    """A child process whose combined output is captured line by line (readable while it runs)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        """``env``: variables added to this process's environment."""
        self.args = args
        self.popen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, **env} if env else None)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(timeout=2.0)
        return code

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.wait(timeout)


def wp_launch(*args: str, env: dict[str, str] | None = None) -> Proc:
    return Proc([PYTHON, "-m", "wp_policy.supervisor", *args], env=env)


def wp_bag(*args: str) -> Proc:
    return Proc([PYTHON, "-m", "wp_policy.ros.bag_cli", *args])


def collect_sets(listener: Listener, views, proprio_topic: str = "/wp/obs/proprio") -> list[tuple[int, dict]]:
    """Rebuild the aggregator's observation sets from what ``listener`` heard (stamp ns, {part: msg})."""
    from wp_policy.obs_sync import PROPRIO_PART, StampedSetCollector
    from wp_policy.ros.conversions import stamp_to_ns

    parts = [(v, f"/wp/obs/{v}") for v in views] + [(PROPRIO_PART, proprio_topic)]
    items = sorted((stamp_to_ns(m.header.stamp), part, m) for part, topic in parts for m in listener.get(topic))
    collector = StampedSetCollector([p for p, _ in parts], max_pending=64)
    return [s for stamp, part, msg in items if (s := collector.add(part, stamp, msg)) is not None]


def diagnostics_of(listener: Listener, node_name: str, topic: str = "/diagnostics") -> list:
    """Every DiagnosticStatus published by ``node_name`` (fully qualified, e.g. /aggregator)."""
    return [s for arr in listener.get(topic) for s in arr.status if s.name == node_name]
