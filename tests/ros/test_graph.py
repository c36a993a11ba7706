"""Graph definitions, argument handling, and that both launchers are built from them (no drift)."""

import importlib.util
import runpy
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from wp_policy.graph import GRAPHS, get_graph, parse_launch_args, resolve_graph
from wp_policy.paths import config_dir, launch_dir
from wp_policy.runtime import ReplanConfig
from wp_policy.supervisor import node_command, write_overrides

REQUIRED = {"robot": {"robot_config": "r1lite"}}  # arguments a graph cannot start without


def test_graphs_have_the_designed_nodes():
    assert [n.name for n in get_graph("r1lite").nodes] == ["aggregator", "planner", "filler", "final_hold"]
    assert get_graph("robot").nodes == get_graph("r1lite").nodes
    assert [n.name for n in get_graph("libero_sim").nodes] == ["libero_bridge", "aggregator", "planner", "filler"]
    executables = {n.name: n.executable for g in GRAPHS.values() for n in g.nodes}
    assert executables == {"aggregator": "wp_aggregator", "planner": "wp_planner", "filler": "wp_filler",
                           "libero_bridge": "wp_libero_bridge", "final_hold": "wp_final_hold"}
    assert {n.name: n.covers for n in get_graph("r1lite").nodes if n.covers} == {"final_hold": "filler"}


def test_a_covering_node_comes_with_the_node_it_covers():
    graph = get_graph("r1lite")
    assert [n.name for n in resolve_graph(graph, {}, only=["aggregator", "filler"])] == [
        "aggregator", "filler", "final_hold"]
    assert [n.name for n in resolve_graph(graph, {}, only=["planner"])] == ["planner"]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_params_file_sections_match_graph_nodes(name):
    (node,) = resolve_graph(get_graph(name), REQUIRED.get(name, {}), only=["aggregator"])
    data = yaml.safe_load(node.params_files[0].read_text())
    assert set(data) == {n.name for n in get_graph(name).nodes}
    assert all(set(section) == {"ros__parameters"} for section in data.values())


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_node_modules_that_exist_have_main(name):
    for node in get_graph(name).nodes:
        if importlib.util.find_spec(node.module) is not None or node.name == "aggregator":
            assert callable(importlib.import_module(node.module).main), node.module


def test_arguments_are_typed_and_routed_to_node_parameters():
    nodes = {n.name: n for n in resolve_graph(get_graph("libero_sim"), {"task_id": "3", "use_sim_time": "False",
                                                                        "vlm_checkpoint": "/ckpt/vlm",
                                                                        "pairs_per_plan": "2"})}
    assert nodes["libero_bridge"].parameters["task_id"] == 3
    assert nodes["planner"].parameters["checkpoint"] == "/ckpt/vlm"
    assert all(n.parameters["use_sim_time"] is False for n in nodes.values())
    assert nodes["filler"].parameters["replan_mode"] == "after_last"
    assert nodes["filler"].parameters["pairs_per_plan"] == nodes["libero_bridge"].parameters["pairs_per_plan"] == 2
    # the lookahead leads are ReplanConfig's, in seconds, as in wp-eval; the bridge records what the filler runs
    leads = {k: ReplanConfig().params()[k] for k in ("plan_lead_s", "fill_lead_s")}
    for name in ("filler", "libero_bridge"):
        assert {k: nodes[name].parameters[k] for k in leads} == leads
    assert nodes["aggregator"].parameters == {"robot_config": "libero", "use_sim_time": False}


