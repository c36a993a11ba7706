"""Fixtures for the simulation tests: robosuite stand-in envs built once per session (creation takes seconds).

Anything that renders runs in a child process (render_probe.py): TensorFlow, imported by other suites in the same
pytest process, segfaults next to MuJoCo's Mesa renderer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def state_env():
    """Lift + Stack without cameras: fast, for dynamics, seeding and expert tests (safe next to TensorFlow)."""
    from wp_policy.sim.robosuite_env import RobosuiteEnv

    env = RobosuiteEnv(("Lift", "Stack"), render=False)
    yield env
    env.close()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """One rendered Lift reset (seed 1) from a child process: LIBERO-convention views and robosuite's raw frames."""
    out = tmp_path_factory.mktemp("render") / "probe.npz"
    probe = Path(__file__).with_name("render_probe.py")
    proc = subprocess.run([sys.executable, str(probe), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"render probe failed:\n{proc.stderr[-3000:]}"
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def pytest_configure(config):
    # robosuite 1.4.1 logs through the deprecated Logger.warn at import time; not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:The 'warn' method is deprecated:DeprecationWarning")
