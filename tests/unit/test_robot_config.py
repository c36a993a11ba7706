from pathlib import Path

import numpy as np
import pytest
import yaml

from wp_policy.config_io import ConfigError, load_yaml
from wp_policy.paths import config_dir
from wp_policy.robot_config import load_robot_config


def test_libero_config_matches_seed(libero_config):
    c = libero_config
    assert (c.action.dim, c.proprio.dim, c.control_hz) == (7, 8, 20.0)
    assert c.action.norm_mask == (True,) * 6 + (False,)
    assert [cam.rlds_key for cam in c.cameras] == ["image", "wrist_image"]
    assert [cam.model_key for cam in c.cameras] == ["base_0_rgb", "left_wrist_0_rgb"]
    assert c.state_keys == ("state",)


def test_r1lite_config_matches_reference(r1lite_config):
    c = r1lite_config
    assert (c.action.dim, c.proprio.dim, c.dataset_action_dim, c.control_hz) == (14, 14, 26, 15.0)
    assert c.action.norm_mask[6] is False and c.action.norm_mask[13] is False
    assert sum(c.action.norm_mask) == 12
    assert [cam.encoding for cam in c.cameras] == ["jpeg"] * 3
    assert c.cameras[0].topic == "/hdas/camera_head/left_raw/image_raw_color/compressed"
    topics = [cmd.topic for cmd in c.ros.commands]
    assert topics == [
        "/motion_target/target_joint_state_arm_left",
        "/motion_target/target_position_gripper_left",
        "/motion_target/target_joint_state_arm_right",
        "/motion_target/target_position_gripper_right",
    ]
    assert [f.topic for f in c.ros.feedback][1] == "/hdas/feedback_gripper_left"
    assert c.ros.command_qos == "best_effort_keep_last_1"
    covered = sorted(d for f in c.ros.feedback for d in f.proprio_dims)
    assert covered == list(range(14))
    assert sorted(d for cmd in c.ros.commands for d in cmd.action_dims) == list(range(14))


def test_select_action_drops_torso_and_base(r1lite_config):
    raw = np.arange(26, dtype=float)[None].repeat(3, 0)
    assert r1lite_config.select_action(raw).shape == (3, 14)
    with pytest.raises(ValueError, match="dataset action has 7 dims, expected 26"):
        r1lite_config.select_action(np.zeros(7))


def test_libero_gripper_chain_matches_seed(libero_config):
    c = libero_config
    dataset = np.array([[0, 0, 0, 0, 0, 0, -1.0], [0, 0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0, 0, 0.3]])
    model = c.action_to_model(dataset)
    assert model[:, 6].tolist() == pytest.approx([1.0, 0.0, 0.7])  # 1 = open, 0 = close
    execution = c.action_to_execution(model)
    assert execution[:, 6].tolist() == [-1.0, 1.0, -1.0]  # LIBERO: -1 open, +1 close
    assert np.array_equal(execution[:, :6], dataset[:, :6])
    # a tie never produces the ambiguous 0 command
    assert c.action_to_execution(np.array([0, 0, 0, 0, 0, 0, 0.5]))[6] == 1.0


def test_r1lite_stroke_round_trip(r1lite_config):
    c = r1lite_config
    p = np.zeros(14)
    p[6], p[13] = 100.0, 25.0
    m = c.proprio_to_model(p)
    assert (m[6], m[13]) == (1.0, 0.25)
    np.testing.assert_allclose(c.proprio_to_physical(m), p)
    a = np.zeros(14)
    a[6], a[13] = 1.3, -0.2
    ex = c.action_to_execution(a)
    assert (ex[6], ex[13]) == (100.0, 0.0)


