"""Robot configuration: what a robot's data, model inputs and ROS interface look like.

One frozen dataclass tree per robot, loaded from ``configs/robots/<name>.yaml`` and validated on load. Everything
robot-specific (dims, dataset keys, camera views, gripper convention, control rate, limits, ROS topic names and QoS)
lives here so that no other module hard-codes a robot.

Shapes: dataset action ``[..., dataset_action_dim]`` -> :meth:`RobotConfig.select_action` -> ``[..., action.dim]``;
dataset state keys concatenated ``[..., sum(key dims)]`` -> :meth:`RobotConfig.select_proprio` -> ``[..., proprio.dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from wp_policy.config_io import ConfigError, load_config
from wp_policy.gripper import REMOVED_GRIPPER_TRANSFORM, GripperConfig
from wp_policy.paths import config_dir
from wp_policy.policy_config import ROBOT_YAML_SUFFIXES

QosName = Literal["sensor_data", "reliable", "reliable_latched", "best_effort_keep_last_1"]


@dataclass(frozen=True)
class CoupledDim:
    """A dim that follows another one in model space: ``x[dim] = scale * x[source] + offset``.

    LIBERO's two finger joints are mirror images (right = -left), so a planner that emits one token per gripper
    (``proprio_tokens: uncoupled`` in a VLM training config) cannot predict disagreeing fingers: the coupled dim
    gets no token and is rebuilt from its source.
    """

    dim: int
    source: int
    scale: float = -1.0
    offset: float = 0.0

    def __post_init__(self):
        if self.dim == self.source:
            raise ValueError(f"coupled dim {self.dim} cannot be its own source")
        if not (np.isfinite(self.scale) and np.isfinite(self.offset)) or self.scale == 0:
            raise ValueError(f"coupled dim {self.dim}: scale must be finite and non-zero, offset finite, got "
                             f"{self.scale} / {self.offset}")


@dataclass(frozen=True)
class DimGroup:
    """Dims that share a unit and belong on one plot axis (e.g. LIBERO's eef position, rotation, fingers)."""

    name: str  # axis label, with the unit: "position (m)"
    dims: tuple[int, ...]

    def __post_init__(self):
        if not self.name or not self.dims:
            raise ValueError(f"a dim group needs a name and at least one dim, got {self.name!r} {list(self.dims)}")


@dataclass(frozen=True)
class VectorSpec:
    """One of the robot's vectors (action or proprio) as the model sees it."""

    dim: int
    indices: tuple[int, ...]  # positions taken from the dataset vector, in order
    norm_mask: tuple[bool, ...]  # False: dim passes q99 normalisation untouched (grippers)
    names: tuple[str, ...]  # one per dim; JointState names on the ROS side
    gripper_dims: tuple[int, ...] = ()  # dims (in this vector) that carry a gripper value
    coupled: tuple[CoupledDim, ...] = ()  # dims determined by another dim (mirrored gripper fingers)
    groups: tuple[DimGroup, ...] = ()  # how plots put the dims on axes; empty: one axis for every dim

    def __post_init__(self):
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")
        for key in ("indices", "norm_mask", "names"):
            n = len(getattr(self, key))
            if n != self.dim:
                raise ValueError(f"{key}: expected {self.dim} values (dim), got {n}")
        if any(i < 0 for i in self.indices):
            raise ValueError(f"indices must be >= 0, got {list(self.indices)}")
        if len(set(self.names)) != self.dim:
            raise ValueError(f"names must be unique, got {list(self.names)}")
        bad = [g for g in self.gripper_dims if not 0 <= g < self.dim]
        if bad:
            raise ValueError(f"gripper_dims {bad} out of range for dim {self.dim}")
        coupled = [c.dim for c in self.coupled]
        bad = [d for c in self.coupled for d in (c.dim, c.source) if not 0 <= d < self.dim]
        if bad:
            raise ValueError(f"coupled: dims {bad} out of range for dim {self.dim}")
        if len(set(coupled)) != len(coupled):
            raise ValueError(f"coupled: each dim may be coupled once, got dims {coupled}")
        chained = [c.source for c in self.coupled if c.source in coupled]
        if chained:
            raise ValueError(f"coupled: source dims {chained} are themselves coupled; name an independent source")
        grouped = [d for g in self.groups for d in g.dims]
        bad = [d for d in grouped if not 0 <= d < self.dim]
        if bad or len(set(grouped)) != len(grouped):
            raise ValueError(f"groups: dims must be in 0..{self.dim - 1} and in one group each, got {grouped}")

    @property
    def plot_groups(self) -> tuple[DimGroup, ...]:
        """The declared groups plus one named "other" for dims in none (a single "all dims" group if none)."""
        if not self.groups:
            return (DimGroup("all dims", tuple(range(self.dim))),)
        rest = tuple(sorted(set(range(self.dim)) - {d for g in self.groups for d in g.dims}))
        return self.groups + ((DimGroup("other", rest),) if rest else ())

    @property
    def free_dims(self) -> tuple[int, ...]:
        """Dims not determined by a coupling, in order (all dims when nothing is coupled)."""
        coupled = {c.dim for c in self.coupled}
        return tuple(d for d in range(self.dim) if d not in coupled)

    def check_token_dims(self, dims: tuple[int, ...], where: str) -> None:
        """Refuse a waypoint layout whose untokenised dims cannot be rebuilt from a coupling of this vector."""
        rebuilt = {c.dim: c.source for c in self.coupled}
        for d in sorted(set(range(self.dim)) - set(dims)):
            if d not in rebuilt:
                raise ConfigError(f"{where}: waypoint dims {list(dims)} leave out dim {d} ({self.names[d]}), which "
                                 f"no coupling of this robot rebuilds (coupled: {sorted(rebuilt)})")
            if rebuilt[d] not in dims:
                raise ConfigError(f"{where}: dim {d} is rebuilt from dim {rebuilt[d]}, which has no token either")

    def fill_coupled(self, x: np.ndarray, dims) -> np.ndarray:
        """Copy of ``x [..., dim]`` (model space) with each coupled dim in ``dims`` recomputed from its source."""
        out = np.array(x, dtype=np.float64, copy=True)
        for c in self.coupled:
            if c.dim in dims:
                out[..., c.dim] = c.scale * out[..., c.source] + c.offset
        return out


@dataclass(frozen=True)
class CameraConfig:
    view: str  # our name for the view ("primary", "head", ...)
    rlds_key: str  # key under observation/ in the RLDS dataset
    model_key: str  # openpi image key the model expects ("base_0_rgb", ...)
    topic: str = ""  # raw driver topic on the robot (empty: simulation bridge publishes /wp/raw/<view>)
    encoding: Literal["jpeg", "rgb8"] = "rgb8"  # CompressedImage JPEG or raw Image

    @property
    def is_wrist(self) -> bool:
        """A camera on the arm: openpi's model keys name the mount (``left_wrist_0_rgb``, ``base_0_rgb``), and
        training augmentation keeps such views' geometry (no crop or rotation)."""
        return "wrist" in self.model_key


@dataclass(frozen=True)
class FeedbackConfig:
    """A JointState feedback topic and which proprio dims it fills from its ``position`` field.

    Joints are found by name (``joint_names``, default: the proprio names of ``proprio_dims``), so a driver may order
    them as it likes; a message without names is read by position (``source_indices``, default 0, 1, ...).
    """

    topic: str
    proprio_dims: tuple[int, ...]
    joint_names: tuple[str, ...] = ()  # names in the message, one per proprio dim (filled in by RobotConfig)
    source_indices: tuple[int, ...] = ()  # positions read from msg.position when the message carries no names

    def __post_init__(self):
        n = len(self.proprio_dims)
        if n == 0:
            raise ValueError(f"feedback {self.topic}: proprio_dims must name at least one dim")
        if not self.source_indices:
            object.__setattr__(self, "source_indices", tuple(range(n)))
        for key in ("joint_names", "source_indices"):
            values = getattr(self, key)
            if values and len(values) != n:
                raise ValueError(f"feedback {self.topic}: {key} needs {n} values (one per proprio_dims entry), got "
                                 f"{len(values)}")
            if len(set(values)) != len(values):
                raise ValueError(f"feedback {self.topic}: {key} must be unique, got {list(values)}")
        if any(i < 0 for i in self.source_indices):
            raise ValueError(f"feedback {self.topic}: source_indices must be >= 0, got {list(self.source_indices)}")


JOINT_STATE = "sensor_msgs/JointState"
FLOAT64_MULTI_ARRAY = "std_msgs/Float64MultiArray"
JOINT_TRAJECTORY = "trajectory_msgs/JointTrajectory"
CommandMsgType = Literal["sensor_msgs/JointState", "std_msgs/Float64MultiArray", "trajectory_msgs/JointTrajectory"]


@dataclass(frozen=True)
class CommandConfig:
    """A command topic fed from some action dims (execution space), and the message type its controller takes.

    ``sensor_msgs/JointState`` (R1 Lite, LIBERO bridge): names + positions (+ ``max_velocity`` for joint_position);
    ``std_msgs/Float64MultiArray`` (ros2_control forward command controllers): the positions in ``action_dims``
    order, no names; ``trajectory_msgs/JointTrajectory`` (joint trajectory controller): one point, reached one
    control tick after receipt.
    """

    topic: str
    action_dims: tuple[int, ...]
    kind: Literal["joint_position", "gripper", "raw"]
    max_velocity: tuple[float, ...] = ()  # JointState joint_position only: per-joint max velocity in msg.velocity
    msg_type: CommandMsgType = JOINT_STATE
    joint_names: tuple[str, ...] = ()  # names sent (JointState, JointTrajectory); default: the action names

    def __post_init__(self):
        if not self.action_dims:
            raise ValueError(f"command {self.topic}: action_dims must name at least one dim")
        if not np.all(np.isfinite(np.asarray(self.max_velocity, dtype=np.float64))) or any(
                v <= 0 for v in self.max_velocity):
            raise ValueError(f"command {self.topic}: max_velocity must be positive finite numbers, got "
                             f"{list(self.max_velocity)}")
        velocity_carried = self.kind == "joint_position" and self.msg_type == JOINT_STATE
        if velocity_carried and len(self.max_velocity) != len(self.action_dims):
            raise ValueError(
                f"command {self.topic}: max_velocity needs {len(self.action_dims)} values, got {len(self.max_velocity)}"
            )
        if self.max_velocity and not velocity_carried:
            raise ValueError(f"command {self.topic}: max_velocity is sent only by kind joint_position on "
                             f"{JOINT_STATE}, not by kind {self.kind} on {self.msg_type}; remove it")
        if self.joint_names and len(self.joint_names) != len(self.action_dims):
            raise ValueError(f"command {self.topic}: joint_names needs {len(self.action_dims)} values (one per "
                             f"action_dims entry), got {len(self.joint_names)}")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError(f"command {self.topic}: joint_names must be unique, got {list(self.joint_names)}")


@dataclass(frozen=True)
class RosInterface:
    """Driver-side topics of the real robot (or the simulation bridge standing in for it)."""

    camera_qos: QosName = "sensor_data"
    feedback_qos: QosName = "sensor_data"
    command_qos: QosName = "best_effort_keep_last_1"
    feedback: tuple[FeedbackConfig, ...] = ()
    commands: tuple[CommandConfig, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    """Execution-space bounds on every action dim, and the largest change allowed in one control tick."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    max_step: tuple[float, ...] | None = None  # None: no rate limit (e.g. delta actions)

    def __post_init__(self):
        """Every bound must be a finite number: a NaN passes ``lower > upper`` and every clamp, so it would only
        show up as a crash or an unchecked command once the robot runs."""
        for key in ("lower", "upper", "max_step"):
            values = getattr(self, key)
            if values is not None and not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
                raise ValueError(f"limits.{key} must be finite numbers, got {list(values)}")


@dataclass(frozen=True)
class RobotConfig:
    robot_type: str
    action_kind: Literal["delta_eef", "joint_position"]
    control_hz: float
    dataset_action_dim: int  # width of the dataset's action vector before index selection
    action: VectorSpec
    proprio: VectorSpec
    state_keys: tuple[str, ...]  # observation keys concatenated (in order) into the raw proprio vector
    cameras: tuple[CameraConfig, ...]
    gripper: GripperConfig  # closed/open values of the gripper dims (gripper_dims), see wp_policy.gripper
    limits: LimitsConfig
    image_size: int = 224  # model resolution (square)
    ros: RosInterface = field(default_factory=RosInterface)

    REMOVED_KEYS: ClassVar[dict[str, str]] = {"gripper_transform": REMOVED_GRIPPER_TRANSFORM}

    def __post_init__(self):
        if not np.isfinite(self.control_hz) or self.control_hz <= 0:
            raise ValueError(f"control_hz must be a positive finite number, got {self.control_hz}")
        bad = [i for i in self.action.indices if i >= self.dataset_action_dim]
        if bad:
            raise ValueError(f"action.indices {bad} out of range for dataset_action_dim {self.dataset_action_dim}")
        if not self.cameras:
            raise ValueError("cameras: at least one camera view is required")
        views = [c.view for c in self.cameras]
        if len(set(views)) != len(views):
            raise ValueError(f"cameras: view names must be unique, got {views}")
        if not self.state_keys:
            raise ValueError("state_keys: at least one observation key is required")
        n = self.action.dim
        for key in ("lower", "upper"):
            if len(getattr(self.limits, key)) != n:
                raise ValueError(f"limits.{key}: expected {n} values (action.dim), got {len(getattr(self.limits, key))}")
        if self.limits.max_step is not None:
            if len(self.limits.max_step) != n:
                raise ValueError(f"limits.max_step: expected {n} values (action.dim), got {len(self.limits.max_step)}")
            if any(s <= 0 for s in self.limits.max_step):
                raise ValueError(f"limits.max_step must be positive, got {list(self.limits.max_step)}")
        if any(lo > hi for lo, hi in zip(self.limits.lower, self.limits.upper)):
            raise ValueError(f"limits.lower must be <= limits.upper, got {self.limits.lower} / {self.limits.upper}")
        for cmd in self.ros.commands:
            if any(not 0 <= d < n for d in cmd.action_dims):
                raise ValueError(f"ros.commands {cmd.topic}: action_dims {list(cmd.action_dims)} out of range for {n}")
        for fb in self.ros.feedback:
            if any(not 0 <= d < self.proprio.dim for d in fb.proprio_dims):
                raise ValueError(f"ros.feedback {fb.topic}: proprio_dims out of range for {self.proprio.dim}")
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        self._name_joints()

    def _name_joints(self) -> None:
        """Feedback and command topics without ``joint_names`` use the proprio / action names of their dims."""
        feedback = tuple(fb if fb.joint_names else replace(fb, joint_names=tuple(self.proprio.names[d]
                                                                                 for d in fb.proprio_dims))
                         for fb in self.ros.feedback)
        commands = tuple(c if c.joint_names else replace(c, joint_names=tuple(self.action.names[d]
                                                                            for d in c.action_dims))
                         for c in self.ros.commands)
        object.__setattr__(self, "ros", replace(self.ros, feedback=feedback, commands=commands))

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_hz

    @property
    def camera_views(self) -> tuple[str, ...]:
        return tuple(c.view for c in self.cameras)

    def select_action(self, dataset_action: np.ndarray) -> np.ndarray:
        """``[..., dataset_action_dim]`` -> ``[..., action.dim]`` (index selection only)."""
        a = np.asarray(dataset_action)
        if a.shape[-1] != self.dataset_action_dim:
            raise ValueError(
                f"{self.robot_type}: dataset action has {a.shape[-1]} dims, expected {self.dataset_action_dim}"
            )
        return a[..., list(self.action.indices)]

    def select_proprio(self, raw_state: np.ndarray) -> np.ndarray:
        """Concatenated state keys ``[..., n]`` -> ``[..., proprio.dim]`` (index selection only)."""
        s = np.asarray(raw_state)
        need = max(self.proprio.indices) + 1
        if s.shape[-1] < need:
            raise ValueError(f"{self.robot_type}: raw state has {s.shape[-1]} dims, need at least {need}")
        return s[..., list(self.proprio.indices)]

    def action_to_model(self, action: np.ndarray) -> np.ndarray:
        """Selected dataset action -> model space (gripper dims mapped to [0, 1]); before normalisation."""
        return _apply_on_dims(action, self.action.gripper_dims, self.gripper.action_to_model, self.action.dim)

    def action_to_execution(self, action: np.ndarray) -> np.ndarray:
        """Unnormalised model action -> what the controller receives (gripper binarised / stroke)."""
        return _apply_on_dims(action, self.action.gripper_dims, self.gripper.action_to_execution, self.action.dim)

    def proprio_to_model(self, proprio: np.ndarray) -> np.ndarray:
        """Physical proprio -> model space (before normalisation)."""
        return _apply_on_dims(proprio, self.proprio.gripper_dims, self.gripper.proprio_to_model, self.proprio.dim)

    def proprio_to_physical(self, proprio: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`proprio_to_model`."""
        return _apply_on_dims(proprio, self.proprio.gripper_dims, self.gripper.proprio_to_physical, self.proprio.dim)


def _apply_on_dims(x: np.ndarray, dims: tuple[int, ...], fn, expected_dim: int) -> np.ndarray:
    out = np.array(x, dtype=np.float64, copy=True)
    if out.shape[-1] != expected_dim:
        raise ValueError(f"expected last dim {expected_dim}, got shape {out.shape}")
    if dims:
        idx = list(dims)
        out[..., idx] = fn(out[..., idx])
    return out


def robot_names() -> list[str]:
    """The robot configs shipped in configs/robots/ (names ``load_robot_config`` accepts besides paths)."""
    return sorted(p.stem for p in (config_dir() / "robots").glob("*.yaml"))


def load_robot_config(name_or_path: str | Path) -> RobotConfig:
    """Load a robot config by name (``libero``, ``r1lite``: from configs/robots/) or from a YAML file anywhere
    (``.yaml``/``.yml``; relative to the current directory, ``~`` expanded)."""
    path = Path(name_or_path).expanduser()
    if path.suffix in ROBOT_YAML_SUFFIXES:
        return load_config(RobotConfig, path)
    shipped = config_dir() / "robots" / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(f"unknown robot config {str(name_or_path)!r}: give a robot YAML path (.yaml) or one of "
                          f"{robot_names()} (configs/robots/)")
    return load_config(RobotConfig, shipped)
