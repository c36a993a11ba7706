"""A real colcon build of the repository's workspace, done once per session in a temporary copy.

The copy links each package of ``ros2_ws/src`` to its source (as the repo's own relative links do), then runs
``COLCON_BUILD`` verbatim inside it, so build/, install/ and log/ land in tmp and the checkout stays clean.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from packaging_facts import COLCON_BUILD, REPO, WORKSPACE

# Variables a developer's shell may carry from a sourced ROS install; the build must not chain onto them.
_ROS_ENV = ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "CMAKE_PREFIX_PATH", "PYTHONPATH", "COLCON_CURRENT_PREFIX")


@dataclass(frozen=True)
class ColconWorkspace:
    root: Path  # the temporary workspace (has src/, build/, install/, log/)
    python: Path  # the interpreter colcon ran with: installed executables must use it
    repo_changes: tuple[str, ...]  # build outputs that appeared or changed in the checkout during the build

    @property
    def install(self) -> Path:
        return self.root / "install"

    def sourced_env(self) -> dict[str, str]:
        """The environment after ``source install/setup.bash`` in a clean bash (as a user's shell would have)."""
        script = f"source {shlex.quote(str(self.install / 'setup.bash'))} && env -0"
        out = subprocess.run(
            ["bash", "-c", script], env=clean_env(), capture_output=True, check=True, timeout=60
        ).stdout
        return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def clean_env() -> dict[str, str]:
    """This process's environment without ROS workspace variables, with the venv's bin/ first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in _ROS_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def colcon_workspace(tmp_path_factory) -> ColconWorkspace:
    root = tmp_path_factory.mktemp("ros2_ws")
    (root / "src").mkdir()
    for entry in sorted((WORKSPACE / "src").iterdir()):
        (root / "src" / entry.name).symlink_to(entry.resolve())
    env = clean_env()
    env["COLCON_HOME"] = str(root / ".colcon")  # ignore a developer's ~/.colcon defaults
    before = _build_outputs_in_checkout()
    proc = subprocess.run(
        shlex.split(COLCON_BUILD), cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"`{COLCON_BUILD}` failed in {root}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    after = _build_outputs_in_checkout()
    changed = tuple(sorted(p for p in after if before.get(p) != after[p]))
    return ColconWorkspace(root=root, python=Path(sys.executable), repo_changes=changed)


def _build_outputs_in_checkout() -> dict[str, float]:
    """Where a colcon/setuptools build could write in the checkout, with modification times."""
    found = {}
    for pattern in ("build", "install", "log"):
        for p in WORKSPACE.glob(pattern):
            found[str(p.relative_to(REPO))] = p.stat().st_mtime
    for src in (WORKSPACE / "src").iterdir():
        for pattern in ("build", "dist", "*.egg-info", "*.egg-info/*"):
            for p in src.resolve().glob(pattern):
                found[str(p.relative_to(REPO))] = p.stat().st_mtime
    return found
