"""Where the project's data files (configs/, launch/) live, for a source checkout, a pip install and a colcon install."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PKG_DIR = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    out = []
    env = os.environ.get(f"WP_{name.upper()}_DIR")
    if env:
        out.append(Path(env))
    out.append(_PKG_DIR.parent.parent / name)  # source checkout / editable install: <repo>/<name>
    out.append(Path(sys.prefix) / "share" / "wp_policy" / name)  # pip data_files
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            out.append(Path(prefix) / "share" / "wp_policy" / name)  # colcon / ROS install
    return out


def _find(name: str) -> Path:
    for cand in _candidates(name):
        if cand.is_dir():
            return cand
    tried = ", ".join(str(c) for c in _candidates(name))
    raise FileNotFoundError(f"wp_policy {name}/ directory not found (tried {tried}); set WP_{name.upper()}_DIR")


def config_dir() -> Path:
    return _find("configs")


def launch_dir() -> Path:
    return _find("launch")
