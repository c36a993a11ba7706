"""DDS domains of the test processes: each pytest process (each pytest-xdist worker) and each graph a test starts in
a subprocess get a domain no other process of the same run uses, so parallel workers never hear each other.

A run's domains are a block of 16 chosen by the run's pid (the xdist controller's for its workers): ids 0..7 of the
block for up to eight workers, 8..15 as each worker's spare for graphs that must not meet the worker's own nodes.
"""

from __future__ import annotations

import os

_FIRST, _BLOCK, _BLOCKS = 20, 16, 13  # ids 20..227: within DDS's port mapping (<= 232), clear of 0 (the default)


def _worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) % (_BLOCK // 2)


def _run_pid() -> int:
    return os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()


def worker_domain() -> int:
    return _FIRST + _BLOCK * (_run_pid() % _BLOCKS) + _worker()


def spare_domain() -> int:
    """A second domain of this worker, for a graph started in a subprocess next to the worker's own nodes."""
    return worker_domain() + _BLOCK // 2


def isolate() -> None:
    """This process's ROS_DOMAIN_ID and localhost-only discovery; child processes inherit both."""
    os.environ["ROS_DOMAIN_ID"] = str(worker_domain())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
