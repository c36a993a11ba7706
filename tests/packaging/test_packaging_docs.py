"""No untested instructions: every shell command in docs/install.md and docs/deploy.md that names something of the
project is checked against it. Makefile targets, files, compose services, console scripts and launch files must
exist; launch arguments go through the graph resolver the launch files use; documented `wp-launch` commands run for
real with --print and other documented console scripts answer --help; the colcon command is exactly the one the
colcon test runs; a message published on a /wp/ topic has the contract's type and builds into a real message that
the project's own conversion reads as a stop.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from packaging_facts import (
    COLCON_BUILD,
    COLCON_PRODUCES,
    COMPOSE_FILE,
    DOCKERFILE,
    DOCS,
    REPO,
    ROS_PACKAGE,
    WORKSPACE,
    Command,
    console_scripts,
    doc_commands,
    exec_form,
    launch_problem,
    load_compose,
    makefile_targets,
    parse_dockerfile,
    ros_console_scripts,
)

# docs/ros_graph.md (Topics and QoS): the message type of each operator-facing /wp/ topic.
TOPIC_TYPES = {"/wp/waypoints": "trajectory_msgs/msg/JointTrajectory", "/wp/instruction": "std_msgs/msg/String"}
REPO_PATH = re.compile(r"^(?:\./)?((?:scripts|docker|launch|configs|tests|requirements|docs|ros2_ws|bench)/[\w./-]*)$")
# docker compose options that take a value (global, and for `run` / `build`)
COMPOSE_VALUE_OPTS = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "-e", "--env", "-v",
                      "--volume", "--name", "-u", "--user", "-w", "--workdir", "--entrypoint", "--build-arg"}


class DocChecker:
    """Checks one documented command; ``problems`` collects what is wrong, ``checked`` counts project commands."""

    def __init__(self):
        self.problems: list[str] = []
        self.checked = 0
        self.targets = makefile_targets()
        self.compose = load_compose()
        self.stages = {s.name: s for s in parse_dockerfile(DOCKERFILE)}

    def fail(self, cmd: Command, why: str) -> None:
        self.problems.append(f"{cmd.where}: `{' '.join(cmd.argv)}`: {why}")

    def check(self, cmd: Command) -> None:
        argv = [a.replace("$PWD", str(cmd.cwd)) for a in cmd.argv]
        cmd = Command(argv, cmd.cwd, cmd.where)
        self._check_repo_paths(cmd)
        name = Path(argv[0]).name
        handler = {"make": self._make, "colcon": self._colcon, "ros2": self._ros2, "docker": self._docker,
                   "source": self._source, ".": self._source, "bash": self._source}.get(argv[0])
        if handler:
            handler(cmd)
        elif name in console_scripts() or name.startswith("wp-") or name.startswith("wp_"):
            self._console_script(cmd, name)
        elif argv[0].endswith("ros_entrypoint.sh"):
            self._robot_entrypoint(cmd, argv[1:])

    def _check_repo_paths(self, cmd: Command) -> None:
        for word in cmd.argv:
            m = REPO_PATH.match(word)
            if m and not (REPO / m.group(1)).exists() and not self._produced(REPO / m.group(1)):
                self.fail(cmd, f"{m.group(1)} does not exist")

    @staticmethod
    def _produced(path: Path) -> bool:
        return any(path.resolve() == (WORKSPACE / p).resolve() for p in COLCON_PRODUCES)

    def _make(self, cmd: Command) -> None:
        self.checked += 1
        for target in (w for w in cmd.argv[1:] if not w.startswith("-") and "=" not in w):
            if target not in self.targets:
                self.fail(cmd, f"the Makefile has no target {target!r}")

    def _colcon(self, cmd: Command) -> None:
        self.checked += 1
        if " ".join(cmd.argv) != COLCON_BUILD:
            self.fail(cmd, f"the tested workspace build is `{COLCON_BUILD}`")
        if cmd.cwd != WORKSPACE:
            self.fail(cmd, f"runs in {cmd.cwd}, not in {WORKSPACE}")

    def _source(self, cmd: Command) -> None:
        script = cmd.argv[1] if len(cmd.argv) > 1 else ""
        if script.startswith("/") or script.startswith("-") or not script:
            return  # a system file (/opt/ros/...) or an option
        self.checked += 1
        path = cmd.cwd / script
        if not path.is_file() and not self._produced(path):
            self.fail(cmd, f"{path} does not exist and is not produced by `{COLCON_BUILD}`")

    def _ros2(self, cmd: Command) -> None:
        verb = cmd.argv[1] if len(cmd.argv) > 1 else ""
        words = cmd.argv[2:]
        if verb == "launch":
            self.checked += 1
            positional = _drop_options(words, {"--launch-prefix", "--launch-prefix-filter"})
            if positional[:1] != [ROS_PACKAGE]:
                self.fail(cmd, f"launches package {positional[:1]}, not {ROS_PACKAGE}")
            elif len(positional) < 2:
                self.fail(cmd, "no launch file")
            else:
                self._launch(cmd, positional[1], positional[2:])
        elif verb == "run":
            self.checked += 1
            if words[:1] != [ROS_PACKAGE] or words[1:2] and words[1] not in ros_console_scripts():
                self.fail(cmd, f"{words[:2]} is not an executable of {ROS_PACKAGE} (setup.py console_scripts)")
        elif verb == "topic" and words[:1] == ["pub"]:
            self._topic_pub(cmd, _drop_options(words[1:], {"-r", "--rate", "-t", "--times", "--qos-profile",
                                                           "--qos-depth", "--qos-history", "--qos-reliability",
                                                           "--qos-durability", "-w",
                                                           "--wait-matching-subscriptions"}))

    def _launch(self, cmd: Command, file_name: str, args: list[str]) -> None:
        if "--show-args" in args or "-s" in args:
            args = [a for a in args if a not in ("--show-args", "-s")]
        problem = launch_problem(file_name, args)
        if problem:
            self.fail(cmd, problem)

    def _topic_pub(self, cmd: Command, positional: list[str]) -> None:
        if len(positional) < 2 or positional[0] not in TOPIC_TYPES:
            return
        self.checked += 1
        topic, type_name = positional[0], positional[1]
        if type_name != TOPIC_TYPES[topic]:
            self.fail(cmd, f"{topic} carries {TOPIC_TYPES[topic]}, not {type_name}")
            return
        try:
            msg = build_message(type_name, yaml.safe_load(positional[2]) if len(positional) > 2 else {})
        except (AttributeError, TypeError, ValueError, AssertionError, yaml.YAMLError) as exc:
            self.fail(cmd, f"the message does not build as {type_name}: {exc}")
            return
        if topic == "/wp/waypoints" and not is_stop(msg):
            self.fail(cmd, "the documented waypoint message is not a stop (first point time_from_start 0)")

    def _console_script(self, cmd: Command, name: str) -> None:
        self.checked += 1
        scripts = console_scripts()
        if name not in scripts:
            self.fail(cmd, f"{name} is not a registered console script (setup.py / pyproject.toml)")
            return
        args = cmd.argv[1:]
        if name == "wp-launch" and "--show-args" not in args:
            args = [*args, "--print"]  # resolves the graph, the nodes and every argument without starting anything
        elif "--show-args" not in args:
            args = ["--help"]
        proc = run_console_script(scripts[name], name, args)
        if proc.returncode != 0:
            self.fail(cmd, f"`{name} {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[-600:]}")

    def _robot_entrypoint(self, cmd: Command, args: list[str]) -> None:
        self.checked += 1
        if args and args[0].endswith(".launch.py"):
            self._launch(cmd, args[0], args[1:])
        elif args:
            self.check(Command(args, REPO, cmd.where))

    def _docker(self, cmd: Command) -> None:
        if cmd.argv[1:2] != ["compose"]:
            return
        self.checked += 1
        words = cmd.argv[2:]
        files = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-f", "--file")]
        if [(cmd.cwd / f).resolve() for f in files] != [COMPOSE_FILE]:
            self.fail(cmd, f"use -f {COMPOSE_FILE.relative_to(REPO)}")
            return
        positional = _drop_options(words, COMPOSE_VALUE_OPTS)
        sub, rest = positional[0], positional[1:]
        services = self.compose["services"]
        named = rest[:1] if sub in ("run", "exec") else rest
        for service in named:
            if service not in services:
                self.fail(cmd, f"compose has no service {service!r}")
                return
        if sub == "run":
            self._compose_run(cmd, rest[0], rest[1:])

    def _compose_run(self, cmd: Command, service: str, inner: list[str]) -> None:
        stage = self.stages[self.compose["services"][service]["build"]["target"]]
        has_entrypoint = bool(stage.all("ENTRYPOINT"))
        if not inner:
            inner = exec_form(stage.all("CMD")[-1].args)
        if has_entrypoint:
            self._robot_entrypoint(cmd, inner)
        else:
            self.check(Command(inner, REPO, cmd.where))


def _drop_options(words: list[str], with_value: set[str]) -> list[str]:
    """Positional words, skipping options (and the value of those in ``with_value``)."""
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in with_value:
            skip = True
        elif not w.startswith("-") or w == "-":
            out.append(w)
    return out


def run_console_script(target: str, name: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run a console script's ``module:function`` as its installed wrapper would, in a fresh interpreter."""
    module, _, func = target.partition(":")
    code = f"import sys; sys.argv = [{name!r}, *sys.argv[1:]]; from {module} import {func} as f; sys.exit(f())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def build_message(type_name: str, data: dict):
    """``ros2 topic pub``'s YAML -> a real message object; unknown fields and wrong types raise."""
    pkg, _, cls = type_name.partition("/msg/")
    return _set_fields(getattr(importlib.import_module(f"{pkg}.msg"), cls)(), data or {})


