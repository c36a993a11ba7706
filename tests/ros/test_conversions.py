import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from wp_policy.command_map import CommandMapper, command_values
from wp_policy.config_io import from_dict, to_dict
from wp_policy.image_proc import ImageDecodeError, encode_jpeg
from wp_policy.obs_sync import InvalidInput
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.ros.conversions import (
    command_message,
    command_msg_class,
    image_msg_to_rgb,
    joint_state_position,
    make_trajectory,
    ns_to_stamp,
    payload_to_joint_state,
    rgb_to_image_msg,
    sec_to_duration,
    stamp_to_ns,
    trajectory_arrays,
)


def test_stamps_round_trip_exactly():
    for ns in (0, 1, 1_700_000_000_123_456_789):
        assert stamp_to_ns(ns_to_stamp(ns)) == ns
    with pytest.raises(ValueError, match="negative"):
        ns_to_stamp(-1)
    d = sec_to_duration(2.5)
    assert (d.sec, d.nanosec) == (2, 500_000_000)


def test_images_round_trip():
    rgb = np.random.default_rng(0).integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    msg = rgb_to_image_msg(rgb, 42)
    assert (msg.encoding, msg.step, stamp_to_ns(msg.header.stamp)) == ("rgb8", 24, 42)
    assert np.array_equal(image_msg_to_rgb(msg), rgb)
    jpeg = CompressedImage(format="jpeg", data=encode_jpeg(np.full((8, 8, 3), 100, np.uint8)))
    assert image_msg_to_rgb(jpeg).shape == (8, 8, 3)
    with pytest.raises(ImageDecodeError):
        image_msg_to_rgb(CompressedImage(format="jpeg", data=b"\x00" * 10))
    with pytest.raises(ImageDecodeError):
        image_msg_to_rgb(Image(height=2, width=2, encoding="rgb8", step=6, data=b"\x00" * 5))


def test_joint_state_checks_names_against_positions():
    assert joint_state_position(JointState(position=[1.0, 2.0])).tolist() == [1.0, 2.0]
    with pytest.raises(InvalidInput, match="3 names but 2 positions"):
        joint_state_position(JointState(name=["a", "b", "c"], position=[1.0, 2.0]))


def test_command_payload_to_joint_state(r1lite_config):
    payload = CommandMapper(r1lite_config).split(np.zeros(14))[0]
    msg = payload_to_joint_state(payload, 7)
    assert len(msg.position) == 6 and list(msg.velocity) == [1.0] * 6 and msg.name[0] == "left_arm_joint1"


def test_trajectory_round_trip_and_validation():
    pos = np.arange(6.0).reshape(3, 2)
    msg = make_trajectory(["a", "b"], pos, [0.0, 0.5, 1.0], 5)
    names, out, times = trajectory_arrays(msg)
    assert names == ("a", "b") and np.array_equal(out, pos) and times.tolist() == [0.0, 0.5, 1.0]
    msg.points[1].positions = [1.0]
    with pytest.raises(InvalidInput, match="do not have 2 positions"):
        trajectory_arrays(msg)
    with pytest.raises(ValueError, match="must be"):
        make_trajectory(["a"], pos, [0.0], 0)


def _arm(**command) -> RobotConfig:
    """The R1 Lite with its left arm's command topic changed (``command``: CommandConfig fields)."""
    data = to_dict(load_robot_config("r1lite"))
    data["ros"]["commands"][0] = {**data["ros"]["commands"][0], "max_velocity": [], "joint_names": [], **command}
    return from_dict(RobotConfig, data)


@pytest.mark.parametrize("msg_type, cls", [("sensor_msgs/JointState", JointState),
                                           ("std_msgs/Float64MultiArray", Float64MultiArray),
                                           ("trajectory_msgs/JointTrajectory", JointTrajectory)])
def test_each_command_type_is_built_and_read_back(msg_type, cls):
    robot = _arm(msg_type=msg_type, kind="raw" if msg_type == "sensor_msgs/JointState" else "joint_position")
    cmd = robot.ros.commands[0]
    action = np.linspace(-0.5, 0.5, 14)
    payload = CommandMapper(robot).split(action)[0]
    msg = command_message(payload, 1_700_000_000_000_000_007, "hold:stopped")
    assert type(msg) is cls is command_msg_class(msg_type)
    np.testing.assert_array_equal(command_values(cmd, msg, msg_type), action[:6])
    np.testing.assert_array_equal(command_values(cmd, msg, msg_type.replace("/", "/msg/")), action[:6])  # bag form
    if cls is Float64MultiArray:
        assert len(msg.data) == 6 and not hasattr(msg, "header")
        return
    assert msg.header.frame_id == "hold:stopped"
    if cls is JointState:
        assert list(msg.name) == list(cmd.joint_names) and len(msg.velocity) == 0
        assert stamp_to_ns(msg.header.stamp) == 1_700_000_000_000_000_007
    else:  # one point, reached one control tick after receipt (zero stamp: the controller starts it on arrival)
        names, positions, times = trajectory_arrays(msg)
        assert names == cmd.joint_names and positions.shape == (1, 6)
        assert times.tolist() == [pytest.approx(1 / 15)] and stamp_to_ns(msg.header.stamp) == 0


def test_command_joint_names_are_configurable_and_read_by_name():
    names = tuple(f"a1_j{i}" for i in range(6))
    robot = _arm(msg_type="trajectory_msgs/JointTrajectory", kind="joint_position", joint_names=list(names))
    cmd = robot.ros.commands[0]
    msg = command_message(CommandMapper(robot).split(np.arange(14.0))[0], 0)
    assert tuple(msg.joint_names) == names
    msg.joint_names = list(names[::-1])  # a recorder or controller that orders the joints differently
    msg.points[0].positions = list(np.arange(6.0)[::-1])
    assert command_values(cmd, msg, "trajectory_msgs/JointTrajectory").tolist() == list(np.arange(6.0))


def test_malformed_or_foreign_commands_are_invalid_input(r1lite_config):
    cmd = r1lite_config.ros.commands[0]
    with pytest.raises(InvalidInput, match="7 command values, expected 6"):
        command_values(cmd, Float64MultiArray(data=[0.0] * 7), "std_msgs/Float64MultiArray")
    with pytest.raises(InvalidInput, match=r"no joint\(s\) \['left_arm_joint6'\]"):
        command_values(cmd, JointState(name=[f"left_arm_joint{i}" for i in range(1, 6)] + ["x"],
                                       position=[0.0] * 6), "sensor_msgs/JointState")
    with pytest.raises(InvalidInput, match="trajectory has no points"):
        command_values(cmd, JointTrajectory(), "trajectory_msgs/JointTrajectory")
    with pytest.raises(InvalidInput, match="std_msgs/Float32MultiArray is not supported"):
        command_values(cmd, Float64MultiArray(), "std_msgs/Float32MultiArray")
