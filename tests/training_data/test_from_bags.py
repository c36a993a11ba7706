"""``wp-data from-bags``: real MCAP bags (``wp-bag synth`` plus commands, instructions, markers and faults written
here) -> RLDS through the aggregator's synchroniser; bad recordings are reported per episode and skipped or cut."""

import json

import numpy as np
import pytest

from wp_policy.image_proc import decode_jpeg, resize_with_pad
from wp_policy.robot_config import load_robot_config
from wp_policy.ros.bag_io import BagReader, BagWriter, deserialize, msg_class, serialize
from wp_policy.ros.bag_synth import SynthSpec, joint_motion, write_synthetic_bag
from wp_policy.ros.topics import INSTRUCTION_TOPIC
from wp_training.data.bag_convert import (
    REPORT_FILE,
    BagConvertConfig,
    control_steps,
    convert_bags,
    longest_clean_run,
    state_layout,
)
from wp_training.data.rlds_reader import RldsReader, read_rlds
from wp_training.data_cli import main

NS = 1_000_000_000
SPEC = SynthSpec(duration_s=3.0, width=64, height=48, seed=3)
INSTRUCTION = "pick up the cube"
MARKER = "/teleop/recording"
COMMAND_DELAY_NS = 40_000_000  # a command follows camera 0's frame by 40 ms (all three frames are in by then)


@pytest.fixture(scope="module")
def robot():
    return load_robot_config("r1lite")


