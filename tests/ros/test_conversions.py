import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState

from wp_policy.command_map import CommandMapper
from wp_policy.image_proc import ImageDecodeError, encode_jpeg
from wp_policy.obs_sync import InvalidInput
from wp_policy.ros.conversions import (
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
