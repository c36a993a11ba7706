"""The Docker images cannot be built here, so these tests keep docker/ honest against the repository: every file the
Dockerfile copies or runs exists and is the one the tests and CI exercise (``make setup`` -> scripts/setup.sh), no
second dependency list hides in the Dockerfile, the entry points start launch files and arguments that exist, and
the compose services build existing targets. The two entry-point scripts are run for real where that works
without Docker: the launch prefix with the venv's rclpy, the entry point on a real colcon install.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ros_domains import spare_domain

from packaging_facts import (
    COLCON_BUILD,
    COLCON_PRODUCES,
    COMPOSE_FILE,
    DOCKER_DIR,
    DOCKERFILE,
    REPO,
    SDK_ROS_DISTRO,
    copy_sources,
    dockerfile_commands,
    dockerignore_for,
    exec_form,
    launch_problem,
    load_compose,
    makefile_targets,
    parse_dockerfile,
)

ENTRYPOINT_SCRIPT = DOCKER_DIR / "ros_entrypoint.sh"
LAUNCH_PREFIX_SCRIPT = DOCKER_DIR / "run_in_venv.sh"
# Modules a launch file may import at launch time in the robot image, where `ros2 launch` runs on Humble's
# Python 3.10 with only ROS's own Python packages: the standard library, these, and wp_policy's own modules.
LAUNCH_TIME_PACKAGES = {"launch", "launch_ros", "ament_index_python", "yaml"}


@pytest.fixture(scope="module")
def stages():
    return {s.name: s for s in parse_dockerfile(DOCKERFILE)}


@pytest.fixture(scope="module")
def compose():
    return load_compose()


def _in_image_to_repo(path: str, stage) -> Path:
    """An absolute path inside the image that lies in the copied repository -> the same file in this checkout."""
    workdir = stage.all("WORKDIR")[-1].args
    assert path.startswith(workdir + "/"), f"{path} is not inside the image's copy of the repo ({workdir})"
    return REPO / path[len(workdir) + 1:]


# ------------------------------------------------------------------------------------------------- Dockerfile
def test_compose_services_build_existing_dockerfile_targets(compose, stages):
    assert compose["services"], f"{COMPOSE_FILE}: no services"
    assert {"robot", "sim"} <= set(compose["services"]), "compose needs the robot and sim services"
    for name, svc in compose["services"].items():
        build = svc["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO, f"service {name}: build context {context} is not the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.resolve() == DOCKERFILE, f"service {name}: {dockerfile} is not {DOCKERFILE}"
        assert build["target"] in stages, f"service {name}: target {build['target']!r} not in {sorted(stages)}"


def test_every_copied_path_exists(stages):
    for stage in stages.values():
        for ins in stage.all("COPY") + stage.all("ADD"):
            if "--from=" in ins.args:
                continue
            for src in copy_sources(ins.args):
                assert (REPO / src).exists(), f"{DOCKERFILE.name}:{ins.line}: COPY source {src!r} missing"


def test_dockerignore_leaves_out_what_git_ignores():
    """The image is built from the files of a fresh clone: a host .venv or build/ in the context would break it."""
    ignore = dockerignore_for(DOCKERFILE)
    assert ignore.is_file(), f"{ignore} missing: the whole checkout (.venv, build outputs) would enter the image"
    patterns = {line.strip().rstrip("/") for line in ignore.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    wanted = [line.strip().rstrip("/") for line in (REPO / ".gitignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    missing = [p for p in wanted if p not in patterns and f"**/{p}" not in patterns]
    assert not missing, f"{ignore.name} lets in what .gitignore ignores: {missing}"
    assert ".git" in patterns


def test_dependencies_come_only_from_the_project_setup(stages):
    """Each image runs `make setup`, the target CI's `make test` depends on, whose recipe runs scripts/setup.sh;
    no pip install, requirements file or render library list of its own."""
    makefile = (REPO / "Makefile").read_text()
    setup_prereqs = re.search(r"^setup:(.*)$", makefile, re.M).group(1).split()
    test_prereqs = re.search(r"^test:(.*)$", makefile, re.M).group(1).split()
    assert set(setup_prereqs) & set(test_prereqs), "`make setup` and `make test` no longer share their setup step"
    assert "bash scripts/setup.sh" in makefile, "the Makefile no longer runs scripts/setup.sh"
    assert "make test" in (REPO / ".ci" / "run").read_text(), "CI no longer runs `make test`"
    setup_sh = (REPO / "scripts" / "setup.sh").read_text()
    deb_pkgs = set(re.search(r'^DEB_PKGS="([^"]*)"', setup_sh, re.M).group(1).split())
    for stage in stages.values():
        commands = dockerfile_commands(stage)
        assert any(c.argv[:2] == ["make", "setup"] for c in commands), f"stage {stage.name} never runs `make setup`"
        for cmd in commands:
            words = cmd.argv
            assert not (Path(words[0]).name.startswith("pip") or words[1:3] == ["-m", "pip"]), (
                f"{cmd.where}: {' '.join(words)} -- dependencies belong in requirements/ via scripts/setup.sh"
            )
            assert not any(w.startswith("requirements/") for w in words), f"{cmd.where}: reads requirements/"
            if words[:2] == ["apt-get", "install"]:
                dup = deb_pkgs & set(words)
                assert not dup, f"{cmd.where}: {sorted(dup)} are installed by scripts/setup.sh already"


def test_run_commands_reference_existing_files_and_targets(stages):
    targets = makefile_targets()
    for stage in stages.values():
        for cmd in dockerfile_commands(stage):
            assert cmd.cwd.is_dir(), f"{cmd.where}: `cd` into missing {cmd.cwd}"
            if cmd.argv[0] == "make":
                for target in (w for w in cmd.argv[1:] if not w.startswith("-") and "=" not in w):
                    assert target in targets, f"{cmd.where}: Makefile has no target {target!r}"
            if cmd.argv[0] in ("bash", "sh", "source", "."):
                assert (cmd.cwd / cmd.argv[1]).is_file(), f"{cmd.where}: {cmd.argv[1]} missing"
            if cmd.argv[0] == "colcon":
                assert " ".join(cmd.argv) == COLCON_BUILD, f"{cmd.where}: not the tested `{COLCON_BUILD}`"
                assert cmd.cwd == REPO / "ros2_ws", f"{cmd.where}: colcon must build ros2_ws"


def test_robot_image_matches_sdk_and_builds_workspace_with_venv_colcon(stages):
    robot = stages["robot"]
    assert robot.base.startswith(f"ros:{SDK_ROS_DISTRO}-"), f"robot image {robot.base} is not ROS 2 {SDK_ROS_DISTRO}"
    colcon_runs = [i for i in robot.all("RUN") if "colcon build" in i.args]
    assert len(colcon_runs) == 1, "the robot image must build the colcon workspace exactly once"
    assert ".venv/bin" in colcon_runs[0].args, "colcon must be the venv's, so node executables start the venv Python"


def test_robot_entrypoint_launches_existing_launch_file_with_declared_arguments(stages):
    robot = stages["robot"]
    entry = exec_form(robot.all("ENTRYPOINT")[-1].args)
    cmd = exec_form(robot.all("CMD")[-1].args)
    assert entry and cmd, "robot ENTRYPOINT and CMD must be exec form"
    script = _in_image_to_repo(entry[0], robot)
    assert script == ENTRYPOINT_SCRIPT and os.access(script, os.X_OK), f"{script} missing or not executable"
    problem = launch_problem(cmd[0], cmd[1:])
    assert problem is None, f"robot image CMD: {problem}"
    volumes = {v for ins in robot.all("VOLUME") for v in (exec_form(ins.args) or ins.args.split())}
    for item in cmd[1:]:
        value = item.partition(":=")[2]
        assert any(value.startswith(v + "/") for v in volumes), f"{item}: not under a mounted volume {volumes}"


def test_sim_image_runs_an_existing_make_target(stages):
    cmd = exec_form(stages["sim"].all("CMD")[-1].args)
    assert cmd[0] == "make", cmd
    missing = [t for t in cmd[1:] if t not in makefile_targets()]
    assert not missing, f"sim image CMD runs `make {' '.join(cmd[1:])}`: the Makefile has no target {missing} (yet?)"


def test_compose_robot_service_has_gpu_host_network_and_checkpoint_volume(compose, stages):
    robot = compose["services"]["robot"]
    assert robot["network_mode"] == "host", "DDS needs the host network to reach the robot's drivers"
    devices = robot["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices), "robot service reserves no GPU"
    image_volumes = set(stages["robot"].all("VOLUME")[-1].args.split())
    mounted = {re.sub(r"\$\{[^}]*\}", "HOST", v).split(":")[1] for v in robot["volumes"]}  # ${VAR:-default}
    assert image_volumes <= mounted, f"robot service does not mount {image_volumes - mounted}"
    assert "deploy" not in compose["services"]["sim"], "the simulation service is CPU only"


def test_docker_scripts_reference_existing_repo_files():
    for script in sorted(DOCKER_DIR.glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script} is not executable"
        for rel in re.findall(r"\$WP_ROOT/([\w./-]+)", script.read_text()):
            produced = rel.startswith("ros2_ws/install") or rel.startswith(".venv")
            assert produced or (REPO / rel).exists(), f"{script.name} uses $WP_ROOT/{rel}, missing in the repo"


def test_launch_files_import_only_what_humble_python_has():
    """In the robot image `ros2 launch` runs the launch files on Humble's Python 3.10: the wp_policy modules they
    import (transitively) must parse as 3.10 and need only the standard library and ROS's launch packages."""
    launch_files = sorted((REPO / "launch").glob("*.launch.py"))
    assert launch_files, "launch/ has no launch files"
    seen: set[Path] = set()
    todo = list(launch_files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
        for module in _imported_modules(tree):
            top = module.split(".")[0]
            if top == "wp_policy":
                todo += _module_files(module)
            else:
                assert top in sys.stdlib_module_names or top in LAUNCH_TIME_PACKAGES, (
                    f"{path.relative_to(REPO)} imports {module!r}, which Humble's Python does not have at launch time"
                )


def _imported_modules(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


def _module_files(module: str) -> list[Path]:
    """The source files Python executes for ``import module`` (package __init__ files included)."""
    base = REPO / "wp_policy"
    parts = module.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        stem = base.joinpath(*parts[:i])
        for candidate in (stem / "__init__.py", stem.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files


# ------------------------------------------------------------------------------------------- entry-point scripts
def _foreign_ros_root(tmp_path: Path) -> Path:
    """A stand-in for /opt/ros/humble: its rclpy fails loudly, its lib/ holds a bogus librcl.so."""
    root = tmp_path / "opt_ros_humble"
    pkg = root / "lib" / "python3.10" / "site-packages" / "rclpy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('the base image rclpy (Python 3.10) was imported')\n")
    (root / "lib" / "librcl.so").write_text("not a shared library\n")
    return root


_PROBE = """
import json, os, rclpy
from trajectory_msgs.msg import JointTrajectory
rclpy.init()
node = rclpy.create_node("wp_launch_prefix_probe")
node.create_publisher(JointTrajectory, "/wp/waypoints", 1)
node.destroy_node(); rclpy.shutdown()
keys = ("PYTHONPATH", "LD_LIBRARY_PATH", "AMENT_PREFIX_PATH", "ROS_AUTOMATIC_DISCOVERY_RANGE")
print(json.dumps({"rclpy": rclpy.__file__, **{k: os.environ.get(k) for k in keys}}))
"""


@pytest.mark.ros
def test_launch_prefix_runs_project_executables_on_the_venv(tmp_path):
    ros_root = _foreign_ros_root(tmp_path)
    keep = tmp_path / "workspace_python"
    keep.mkdir()
    python = Path(sys.executable)  # the venv running the tests: "inside the project" for the prefix
    env = {
        **os.environ,
        "WP_ROOT": str(python.parent.parent),
        "WP_BASE_ROS_ROOT": str(ros_root),
        "PYTHONPATH": f"{keep}:{ros_root}/lib/python3.10/site-packages",
        "LD_LIBRARY_PATH": f"{ros_root}/lib",
        "AMENT_PREFIX_PATH": f"{keep}:{ros_root}",
        "ROS_LOCALHOST_ONLY": "1",
        "ROS_DOMAIN_ID": str(spare_domain()),
    }
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    polluted = subprocess.run([str(python), "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert polluted.returncode != 0, "the stand-in base ROS did not shadow rclpy: this test would prove nothing"
    proc = subprocess.run(
        [str(LAUNCH_PREFIX_SCRIPT), str(python), "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not seen["rclpy"].startswith(str(ros_root))
    assert seen["PYTHONPATH"] == str(keep)
    assert str(ros_root) not in (seen["LD_LIBRARY_PATH"] or "")
    assert seen["AMENT_PREFIX_PATH"] == str(keep)
    assert seen["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"


def test_launch_prefix_leaves_other_executables_alone(tmp_path):
    env = {**os.environ, "WP_ROOT": str(tmp_path / "project"), "WP_BASE_ROS_ROOT": "/opt/ros/humble",
           "PYTHONPATH": "/opt/ros/humble/lib/python3.10/site-packages"}
    proc = subprocess.run([str(LAUNCH_PREFIX_SCRIPT), "/usr/bin/env"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "PYTHONPATH=/opt/ros/humble/lib/python3.10/site-packages" in proc.stdout.splitlines()


@pytest.mark.slow
def test_entrypoint_launches_through_prefix_on_colcon_install(tmp_path, colcon_workspace):
    """The entry point sources the base ROS and the workspace, then runs `ros2 launch` with the launch prefix."""
    ros_root = tmp_path / "opt_ros"
    (ros_root / "bin").mkdir(parents=True)
    record = tmp_path / "ros2_call.json"
    (ros_root / "bin" / "ros2").write_text(  # records how it was called instead of launching
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'ament': os.environ.get('AMENT_PREFIX_PATH', '')}}, "
        f"open({str(record)!r}, 'w'))\n"
    )
    (ros_root / "bin" / "ros2").chmod(0o755)
    (ros_root / "setup.bash").write_text(f'export PATH="{ros_root}/bin:$PATH"\n')
    assert all((colcon_workspace.root / p).is_file() for p in COLCON_PRODUCES)
    env = {**os.environ, "WP_ROOT": str(REPO), "WP_BASE_ROS_ROOT": str(ros_root),
           "WP_WS_INSTALL": str(colcon_workspace.install)}
    args = ["r1lite.launch.py", "device:=cpu"]
    proc = subprocess.run([str(ENTRYPOINT_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    call = json.loads(record.read_text())
    assert call["argv"] == ["launch", "--launch-prefix", str(LAUNCH_PREFIX_SCRIPT), "wp_policy", *args]
    assert str(colcon_workspace.install / "wp_policy") in call["ament"].split(":")
    other = subprocess.run([str(ENTRYPOINT_SCRIPT), "printenv", "AMENT_PREFIX_PATH"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert other.returncode == 0 and str(colcon_workspace.install / "wp_policy") in other.stdout
