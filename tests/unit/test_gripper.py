"""Gripper conventions as numbers (robot config ``gripper:``): the shipped robots keep their exact mappings, and a
new gripper (a width in metres, a reversed or binary command) needs only its closed/open values."""

import numpy as np
import pytest

from wp_policy.config_io import ConfigError, from_dict
from wp_policy.gripper import GripperConfig, GripperRange

X = np.linspace(-1.5, 1.5, 31)
M = np.linspace(-0.25, 1.25, 31)  # model values, also past [0, 1] (an AE output is not clipped)


def test_libero_keeps_its_clip_then_flip_and_binary_command(libero_config):
    g = libero_config.gripper
    assert np.array_equal(g.action_to_model(X), 1.0 - np.clip(X, 0.0, 1.0))  # docs/models.md, bit for bit
    assert np.array_equal(g.action_to_execution(M), -np.where(M * 2.0 - 1.0 > 0.0, 1.0, -1.0))
    assert g.action_to_execution(np.array(0.5)) == 1.0  # a tie closes: never the ambiguous 0
    assert not np.signbit(g.action_to_model(np.array([1.0]))).any()  # closed is 0, not -0


def test_r1lite_stroke_in_mm(r1lite_config):
    g = r1lite_config.gripper
    assert (g.action.unit, g.command, g.proprio) == ("mm", g.action, g.action)  # one range for every side
    strokes = np.array([0.0, 25.0, 100.0])
    assert np.array_equal(g.action_to_model(strokes), strokes / 100.0)
    assert np.array_equal(g.action_to_execution(M), np.clip(M * 100.0, 0.0, 100.0))
    assert np.array_equal(g.proprio_to_model(strokes), strokes / 100.0)
    assert np.array_equal(g.proprio_to_physical(g.proprio_to_model(strokes)), strokes)


def test_a_width_gripper_in_metres_by_config_alone():
    g = from_dict(GripperConfig, {"action": {"closed": 0.0, "open": 0.08, "unit": "m"}})
    np.testing.assert_allclose(g.action_to_model([0.0, 0.04, 0.08, 0.1]), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(g.action_to_execution([-0.5, 0.25, 1.5]), [0.0, 0.02, 0.08])
    np.testing.assert_allclose(g.proprio_to_physical(g.proprio_to_model([0.013, 0.081])), [0.013, 0.081])


def test_reversed_ranges_and_separate_sides():
    """A gripper whose command counts closing (0 = open, 255 = closed) and whose joint reads a finger angle."""
    g = GripperConfig(action=GripperRange(closed=255.0, open=0.0), proprio=GripperRange(closed=0.8, open=0.0))
    np.testing.assert_allclose(g.action_to_model([255.0, 0.0, 63.75]), [0.0, 1.0, 0.75])
    np.testing.assert_allclose(g.action_to_execution([0.0, 1.0, 0.75, 2.0]), [255.0, 0.0, 63.75, 0.0])
    np.testing.assert_allclose(g.proprio_to_model([0.8, 0.2]), [0.0, 0.75])
    binary = GripperConfig(action=GripperRange(0.0, 1.0), command=GripperRange(closed=1.0, open=0.0, binary=True))
    assert binary.action_to_execution(np.array([0.2, 0.5, 0.51])).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("data, match", [
    ({"action": {"closed": 1.0, "open": 1.0}}, "action: closed and open must be different finite numbers"),
    ({"action": {"closed": 0.0, "open": float("nan")}}, "closed and open must be different finite numbers"),
    ({"action": {"closed": 0.0, "open": 1.0}, "proprio": {"closed": 0.0, "open": 1.0, "binary": True}},
     "proprio: binary applies to the command only"),
    ({"action": {"closed": 0.0}}, r"action.open: required key is missing"),
    ({"stroke": 100.0}, r"unknown key\(s\) \['stroke'\]"),
])
def test_bad_gripper_values_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(GripperConfig, data, "robot.yaml", "gripper")
