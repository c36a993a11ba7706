"""`colcon build --symlink-install` of ros2_ws installs what `ros2 run` / `ros2 launch` look for in a ROS install.

colcon and its ROS extension (colcon-ros, from colcon-common-extensions) build the ament_python package here without
a ROS install; what a ROS install adds at run time (ros2cli, launch) only reads this layout: the ament index marker,
``lib/<pkg>/<executable>`` and ``share/<pkg>/...``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from packaging_facts import (
    COLCON_PRODUCES, REPO, ROS_PACKAGE, WORKSPACE, package_names, repo_files, ros_console_scripts,
)

pytestmark = pytest.mark.slow


def _share(ws) -> Path:
    return ws.install / ROS_PACKAGE / "share" / ROS_PACKAGE


def test_setup_py_registers_node_executables():
    assert ros_console_scripts(), (
        "wp_policy/setup.py registers no console_scripts: `ros2 run wp_policy <node>` and the launch files have no "
        "executables to start (register each node's main() in setup.py entry_points)"
    )


def test_every_console_script_is_an_executable_in_lib(colcon_workspace):
    lib = colcon_workspace.install / ROS_PACKAGE / "lib" / ROS_PACKAGE
    for name in ros_console_scripts():
        exe = lib / name
        assert exe.is_file(), f"console script {name!r} not installed as {exe}"
        assert os.access(exe, os.X_OK), f"{exe} is not executable"
        shebang = exe.read_text().splitlines()[0]
        interpreter = Path(shebang[2:].strip().split()[0])
        assert interpreter.resolve() == colcon_workspace.python.resolve(), (
            f"{exe} runs {interpreter}, not the interpreter colcon ran with ({colcon_workspace.python}): "
            "its dependencies would not be importable"
        )


def test_every_graph_executable_is_installed(colcon_workspace):
    """`ros2 launch` starts each graph node by executable name from lib/wp_policy (wp_policy.graph)."""
    from wp_policy.graph import GRAPHS

    lib = colcon_workspace.install / ROS_PACKAGE / "lib" / ROS_PACKAGE
    missing = sorted({f"{g.name}/{n.name}: {n.executable}" for g in GRAPHS.values() for n in g.nodes
                      if not (lib / n.executable).is_file()})
    assert not missing, f"graph nodes whose executable is not installed in {lib}: {missing}"


def test_installed_entry_points_load(colcon_workspace):
    """What an installed executable does first: find wp-policy's entry point and import its target."""
    scripts = ros_console_scripts()
    code = (
        "import json, sys\nfrom importlib.metadata import distribution\n"
        "eps = {e.name: e for e in distribution('wp-policy').entry_points if e.group == 'console_scripts'}\n"
        "out = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n        eps[name].load(); out[name] = 'ok'\n"
        "    except Exception as exc:\n        out[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(out))\n"
    )
    env = colcon_workspace.sourced_env()
    proc = subprocess.run(
        [str(colcon_workspace.python), "-c", code, json.dumps(sorted(scripts))],
        env=env, capture_output=True, text=True, timeout=120, cwd=colcon_workspace.root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    broken = {name: r for name, r in results.items() if r != "ok"}
    assert not broken, f"installed entry points that do not load: {broken}"


@pytest.mark.parametrize("folder", ["launch", "configs"])
def test_share_mirrors_repo_folder(colcon_workspace, folder):
    files = repo_files(folder)
    assert files, f"{folder}/ is empty: nothing for colcon to install into share/{ROS_PACKAGE}/{folder}"
    installed = _share(colcon_workspace) / folder
    missing = [str(f) for f in files if not (installed / f).is_file()]
    assert not missing, f"{folder}/ files not installed under {installed}: {missing}"
    differing = [str(f) for f in files if (installed / f).read_bytes() != (REPO / folder / f).read_bytes()]
    assert not differing, f"installed copies differ from the repo: {differing}"


def test_package_xml_and_ament_index_marker(colcon_workspace):
    for name in package_names(WORKSPACE / "src"):
        prefix = colcon_workspace.install / name
        assert (prefix / "share" / name / "package.xml").is_file(), f"package.xml of {name} not installed"
        marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / name
        assert marker.exists(), f"ament index marker missing for {name}: `ros2 pkg` / launch cannot find it"


def test_setup_scripts_exist_and_locate_package(colcon_workspace):
    for rel in COLCON_PRODUCES:
        assert (colcon_workspace.root / rel).is_file(), f"colcon did not produce {rel}"
    env = colcon_workspace.sourced_env()
    code = (
        "from ament_index_python.packages import get_package_share_directory, get_package_prefix\n"
        f"print(get_package_prefix('{ROS_PACKAGE}')); print(get_package_share_directory('{ROS_PACKAGE}'))"
    )
    proc = subprocess.run(
        [str(colcon_workspace.python), "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    prefix, share = proc.stdout.split()
    assert Path(prefix) == colcon_workspace.install / ROS_PACKAGE
    assert Path(share) == _share(colcon_workspace)


def test_build_leaves_checkout_clean(colcon_workspace):
    assert not colcon_workspace.repo_changes, (
        f"building the temporary workspace wrote into the checkout: {colcon_workspace.repo_changes}"
    )