def write_policy(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"robot": "libero", "vlm_checkpoint": "vlm", "ae_checkpoint": "/abs/ae", "stats_path": "stats.json",
            "tokenizer_path": "tok.model", "num_waypoints": 3, "num_flow_steps": 4, "seed": 5, "noise_scale": 0.5,
            "max_token_len": 99,
            **fields}
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_policy_file_sets_every_policy_setting_of_the_nodes(tmp_path):
    policy = write_policy(tmp_path / "p", device="cpu")
    nodes = {n.name: n.parameters for n in resolve_graph(get_graph("r1lite"), {"policy": str(policy)})}
    base = policy.resolve().parent
    assert {k: nodes["planner"][k] for k in ("robot_config", "checkpoint", "stats", "tokenizer", "device",
                                              "num_waypoints", "max_token_len")} == {
        "robot_config": "libero", "checkpoint": str(base / "vlm"), "stats": str(base / "stats.json"),
        "tokenizer": str(base / "tok.model"), "device": "cpu", "num_waypoints": 3, "max_token_len": 99}
    assert {k: nodes["filler"][k] for k in ("checkpoint", "num_flow_steps", "seed", "noise_scale")} == {
        "checkpoint": "/abs/ae", "num_flow_steps": 4, "seed": 5, "noise_scale": 0.5}
    assert nodes["aggregator"]["robot_config"] == nodes["final_hold"]["robot_config"] == "libero"
    assert "num_waypoints" not in nodes["filler"] and "seed" not in nodes["planner"]  # only where they act


def test_arguments_override_the_policy_file_and_fall_back_without_one(tmp_path):
    policy = write_policy(tmp_path / "p")  # no device: PolicyConfig's default, auto
    given = {"policy": str(policy), "robot_config": "r1lite", "vlm_checkpoint": "/other/vlm", "stats": "/s.json",
             "tokenizer": "/t.model", "device": "cuda:1"}
    (planner,) = resolve_graph(get_graph("r1lite"), given, only=["planner"])
    assert {k: planner.parameters[k] for k in ("robot_config", "checkpoint", "stats", "tokenizer", "device")} == {
        "robot_config": "r1lite", "checkpoint": "/other/vlm", "stats": "/s.json", "tokenizer": "/t.model",
        "device": "cuda:1"}
    assert planner.parameters["num_waypoints"] == 3  # still the file's
    (planner,) = resolve_graph(get_graph("r1lite"), {"policy": str(policy)}, only=["planner"])
    assert planner.parameters["device"] == "auto"
    for graph, robot in (("r1lite", "r1lite"), ("libero_sim", "libero")):  # no policy file: the graph's defaults
        (planner,) = resolve_graph(get_graph(graph), {}, only=["planner"])
        assert (planner.parameters["robot_config"], planner.parameters["device"]) == (robot, "auto")
        assert planner.parameters["checkpoint"] == "" and "num_waypoints" not in planner.parameters  # params file


def test_a_bad_policy_file_is_an_argument_error(tmp_path):
    with pytest.raises(ValueError, match=r"argument policy: .*nowhere.yaml: config file not found"):
        resolve_graph(get_graph("r1lite"), {"policy": str(tmp_path / "nowhere.yaml")})
    with pytest.raises(ValueError, match="argument policy: .*num_flow_steps must be >= 1, got 0"):
        resolve_graph(get_graph("r1lite"), {"policy": str(write_policy(tmp_path / "p", num_flow_steps=0))})
    with pytest.raises(ValueError, match="argument policy: .*noise_scale must be a finite number >= 0, got -1"):
        resolve_graph(get_graph("r1lite"), {"policy": str(write_policy(tmp_path / "n", noise_scale=-1))})
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_graph(get_graph("r1lite"), {"policy": str(write_policy(tmp_path / "q", device="gpu"))})