@pytest.fixture(scope="module")
def raw_bag(robot, tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "raw.mcap"
    write_synthetic_bag(path, robot, SPEC)
    return path


def target(robot, capture_ns: int) -> np.ndarray:
    """The commanded target after the frame captured at ``capture_ns``: where the robot is one period later."""
    t = (capture_ns - SPEC.start_ns) / NS + robot.control_period
    return joint_motion(robot, np.array([t]), SPEC.seed)[0][0]


def header(stamp_ns):
    return msg_class("std_msgs/msg/Header")(
        stamp=msg_class("builtin_interfaces/msg/Time")(sec=stamp_ns // NS, nanosec=stamp_ns % NS), frame_id="")


def make_bag(robot, raw, out, *, skip_topics=(), drop_camera=None, nan_feedback=None, markers=(),
             instruction=INSTRUCTION):
    """Copy ``raw`` adding commands, the instruction and Bool markers ((time s, value) pairs); ``drop_camera``:
    (topic, t0, t1) frames not written; ``nan_feedback``: (topic, t0, t1) samples with NaN positions."""
    joint_state = msg_class("sensor_msgs/msg/JointState")
    head = robot.cameras[0].topic
    events = []
    with BagReader(raw) as reader:
        start = reader.start_ns
        for m in reader.messages():
            t = (m.log_ns - start) / NS
            data = m.data
            if drop_camera and m.topic == drop_camera[0] and drop_camera[1] <= t < drop_camera[2]:
                continue
            if nan_feedback and m.topic == nan_feedback[0] and nan_feedback[1] <= t < nan_feedback[2]:
                msg = deserialize(data, m.msgtype)
                msg.position = np.full_like(msg.position, np.nan)
                data = serialize(msg, m.msgtype)
            events.append((m.log_ns, m.topic, m.msgtype, data))
            if m.topic == head:
                capture = deserialize(m.data, m.msgtype).header.stamp
                capture_ns = capture.sec * NS + capture.nanosec
                goal = target(robot, capture_ns)
                for cmd in robot.ros.commands:
                    dims = list(cmd.action_dims)
                    msg = joint_state(header=header(capture_ns), name=[robot.action.names[d] for d in dims],
                                      position=goal[dims], velocity=np.zeros(0), effort=np.zeros(0))
                    events.append((capture_ns + COMMAND_DELAY_NS, cmd.topic, "sensor_msgs/msg/JointState",
                                   serialize(msg, "sensor_msgs/msg/JointState")))
    if instruction:
        text = msg_class("std_msgs/msg/String")(data=instruction)
        events.append((start, INSTRUCTION_TOPIC, "std_msgs/msg/String", serialize(text, "std_msgs/msg/String")))
    for t, value in markers:
        events.append((start + int(t * NS), MARKER, "std_msgs/msg/Bool",
                       serialize(msg_class("std_msgs/msg/Bool")(data=value), "std_msgs/msg/Bool")))
    events.sort(key=lambda e: e[0])
    with BagWriter(out) as writer:
        for _, topic, msgtype, _ in events:
            if topic not in skip_topics:
                writer.add_topic(topic, msgtype, latched=topic == INSTRUCTION_TOPIC)
        for log, topic, _, data in events:
            if topic not in skip_topics:
                writer.write(topic, log, data)
    return out


def convert(bags, out, **kwargs):
    cfg = BagConvertConfig(bags=tuple(str(b) for b in bags), out_dir=str(out), robot="r1lite", **kwargs)
    return convert_bags(cfg, show_progress=False)


def test_good_bag_becomes_one_episode_of_aggregator_sets(robot, raw_bag, tmp_path):
    bag = make_bag(robot, raw_bag, tmp_path / "good.mcap")
    report = convert([bag], tmp_path / "out")
    (ep_report,) = report["episodes"]
    assert ep_report["status"] == "written" and ep_report["reasons"] == []
    assert ep_report["counts"]["gaps"] == 0 and ep_report["counts"]["rejected"] == {}
    dataset = report["summary"]["dataset_dir"]
    reader = RldsReader(dataset)
    assert reader.layout.state_dims == {"joint_position_arm_left": 6, "gripper_state_left": 1,
                                        "joint_position_arm_right": 6, "gripper_state_right": 1}
    assert reader.layout.action_dim == 26
    assert all(shape == (224, 224, 3) for shape in reader.layout.image_shapes.values())  # the aggregator's size
    (ep,) = list(read_rlds(dataset))
    n = len(ep["action"])
    assert n == ep_report["steps"] and abs(n - SPEC.duration_s * robot.control_hz) <= 2
    assert ep["language_instruction"] == INSTRUCTION
    state = np.concatenate([ep["observation"][k] for k in robot.state_keys], axis=1)
    # set j: camera frames j (its stamp is the newest view's, camera 2); proprio = the 100 Hz feedback sample
    # nearest to that stamp
    frame_t = np.arange(n) / SPEC.camera_hz
    fb_t = np.round((frame_t + 2 * SPEC.camera_offset_s) * SPEC.feedback_hz) / SPEC.feedback_hz
    np.testing.assert_allclose(state, joint_motion(robot, fb_t, SPEC.seed)[0], atol=1e-4)
    # action = the command sent after each step's frames: the target one period after camera 0's capture
    goals = np.stack([target(robot, SPEC.start_ns + int(round(t * NS))) for t in frame_t])
    np.testing.assert_allclose(ep["action"][:, :14], goals, atol=1e-4)
    assert np.all(ep["action"][:, 14:] == 0)
    # images: the aggregator's resize-with-pad of the decoded frame, stored as JPEG
    with BagReader(bag) as r:
        frames = [deserialize(m.data, m.msgtype) for m in r.messages([robot.cameras[0].topic])]
    for j in (0, n - 1):
        ref = resize_with_pad(decode_jpeg(frames[j].data), 224, 224).astype(float)
        assert np.abs(ep["observation"][robot.cameras[0].rlds_key][j].astype(float) - ref).mean() < 3.0
    saved = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert saved["summary"]["written"] == 1 and saved["summary"]["messages"] > 0


def test_feedback_actions_are_the_next_state(robot, raw_bag, tmp_path):
    bag = make_bag(robot, raw_bag, tmp_path / "fb.mcap", skip_topics=[c.topic for c in robot.ros.commands])
    report = convert([bag], tmp_path / "out", actions="feedback", image_size=32)
    (ep,) = list(read_rlds(report["summary"]["dataset_dir"]))
    state = np.concatenate([ep["observation"][k] for k in robot.state_keys], axis=1)
    np.testing.assert_allclose(ep["action"][:-1, :14], state[1:], atol=1e-5)
    np.testing.assert_allclose(ep["action"][-1, :14], state[-1], atol=1e-5)  # the last step holds


def test_bad_recordings_are_reported_and_skipped_or_cut(robot, raw_bag, tmp_path):
    wrist = robot.cameras[1].topic
    bad = make_bag(robot, raw_bag, tmp_path / "bad.mcap", drop_camera=(wrist, 1.5, 2.2),
                   nan_feedback=("/hdas/feedback_arm_left", 0.8, 0.83))
    missing = make_bag(robot, raw_bag, tmp_path / "missing.mcap",
                       skip_topics=["/motion_target/target_position_gripper_right"])
    good = make_bag(robot, raw_bag, tmp_path / "good.mcap")
    skip = convert([bad, missing, good], tmp_path / "skip", image_size=32)
    by_bag = {e["bag"].rsplit("/", 1)[1]: e for e in skip["episodes"]}
    e = by_bag["bad.mcap"]
    assert e["status"] == "skipped" and e["counts"]["gaps"] == 1 and e["counts"]["missing_ticks"] >= 9
    assert e["counts"]["rejected"] == {"/hdas/feedback_arm_left": 3}
    assert any("non-finite" in r for r in e["reasons"]) and any("gap" in r for r in e["reasons"])
    e = by_bag["missing.mcap"]
    assert e["status"] == "skipped" and "/motion_target/target_position_gripper_right" in e["reasons"][0]
    assert by_bag["good.mcap"]["status"] == "written" and by_bag["good.mcap"]["rlds_episode"] == 0
    assert len(list(read_rlds(skip["summary"]["dataset_dir"]))) == 1

    cut = convert([bad], tmp_path / "cut", image_size=32, on_bad="cut")
    (e,) = cut["episodes"]
    a, b = e["kept_steps"]
    assert e["status"] == "cut" and b - a == e["written_steps"] and 15 <= b - a < e["steps"]
    (ep,) = list(read_rlds(cut["summary"]["dataset_dir"]))
    assert len(ep["action"]) == b - a


def test_marker_topic_splits_episodes_and_missing_instruction_is_reported(robot, raw_bag, tmp_path):
    bag = make_bag(robot, raw_bag, tmp_path / "markers.mcap", instruction="",
                   markers=[(0.5, True), (1.4, False), (1.8, True)])
    with pytest.raises(ValueError, match="no episode could be written"):
        convert([bag], tmp_path / "none", image_size=32, episode_topic=MARKER)
    saved = json.loads((tmp_path / "none" / REPORT_FILE).read_text())
    assert [e["status"] for e in saved["episodes"]] == ["skipped", "skipped"]
    assert "no instruction" in saved["episodes"][0]["reasons"][-1]
    report = convert([bag], tmp_path / "out", image_size=32, instruction="stack the blocks", episode_topic=MARKER)
    first, second = report["episodes"]
    assert (first["status"], second["status"]) == ("written", "written")
    assert abs(first["steps"] - 0.9 * robot.control_hz) <= 2 and abs(second["steps"] - 1.2 * robot.control_hz) <= 2
    eps = list(read_rlds(report["summary"]["dataset_dir"]))
    assert [len(e["action"]) for e in eps] == [first["steps"], second["steps"]]
    assert {e["language_instruction"] for e in eps} == {"stack the blocks"}


def test_cli(robot, raw_bag, tmp_path, capsys):
    bag = make_bag(robot, raw_bag, tmp_path / "good.mcap")
    assert main(["from-bags", str(bag), "--robot", "r1lite", "--out", str(tmp_path / "out"),
                 "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "written  good.mcap#0" in out and "1 written, 0 cut, 0 skipped" in out
    assert main(["from-bags", str(tmp_path / "nope.mcap"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err


def test_control_steps_and_clean_runs():
    period = 66_666_667
    jitter = np.array([0, 3, -4, 2, 0, 5, -2]) * 1_000_000
    stamps = np.arange(7) * period + jitter
    taken, missing = control_steps(stamps, period)
    assert taken.tolist() == list(range(7)) and missing.tolist() == [0] * 7
    fast = np.arange(14) * period // 2  # a 30 Hz camera, 15 Hz control: every second set
    assert control_steps(fast, period)[0].tolist() == list(range(0, 14, 2))
    slow = np.arange(10) * int(period * 1.02)  # 2 % slower than nominal: no drift off the grid
    assert control_steps(slow, period)[0].tolist() == list(range(10))
    gap = np.concatenate([np.arange(4), np.arange(8, 11)]) * period
    taken, missing = control_steps(gap, period)
    assert taken.tolist() == list(range(7)) and missing.tolist() == [0, 0, 0, 0, 4, 0, 0]  # ticks 4..7
    bad = np.array([True, False, False, False, True, False, False, False, False])
    assert longest_clean_run(bad, np.zeros(9, int)) == (5, 9)
    assert longest_clean_run(bad, np.array([0, 0, 0, 0, 0, 0, 0, 1, 0])) == (1, 4)
    assert longest_clean_run(np.ones(3, bool), np.zeros(3, int)) == (0, 0)


def test_state_layout(robot):
    assert state_layout(robot) == {"joint_position_arm_left": 6, "gripper_state_left": 1,
                                   "joint_position_arm_right": 6, "gripper_state_right": 1}
    assert state_layout(load_robot_config("libero")) == {"state": 8}
    with pytest.raises(ValueError, match="state dims given for"):
        state_layout(robot, {"state": 14})
    wider = {"joint_position_arm_left": 7, "gripper_state_left": 1, "joint_position_arm_right": 6,
             "gripper_state_right": 1}
    assert state_layout(robot, wider) == wider


def test_converters_import_without_rclpy():
    import subprocess
    import sys

    code = ("import sys, wp_training.data.bag_convert, wp_training.data.lerobot_convert\n"
            "print(sorted(m for m in sys.modules if m.startswith('rclpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