def _set_fields(msg, data: dict):
    assert isinstance(data, dict), f"expected a mapping for {type(msg).__name__}, got {data!r}"
    types = msg.get_fields_and_field_types()
    for key, value in data.items():
        assert key in types, f"{type(msg).__name__} has no field {key!r}"
        field_type = types[key]
        nested = re.fullmatch(r"(sequence<)?(\w+)/(\w+)>?", field_type)
        if nested:
            cls = getattr(importlib.import_module(f"{nested.group(2)}.msg"), nested.group(3))
            value = [_set_fields(cls(), v) for v in value] if nested.group(1) else _set_fields(cls(), value)
        setattr(msg, key, value)
    return msg


def is_stop(msg) -> bool:
    """Read a JointTrajectory as the graph does (wp_policy's conversion and Plan) and ask whether it stops."""
    from wp_policy.ros.conversions import trajectory_arrays
    from wp_policy.runtime.plan import Plan

    _, positions, times = trajectory_arrays(msg)
    return Plan.from_times(positions, list(times), control_period=1.0 / 15.0, stamp_ns=0).is_stop


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_commands_exist_and_are_the_tested_ones(doc):
    assert doc.is_file(), f"{doc} missing"
    checker = DocChecker()
    for cmd in doc_commands(doc):
        checker.check(cmd)
    assert checker.checked, f"{doc.name}: no project command found in its shell blocks"
    assert not checker.problems, "\n".join(checker.problems)