def test_reading_the_policy_file_needs_neither_torch_nor_rclpy(tmp_path):
    """``ros2 launch`` resolves the graph in ROS's own Python, where the project's torch is not importable."""
    policy = write_policy(tmp_path / "p")
    code = ("import sys\nfrom wp_policy.graph import get_graph, resolve_graph\n"
            f"resolve_graph(get_graph('r1lite'), {{'policy': {str(policy)!r}}})\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rclpy', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "values, match",
    [
        ({"nonsense": "1"}, "unknown argument"),
        ({"use_sim_time": "yes"}, "use_sim_time: 'yes' is not a valid bool"),
        ({"task_id": "x"}, "task_id: 'x' is not a valid int"),
        ({"replan_mode": "never"}, "replan_mode: 'never' is not one of"),
        ({"pairs_per_plan": "-1"}, r"arguments: pairs_per_plan must be >= 0 \(0: every pair of a plan\), got -1"),
        ({"plan_lead_s": "-1"}, r"arguments: plan_lead_s must be a number of seconds >= 0, got -1\.0"),
        ({"params_file": "graphs/missing.yaml"}, "params file 'graphs/missing.yaml' not found"),
    ],
)
def test_bad_arguments_name_the_problem(values, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        resolve_graph(get_graph("libero_sim"), values)


def test_a_params_file_that_sets_a_launch_argument_is_refused(tmp_path):
    """An argument always wins over the params file: a file that sets the same parameter would be ignored."""
    data = yaml.safe_load((config_dir() / "graphs" / "libero_sim.yaml").read_text())
    data["filler"]["ros__parameters"]["plan_lead_s"] = 0.2  # where the lead lived before it was an argument
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"sets filler\.plan_lead_s \(argument plan_lead_s\): launch arguments"):
        resolve_graph(get_graph("libero_sim"), {"params_file": str(tmp_path / "params.yaml")})


def test_parse_launch_args_and_node_selection():
    assert parse_launch_args(["a:=1", "b:=x:=y", "c:="]) == {"a": "1", "b": "x:=y", "c": ""}
    with pytest.raises(ValueError, match="expected name:=value"):
        parse_launch_args(["a=1"])
    with pytest.raises(ValueError, match="no node"):
        resolve_graph(get_graph("r1lite"), {}, only=["camera"])


def test_supervisor_command_uses_params_files_then_typed_overrides(tmp_path):
    (node,) = resolve_graph(get_graph("r1lite"), {"use_sim_time": "true"}, only=["aggregator"])
    overrides = write_overrides(node, tmp_path)
    cmd = node_command(node, overrides)
    assert cmd[1:4] == ["-m", "wp_policy.ros.aggregator_node", "--ros-args"]
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--params-file"]
    assert files == [str(node.params_files[0]), str(overrides)]
    assert "__node:=aggregator" in cmd
    assert yaml.safe_load(overrides.read_text()) == {
        "aggregator": {"ros__parameters": {"robot_config": "r1lite", "use_sim_time": True}}}


# ------------------------------------------------------------------ launch files, run against a recording fake
class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Action):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _fake_launch_modules():
    """Stand-ins for the ROS ``launch``/``launch_ros`` packages (not installable here) that record every call."""
    mods = {name: types.ModuleType(name) for name in
            ("launch", "launch.actions", "launch.event_handlers", "launch.substitutions", "launch_ros",
             "launch_ros.actions")}
    mods["launch"].LaunchDescription = type("LaunchDescription", (_Action,), {})
    mods["launch"].LaunchContext = object
    mods["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (_Action,), {})
    mods["launch.actions"].OpaqueFunction = type("OpaqueFunction", (_Action,), {})
    mods["launch.actions"].Shutdown = type("Shutdown", (_Action,), {})
    mods["launch.actions"].RegisterEventHandler = type("RegisterEventHandler", (_Action,), {})
    mods["launch.event_handlers"].OnProcessExit = type("OnProcessExit", (_Action,), {})
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (_Action,), {})
    return mods


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_launch_file_is_built_from_the_graph(name, monkeypatch, request):
    path = launch_dir() / f"{name}.launch.py"
    assert "graph_launch_description" in path.read_text()
    for mod_name, mod in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, mod_name, mod)
    sys.modules.pop("wp_policy.ros.launch_description", None)  # import it against the fakes, forget it afterwards
    request.addfinalizer(lambda: sys.modules.pop("wp_policy.ros.launch_description", None))
    ld = runpy.run_path(str(path))["generate_launch_description"]()
    *declared, opaque = ld.args[0]
    graph = get_graph(name)
    assert [d.args[0] for d in declared] == [a.name for a in graph.arguments]
    assert all(d.kwargs["default_value"] == a.default and d.kwargs["description"] == a.help
               for d, a in zip(declared, graph.arguments))
    values = {a.name: a.default for a in graph.arguments} | {"use_sim_time": "true", "device": "cuda:1"} | \
        REQUIRED.get(name, {})
    context = types.SimpleNamespace(launch_configurations=values)
    actions = opaque.kwargs["function"](context, *opaque.kwargs["args"])
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    handlers = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    resolved = resolve_graph(graph, values)
    expected = [e for e in resolved if not e.covers]
    by_name = {n.kwargs["name"]: n for n in nodes}
    assert [(h.args[0].kwargs["target_action"], [a.kwargs["name"] for a in h.args[0].kwargs["on_exit"]])
            for h in handlers] == [(by_name[e.covers], [e.name]) for e in resolved if e.covers]
    assert [n.kwargs["executable"] for n in nodes] == [e.executable for e in expected]
    assert [n.kwargs["name"] for n in nodes] == [e.name for e in expected]
    assert [n.kwargs["parameters"] for n in nodes] == [[str(e.params_files[0]), dict(e.parameters)] for e in expected]
    assert all(n.kwargs["package"] == "wp_policy" for n in nodes)
    assert [n.kwargs["name"] for n in nodes if "on_exit" in n.kwargs] == [e.name for e in expected if e.ends_graph]
    assert Path(str(nodes[0].kwargs["parameters"][0])).is_file()


