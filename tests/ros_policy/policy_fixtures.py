"""Moved to ``tests/policy_files.py`` (shared with the simulation tests); kept so existing imports still work,
including from scripts that only put ``tests/ros_policy`` on ``sys.path`` (bench/bench_graph_timing.py)."""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from policy_files import MODEL_SEED, PolicyFiles, bag_stats, write_tiny_policy  # noqa: E402, F401