def _write_variant(tmp_path: Path, edit) -> Path:
    data = load_yaml(config_dir() / "robots" / "r1lite.yaml")
    edit(data)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["action"].update(norm_mask=[True] * 13), r"action\.norm_mask.*expected 14 values \(dim\), got 13|norm_mask: expected 14"),
        (lambda d: d.pop("control_hz"), "control_hz: required key is missing"),
        (lambda d: d.update(control_hz=-5), "control_hz must be a positive finite number, got -5"),
        (lambda d: d.update(control_hz=float("inf")), "control_hz must be a positive finite number, got inf"),
        (lambda d: d["limits"]["lower"].__setitem__(0, float("nan")), r"limits.lower must be finite numbers, got \[nan"),
        (lambda d: d["limits"]["upper"].__setitem__(3, float("inf")), "limits.upper must be finite numbers"),
        (lambda d: d["limits"]["max_step"].__setitem__(1, float("nan")), "limits.max_step must be finite numbers"),
        (lambda d: d["ros"]["commands"][0].update(max_velocity=[float("nan")] * 6),
         "max_velocity must be positive finite numbers"),
        (lambda d: d.update(control_hz="fast"), "control_hz: expected a number, got 'fast'"),
        (lambda d: d.update(gripper_transform="r1lite_stroke"),
         r"gripper_transform: replaced by `gripper:`.*r1lite_stroke -> \{action: \{closed: 0.0, open: 100.0, unit: mm"),
        (lambda d: d["gripper"]["action"].update(open=0.0), "gripper.action: closed and open must be different"),
        (lambda d: d["gripper"]["action"].update(binary=True), "gripper: action: binary applies to the command only"),
        (lambda d: d["gripper"].update(width=0.08), r"gripper: unknown key\(s\) \['width'\]"),
        (lambda d: d["ros"]["commands"][0].update(msg_type="std_msgs/Float32MultiArray"),
         r"ros.commands\[0\].msg_type: 'std_msgs/Float32MultiArray' is not one of"),
        (lambda d: d["ros"]["commands"][0].update(msg_type="std_msgs/Float64MultiArray"),
         "max_velocity is sent only by kind joint_position on sensor_msgs/JointState"),
        (lambda d: d["ros"]["commands"][1].update(joint_names=["a", "b"]), "joint_names needs 1 values"),
        (lambda d: d["ros"]["feedback"][0].update(joint_names=["j"] * 6), "joint_names must be unique"),
        (lambda d: d["ros"]["feedback"][0].update(source_indices=[0, 1]), "source_indices needs 6 values"),
        (lambda d: d.update(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (lambda d: d["limits"].update(max_step=[0.1] * 3), "limits.max_step: expected 14 values"),
        (lambda d: d["action"].update(indices=list(range(20, 34))), "action.indices .* out of range for dataset_action_dim 26"),
        (lambda d: d.update(action_kind="velocity"), "'velocity' is not one of"),
        (lambda d: d["ros"]["commands"][0].update(max_velocity=[1.0]), "max_velocity needs 6 values, got 1"),
        (lambda d: d["proprio"]["groups"][2].update(dims=[6, 14]), r"groups: dims must be in 0\.\.13 and in one group"),
        (lambda d: d["proprio"]["groups"][2].update(dims=[6, 0]), r"groups: dims must be in 0\.\.13 and in one group"),
        (lambda d: d["proprio"]["groups"][2].update(dims=[]), "a dim group needs a name and at least one dim"),
    ],
)
def test_bad_robot_config_names_file_and_field(tmp_path, edit, message):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError, match=message) as info:
        load_robot_config(path)
    assert str(path) in str(info.value)


def test_plot_groups_cover_every_dim_once(libero_config, r1lite_config):
    for robot in (libero_config, r1lite_config):
        dims = [d for g in robot.proprio.plot_groups for d in g.dims]
        assert sorted(dims) == list(range(robot.proprio.dim))
    assert [g.name for g in libero_config.proprio.plot_groups] == [
        "eef position (m)", "eef rotation (axis-angle, rad)", "gripper (finger qpos, m)"]
    from dataclasses import replace

    partial = replace(libero_config.proprio, groups=libero_config.proprio.groups[:1])
    assert [(g.name, g.dims) for g in partial.plot_groups] == [("eef position (m)", (0, 1, 2)),
                                                              ("other", (3, 4, 5, 6, 7))]
    assert [(g.name, g.dims) for g in replace(partial, groups=()).plot_groups] == [("all dims", tuple(range(8)))]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_robot_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("robot_type: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_robot_config(bad)
    with pytest.raises(ConfigError, match=r"unknown robot config 'no_such_robot': give a robot YAML path \(\.yaml\) "
                                          r"or one of \['libero', 'r1lite'\]"):
        load_robot_config("no_such_robot")


def test_robot_configs_load_from_any_path(tmp_path, monkeypatch, r1lite_config):
    text = (config_dir() / "robots" / "r1lite.yaml").read_text()
    for path in (tmp_path / "a" / "arm.yaml", tmp_path / "b" / "arm.yml"):
        path.parent.mkdir()
        path.write_text(text)
        assert load_robot_config(path) == load_robot_config(str(path)) == r1lite_config  # absolute, str or Path
    monkeypatch.chdir(tmp_path / "a")
    assert load_robot_config("arm.yaml") == r1lite_config  # relative: to the current directory
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_robot_config("~/b/arm.yml") == r1lite_config
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_robot_config("nope.yaml")  # a path, not a name: never looked up in configs/robots


def test_feedback_and_command_joint_names_default_to_the_model_names(r1lite_config):
    for fb in r1lite_config.ros.feedback:
        assert fb.joint_names == tuple(r1lite_config.proprio.names[d] for d in fb.proprio_dims)
        assert fb.source_indices == tuple(range(len(fb.proprio_dims)))
    for cmd in r1lite_config.ros.commands:
        assert cmd.joint_names == tuple(r1lite_config.action.names[d] for d in cmd.action_dims)
        assert cmd.msg_type == "sensor_msgs/JointState"