def test_docs_cover_every_argument_and_aggregator_parameter():
    from wp_policy.ros.aggregator_node import PARAMS

    text = (config_dir().parent / "docs" / "ros_graph.md").read_text()
    names = {a.name for g in GRAPHS.values() for a in g.arguments} | set(PARAMS)
    assert not [n for n in sorted(names) if f"`{n}`" not in text]


def _robot_yaml(folder: Path) -> Path:
    """The R1 Lite's config copied somewhere outside configs/ under another name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_robot.yaml"
    path.write_text((config_dir() / "robots" / "r1lite.yaml").read_text())
    return path


def test_the_robot_graph_needs_a_robot_and_takes_a_yaml_from_anywhere(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"graph robot: argument robot_config is required .*give robot_config:=<value> "
                                         r"or a policy file \(policy:=\) whose robot names it"):
        resolve_graph(get_graph("robot"), {})
    robot = _robot_yaml(tmp_path / "robots")
    monkeypatch.chdir(tmp_path)
    nodes = resolve_graph(get_graph("robot"), {"robot_config": "robots/my_robot.yaml"})
    assert {n.parameters["robot_config"] for n in nodes} == {str(robot.resolve())}  # absolute: nodes start anywhere
    assert [n.params_files[0].name for n in nodes] == ["robot.yaml"] * 4
    with pytest.raises(ValueError, match="argument robot_config: robot YAML 'robots/nope.yaml' not found"):
        resolve_graph(get_graph("robot"), {"robot_config": "robots/nope.yaml"})
    (planner,) = resolve_graph(get_graph("r1lite"), {"robot_config": "robots/my_robot.yaml"}, only=["planner"])
    assert planner.parameters["robot_config"] == str(robot.resolve())  # the R1 Lite graph takes one too


def test_a_policy_files_robot_yaml_is_relative_to_the_policy_file(tmp_path):
    robot = _robot_yaml(tmp_path / "p")
    policy = write_policy(tmp_path / "p", robot="my_robot.yaml")
    (planner,) = resolve_graph(get_graph("robot"), {"policy": str(policy)}, only=["planner"])
    assert planner.parameters["robot_config"] == str(robot.resolve())
    (planner,) = resolve_graph(get_graph("robot"), {"policy": str(write_policy(tmp_path / "q", robot="r1lite"))},
                               only=["planner"])
    assert planner.parameters["robot_config"] == "r1lite"  # a name stays a name
