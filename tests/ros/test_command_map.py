import numpy as np
import pytest

from wp_policy.command_map import CommandMapper


def test_r1lite_split_routes_arms_and_grippers(r1lite_config):
    m = CommandMapper(r1lite_config)
    action = np.arange(14, dtype=float) * 0.1
    action[[6, 13]] = [30.0, 80.0]
    out = {p.topic: p for p in m.split(action)}
    assert list(out) == list(m.topics) and len(out) == 4
    left = out["/motion_target/target_joint_state_arm_left"]
    assert left.kind == "joint_position" and left.names[0] == "left_arm_joint1"
    np.testing.assert_allclose(left.position, action[:6])
    np.testing.assert_allclose(left.velocity, [1.0] * 6)  # the config's max velocities
    grip = out["/motion_target/target_position_gripper_right"]
    assert grip.kind == "gripper" and grip.position.tolist() == [80.0] and grip.velocity.size == 0
    np.testing.assert_allclose(m.join({p.topic: p.position for p in out.values()}), action)


def test_libero_raw_is_the_whole_vector(libero_config):
    (payload,) = CommandMapper(libero_config).split([0.1, 0, 0, 0, 0, 0, -1.0])
    assert payload.topic == "/libero/action" and payload.kind == "raw" and payload.position.size == 7


@pytest.mark.parametrize("bad, match", [([0.0] * 13, "13 values"), ([np.nan] * 14, "non-finite")])
def test_split_rejects_bad_actions(r1lite_config, bad, match):
    with pytest.raises(ValueError, match=match):
        CommandMapper(r1lite_config).split(bad)


def test_join_needs_every_topic(r1lite_config):
    m = CommandMapper(r1lite_config)
    with pytest.raises(KeyError, match="no command for topic"):
        m.join({})
    with pytest.raises(ValueError, match="expected 6 positions"):
        m.join(dict.fromkeys(m.topics, [0.0]))
