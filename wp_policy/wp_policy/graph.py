"""The ROS 2 graphs, defined once as data and read by BOTH launchers, so they cannot drift.

``ros2 launch wp_policy r1lite.launch.py`` (a ROS install, via ``wp_policy.ros.launch_description``) and
``wp-launch r1lite`` (a pip install, via ``wp_policy.supervisor``) both call :func:`resolve_graph` on the graph named
here and start exactly the nodes, parameters files, parameters and remappings it returns. The ``robot`` graph is the
R1 Lite's node set for any robot YAML (``robot_config:=``, required): a new robot needs a config, not code.

Format: a :class:`GraphSpec` has launch arguments (name, default, description, type) and nodes. A :class:`GraphNode`
names its ROS node, its installed executable (console script, ``lib/wp_policy/<executable>``), the module that
``python -m`` runs, which node parameters take which argument's value (``arg_params``) and which take a policy-file
setting (``policy_params``), its remappings, and whether its exit ends the run (``ends_graph``: a simulation bridge
that runs a finite episode list), or whether it is a one-shot node started only once another node is gone
(``covers``: the final hold that commands the robot when the filler has died without sending its own). Every node
also reads the graph's params YAML (argument ``params_file``; relative paths resolve in the wp_policy configs dir,
keyed by node name under ``ros__parameters``) and gets the graph-wide ``common_params`` (robot config, sim time).

The policy file (argument ``policy``, a :class:`wp_policy.policy_config.PolicyConfig` YAML) is the one place a
policy's settings live, as in wp-eval and wp-demo: every setting reaches the nodes it affects. An argument bound
to a policy setting (``policy_field``: the robot, the four paths, the device) overrides it when given; left empty,
it takes the policy file's value, or its ``fallback`` without a policy file. Precedence, lowest first: the params
YAML, the policy file, the arguments given. Adding a node is adding a GraphNode entry; no launcher changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wp_policy.paths import config_dir
from wp_policy.policy_config import ROBOT_YAML_SUFFIXES, PolicyConfig, load_policy_config
from wp_policy.runtime.replan import PAIR_STARTS, REPLAN_MODES, ReplanConfig

ArgType = Literal["str", "float", "int", "bool"]
PARAMS_FILE_ARG = "params_file"
POLICY_ARG = "policy"
ROBOT_ARG = "robot_config"
STARTUP_FAILURE = "cannot start: "  # a node logs this, then the reason on the same line, then exits 1 (node_main)


@dataclass(frozen=True)
class GraphArgument:
    name: str
    default: str  # launch arguments are strings; ``type`` says how nodes receive the value
    description: str
    type: ArgType = "str"
    choices: tuple[str, ...] = ()
    policy_field: str = ""  # a PolicyConfig field this argument overrides; its default must then be ""
    fallback: str = ""  # policy_field arguments: the value when neither the argument nor a policy file gives one
    required: bool = False  # an empty value (after the policy file and the fallback) is an error

    def __post_init__(self):
        if self.choices and self.default not in self.choices:
            raise ValueError(f"argument {self.name}: default {self.default!r} is not one of {list(self.choices)}")
        if self.policy_field and (self.default or self.type != "str"
                                  or self.policy_field not in PolicyConfig.__dataclass_fields__):
            raise ValueError(f"argument {self.name}: a policy_field argument is a str defaulting to '' and names a "
                             f"PolicyConfig field, got {self.policy_field!r}")
        convert_argument(self, self.default)

    def convert(self, value: str) -> Any:
        return convert_argument(self, value)

    @property
    def help(self) -> str:
        """The description with where an empty value comes from (--show-args, ros2 launch --show-args)."""
        if not self.policy_field:
            return self.description
        fallback = f", else {self.fallback!r}" if self.fallback else (", else required" if self.required else "")
        return f"{self.description} (empty: the policy file's {self.policy_field}{fallback})"


@dataclass(frozen=True)
class GraphNode:
    name: str  # ROS node name; also its key in the params YAML
    executable: str  # installed executable / console script (ros2 launch)
    module: str  # module with main(), run as ``python -m`` (wp-launch)
    arg_params: Mapping[str, str] = field(default_factory=dict)  # node parameter -> graph argument
    policy_params: Mapping[str, str] = field(default_factory=dict)  # node parameter -> PolicyConfig field
    remaps: tuple[tuple[str, str], ...] = ()
    ends_graph: bool = False  # the run is over when this node exits (exit 0: success; e.g. a finite episode list)
    covers: str = ""  # not started with the graph: run once the named node has died without a clean exit


@dataclass(frozen=True)
class GraphSpec:
    name: str
    description: str
    arguments: tuple[GraphArgument, ...]
    nodes: tuple[GraphNode, ...]
    common_params: Mapping[str, str] = field(default_factory=dict)  # parameter -> argument, for every node

    def __post_init__(self):
        args = [a.name for a in self.arguments]
        nodes = [n.name for n in self.nodes]
        for kind, names in (("argument", args), ("node", nodes)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"graph {self.name}: duplicate {kind} names {dupes}")
        if PARAMS_FILE_ARG not in args:
            raise ValueError(f"graph {self.name}: every graph needs a {PARAMS_FILE_ARG!r} argument")
        bad = [n.name for n in self.nodes if n.covers and (n.covers not in nodes or n.ends_graph)]
        if bad:
            raise ValueError(f"graph {self.name}: nodes {bad} cover a node the graph lacks (or also end the graph)")
        for owner, mapping in [("common_params", self.common_params), *((n.name, n.arg_params) for n in self.nodes)]:
            unknown = sorted(set(mapping.values()) - set(args))
            if unknown:
                raise ValueError(f"graph {self.name}: {owner} refers to undeclared arguments {unknown}")
        for n in (n for n in self.nodes if n.policy_params):
            unknown = sorted(set(n.policy_params.values()) - set(PolicyConfig.__dataclass_fields__))
            if unknown:
                raise ValueError(f"graph {self.name}: node {n.name}: {unknown} are not PolicyConfig fields")
            if POLICY_ARG not in args:
                raise ValueError(f"graph {self.name}: node {n.name} takes policy settings but there is no "
                                 f"{POLICY_ARG!r} argument")

    def argument(self, name: str) -> GraphArgument:
        for arg in self.arguments:
            if arg.name == name:
                return arg
        raise KeyError(f"graph {self.name} has no argument {name!r}; arguments: {[a.name for a in self.arguments]}")


@dataclass(frozen=True)
class ResolvedNode:
    """One node ready to start: what both launchers turn into a process."""

    name: str
    executable: str
    module: str
    params_files: tuple[Path, ...]
    parameters: Mapping[str, Any]  # typed values, applied after the params files
    remaps: tuple[tuple[str, str], ...]
    ends_graph: bool = False
    covers: str = ""


def convert_argument(arg: GraphArgument, value: str) -> Any:
    """Launch-argument string -> typed parameter value; ValueError names the argument."""
    if arg.choices and value not in arg.choices:
        raise ValueError(f"argument {arg.name}: {value!r} is not one of {list(arg.choices)}")
    try:
        if arg.type == "bool":
            if value.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return value.lower() == "true"
        if arg.type in ("int", "float"):
            return int(value) if arg.type == "int" else float(value)
    except ValueError as exc:
        raise ValueError(f"argument {arg.name}: {value!r} is not a valid {arg.type} ({exc})") from None
    return value


def resolve_params_file(value: str) -> Path:
    """A params YAML path as given, or relative to the wp_policy configs dir; must exist."""
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.is_file():
        path = config_dir() / value
    if not path.is_file():
        raise FileNotFoundError(f"params file {value!r} not found (also looked in {config_dir()})")
    return path.resolve()


def check_params_file(graph: GraphSpec, path: Path) -> None:
    """Refuse a params YAML that sets a node parameter a launch argument sets: the argument would silently win
    (e.g. ``plan_lead_s`` in an older params file, now the ``plan_lead_s`` launch argument)."""
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    shadowed = [f"{n.name}.{p} (argument {a})" for n in graph.nodes
                for p, a in {**graph.common_params, **n.arg_params}.items()
                if p in ((data.get(n.name) or {}).get("ros__parameters") or {})]
    if shadowed:
        raise ValueError(f"params file {path} sets {', '.join(shadowed)}: launch arguments set these; remove them "
                         f"from the file and pass name:=value instead")


def parse_launch_args(items: list[str]) -> dict[str, str]:
    """``["name:=value", ...]`` (ros2 launch syntax) -> dict; a ValueError names a malformed item."""
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch argument {item!r}: expected name:=value")
        out[name] = value
    return out


def load_graph_policy(value: str) -> PolicyConfig | None:
    """The policy file a ``policy:=`` value names (relative: to the current directory), None for ""."""
    if not value:
        return None
    try:
        return load_policy_config(Path(value).expanduser())
    except ValueError as exc:  # ConfigError: missing file, unknown key, bad value
        raise ValueError(f"argument {POLICY_ARG}: {exc}") from None


def argument_values(graph: GraphSpec, values: Mapping[str, str]) -> tuple[dict[str, Any], PolicyConfig | None]:
    """Typed value of every argument (given, else the policy file's for a policy_field argument, else its default or
    fallback) and the policy file, if one is given."""
    known = {a.name for a in graph.arguments}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"graph {graph.name}: unknown argument(s) {unknown}; arguments: {sorted(known)}")
    policy = load_graph_policy(values.get(POLICY_ARG, "")) if POLICY_ARG in known else None
    raw = {a.name: values.get(a.name, a.default) for a in graph.arguments}
    for a in graph.arguments:
        if a.policy_field and not raw[a.name]:
            raw[a.name] = str(getattr(policy, a.policy_field)) if policy is not None else a.fallback
        if a.required and not raw[a.name]:
            policy_hint = f" or a policy file (policy:=) whose {a.policy_field} names it" if a.policy_field else ""
            raise ValueError(f"graph {graph.name}: argument {a.name} is required ({a.description}); give "
                             f"{a.name}:=<value>{policy_hint}")
    if raw.get(ROBOT_ARG):
        raw[ROBOT_ARG] = robot_config_value(raw[ROBOT_ARG])
    typed = {a.name: a.convert(raw[a.name]) for a in graph.arguments}
    if set(REPLAN_PARAMS) <= set(typed):  # checked before any node starts
        try:
            ReplanConfig.from_params(typed)
        except ValueError as exc:
            raise ValueError(f"graph {graph.name}: arguments: {exc}") from None
    return typed, policy


def robot_config_value(value: str) -> str:
    """A robot YAML path made absolute (the nodes may start elsewhere) and checked before any node starts; a
    configs/robots name as it is."""
    path = Path(value).expanduser()
    if path.suffix not in ROBOT_YAML_SUFFIXES:
        return value
    if not path.is_file():
        raise ValueError(f"argument {ROBOT_ARG}: robot YAML {value!r} not found")
    return str(path.resolve())


def resolve_graph(graph: GraphSpec, values: Mapping[str, str], only: list[str] | None = None) -> list[ResolvedNode]:
    """Argument values (strings; missing ones take defaults) -> the nodes to start, optionally only some by name
    (a node that ``covers`` another comes along with it)."""
    typed, policy = argument_values(graph, values)
    params_file = resolve_params_file(typed[PARAMS_FILE_ARG])
    check_params_file(graph, params_file)
    nodes = graph.nodes
    if only is not None:
        missing = sorted(set(only) - {n.name for n in nodes})
        if missing:
            raise ValueError(f"graph {graph.name} has no node(s) {missing}; nodes: {[n.name for n in nodes]}")
        nodes = tuple(n for n in nodes if n.name in only or n.covers in only)
    return [
        ResolvedNode(
            name=n.name,
            executable=n.executable,
            module=n.module,
            params_files=(params_file,),
            parameters={**{p: typed[a] for p, a in {**graph.common_params, **n.arg_params}.items()},
                        **({p: getattr(policy, f) for p, f in n.policy_params.items()} if policy is not None else {})},
            remaps=n.remaps,
            ends_graph=n.ends_graph,
            covers=n.covers,
        )
        for n in nodes
    ]


# ---------------------------------------------------------------------------------------------------- definitions
def _policy_args(robot: str) -> tuple[GraphArgument, ...]:
    """The policy file and the arguments that override its settings (``robot``: the graph's robot without one;
    "": the robot must be named)."""
    return (
        GraphArgument(POLICY_ARG, "", "policy file: a PolicyConfig YAML (robot, checkpoints, stats, tokenizer, device, "
                      "num_waypoints, num_flow_steps, seed, noise_scale, max_token_len; relative paths in it: to the file)"),
        GraphArgument(ROBOT_ARG, "", "robot config name (configs/robots/) or robot YAML path (any directory)",
                      policy_field="robot", fallback=robot, required=not robot),
        GraphArgument("vlm_checkpoint", "", "VLM planner checkpoint (safetensors file or checkpoint directory)",
                      policy_field="vlm_checkpoint"),
        GraphArgument("ae_checkpoint", "", "Action Expert checkpoint (safetensors file or checkpoint directory)",
                      policy_field="ae_checkpoint"),
        GraphArgument("stats", "", "normalisation stats JSON shared by the VLM and the AE", policy_field="stats_path"),
        GraphArgument("tokenizer", "", "SentencePiece tokenizer model (PaliGemma's or a compatible one)",
                      policy_field="tokenizer_path"),
        GraphArgument("device", "", "torch device for the models: auto (CUDA when available, otherwise the CPU with "
                      "a warning), cpu, cuda or cuda:N", policy_field="device", fallback="auto"),
    )


POLICY_OVERRIDES = {a.policy_field: a.name for a in _policy_args("") if a.policy_field}  # field -> its argument


def _run_args() -> tuple[GraphArgument, ...]:
    """The instruction and the filler's ReplanConfig (defaults: ReplanConfig's, as in wp-eval)."""
    replan = {name: str(value) for name, value in ReplanConfig().params().items()}
    return (
        GraphArgument("instruction", "", "task instruction to start with (empty: wait for /wp/instruction)"),
        GraphArgument("replan_mode", replan["replan_mode"], "when the filler asks for the next plan",
                      choices=REPLAN_MODES),
        GraphArgument("pairs_per_plan", replan["pairs_per_plan"], "pairs of each plan the filler runs before asking "
                      "for the next plan (0: all)", type="int"),
        GraphArgument("plan_lead_s", replan["plan_lead_s"], "lookahead: ask for the next plan once at most this many "
                      "seconds of motion are queued (cover the VLM + AE latency)", type="float"),
        GraphArgument("fill_lead_s", replan["fill_lead_s"], "lookahead: also fill the pairs that start within this "
                      "many seconds (cover the AE latency)", type="float"),
        GraphArgument("pair_start", replan["pair_start"], "where each pair's fill starts: the previous planned "
                      "waypoint, or (after_last only) the proprio measured when the pair starts", choices=PAIR_STARTS),
    )


REPLAN_PARAMS = {name: name for name in ReplanConfig().params()}  # node parameter -> the argument of that name


AGGREGATOR = GraphNode("aggregator", "wp_aggregator", "wp_policy.ros.aggregator_node")
PLANNER = GraphNode(
    "planner", "wp_planner", "wp_policy.ros.planner_node",
    arg_params={"checkpoint": "vlm_checkpoint", "stats": "stats", "tokenizer": "tokenizer",
                "instruction": "instruction", "device": "device"},
    policy_params={"num_waypoints": "num_waypoints", "max_token_len": "max_token_len"},
)
FILLER = GraphNode(
    "filler", "wp_filler", "wp_policy.ros.filler_node",
    arg_params={"checkpoint": "ae_checkpoint", "stats": "stats", "tokenizer": "tokenizer",
                "instruction": "instruction", **REPLAN_PARAMS, "device": "device", "clock_mode": "clock_mode"},
    policy_params={"num_flow_steps": "num_flow_steps", "seed": "seed", "noise_scale": "noise_scale"},
)
LIBERO_BRIDGE = GraphNode(
    "libero_bridge", "wp_libero_bridge", "wp_policy.ros.libero_bridge_node",
    arg_params={"env": "env", "task_id": "task_id", "trials": "trials", "seed": "seed", "max_steps": "max_steps",
                "clock_mode": "clock_mode", "output_dir": "output_dir", **REPLAN_PARAMS},
    ends_graph=True,  # it runs a finite list of episodes, writes the results and exits
)
FINAL_HOLD = GraphNode(
    "final_hold", "wp_final_hold", "wp_policy.ros.final_hold_node",
    covers="filler",  # the robot gets an explicit hold, never silence, when the filler dies
)
COMMON_PARAMS = {"robot_config": ROBOT_ARG, "use_sim_time": "use_sim_time"}


def _robot_graph(name: str, description: str, robot: str) -> GraphSpec:
    """A graph that drives a robot through its own drivers (or a bag replay): the robot config names every topic,
    message type, limit and gripper convention, so one node set serves any robot (``robot``: "" = required)."""
    return GraphSpec(
        name=name,
        description=description,
        arguments=(
            *_policy_args(robot),
            GraphArgument(PARAMS_FILE_ARG, f"graphs/{name}.yaml", "node parameters YAML (relative: wp_policy configs "
                          "dir)"),
            *_run_args(),
            GraphArgument("clock_mode", "wall", "filler: wall = a command per control tick; lockstep = one command per "
                          "observation set (lock-step bag replay, with use_sim_time)", choices=("wall", "lockstep")),
            GraphArgument("use_sim_time", "false", "follow /clock (bag replay in lock-step) instead of the wall clock",
                          type="bool"),
        ),
        nodes=(AGGREGATOR, PLANNER, FILLER, FINAL_HOLD),
        common_params=COMMON_PARAMS,
    )


R1LITE = _robot_graph("r1lite", "Galaxea R1 Lite: aggregator -> VLM planner -> AE filler -> arm and gripper command "
                      "topics", robot="r1lite")
ROBOT = _robot_graph("robot", "any robot described by a robot YAML (robot_config:=, required): aggregator -> VLM "
                     "planner -> AE filler -> the config's command topics", robot="")

LIBERO_SIM = GraphSpec(
    name="libero_sim",
    description="LIBERO simulation: the bridge stands in for the robot drivers and publishes /clock",
    arguments=(
        *_policy_args("libero"),
        GraphArgument(PARAMS_FILE_ARG, "graphs/libero_sim.yaml",
                      "node parameters YAML (relative: wp_policy configs dir)"),
        *_run_args(),
        GraphArgument("env", "libero:libero_object", "simulation env (wp_policy.sim.registry name): "
                      "libero:<suite> or a robosuite stand-in such as robosuite:Lift"),
        GraphArgument("task_id", "0", "task index within the env (-1: every task)", type="int"),
        GraphArgument("trials", "1", "episodes per task (LIBERO protocol: 50)", type="int"),
        GraphArgument("seed", "7", "simulation seed (LIBERO protocol: 7; stand-ins: trial t resets with seed + t)",
                      type="int"),
        GraphArgument("max_steps", "0", "policy steps per episode (0: the task's budget)", type="int"),
        GraphArgument("output_dir", "outputs/libero_sim", "where the bridge writes results.json and the videos"),
        GraphArgument("clock_mode", "lockstep", "lockstep: the sim waits for each command; wall: real-time",
                      choices=("lockstep", "wall")),
        GraphArgument("use_sim_time", "true", "follow the bridge's /clock (required for lock-step)", type="bool"),
    ),
    nodes=(LIBERO_BRIDGE, AGGREGATOR, PLANNER, FILLER),
    common_params=COMMON_PARAMS,
)

GRAPHS: dict[str, GraphSpec] = {g.name: g for g in (R1LITE, ROBOT, LIBERO_SIM)}


def get_graph(name: str) -> GraphSpec:
    try:
        return GRAPHS[name]
    except KeyError:
        raise ValueError(f"unknown graph {name!r}; graphs: {sorted(GRAPHS)}") from None