def test_deploy_doc_shows_the_tested_workspace_build_and_stop():
    commands = [" ".join(c.argv) for c in doc_commands(REPO / "docs" / "deploy.md")]
    assert COLCON_BUILD in commands, f"docs/deploy.md does not show `{COLCON_BUILD}`"
    assert any(c.startswith("ros2 topic pub --once /wp/waypoints") for c in commands), "no stop command"
    assert any(c.endswith("wp-stop") or " wp-stop" in c for c in commands), "no wp-stop command"


def test_checker_catches_wrong_commands():
    """The checker itself: each of these made-up instructions must be reported."""
    bad = [
        "make no-such-target",
        "cd ros2_ws && colcon build",
        "source scripts/nope.sh",
        "ros2 launch wp_policy no_such.launch.py",
        "ros2 launch wp_policy r1lite.launch.py no_such_arg:=1",
        "ros2 topic pub --once /wp/waypoints std_msgs/msg/String '{data: x}'",
        "ros2 topic pub --once /wp/waypoints trajectory_msgs/msg/JointTrajectory "
        "'{points: [{time_from_start: {sec: 1, nanosec: 0}}]}'",
        "ros2 topic pub --once /wp/waypoints trajectory_msgs/msg/JointTrajectory '{pointz: []}'",
        "docker compose -f docker/compose.yaml up no_such_service",
        "docker compose -f docker/compose.yaml run --rm robot no_such.launch.py",
        "wp-no-such-command",
    ]
    from packaging_facts import commands_in

    for line in bad:
        checker = DocChecker()
        for cmd in commands_in(line, REPO, "made-up"):
            checker.check(cmd)
        assert checker.problems, f"not caught: {line}"
