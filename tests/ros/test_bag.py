"""wp-bag record / replay through real processes: byte-exact round trip, and reproducible lock-step replay."""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from bag_fixtures import CAMERA_PERIOD_S
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import Listener, collect_sets, wait_for, wp_bag, wp_launch
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Empty, String

from wp_policy.paths import config_dir
from wp_policy.ros.bag_io import BagReader, deserialize

pytestmark = [pytest.mark.ros, pytest.mark.slow]

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_record_then_replay_round_trip(rclpy_context, tmp_path):
    out = tmp_path / "run.mcap"
    talker = Node("bag_test_talker")
    instruction = talker.create_publisher(String, "/wp/instruction", LATCHED)
    joints = talker.create_publisher(JointState, "/test/joints", 10)
    instruction.publish(String(data="pick up the cup"))  # before the recorder exists: latched, still recorded
    recorder = wp_bag("record", "/wp/instruction", "/test/joints", "-o", str(out))
    wait_for(lambda: joints.get_subscription_count() > 0 and instruction.get_subscription_count() > 0, 20,
             "the recorder to subscribe", poll=0.05)
    sent = [JointState(name=["j"], position=[0.1 * k]) for k in range(20)]
    for msg in sent:
        joints.publish(msg)
        time.sleep(0.01)
    time.sleep(0.3)
    assert recorder.stop() == 0, recorder.output
    with BagReader(out) as bag:
        assert bag.topics["/wp/instruction"].latched and not bag.topics["/test/joints"].latched
        got = [deserialize(m.data, m.msgtype) for m in bag.messages(["/test/joints"])]
        (text,) = [deserialize(m.data, m.msgtype).data for m in bag.messages(["/wp/instruction"])]
    assert text == "pick up the cup"
    assert [list(m.position) for m in got] == [list(m.position) for m in sent]

    talker.destroy_node()  # so the only latched instruction left is the replayed one
    listener = Listener("bag_test_listener")
    listener.listen(JointState, "/test/joints")
    listener.listen(String, "/wp/instruction", qos=LATCHED)
    replay = wp_bag("replay", str(out), "--rate", "4")
    assert replay.wait(30) == 0, replay.output
    wait_for(lambda: len(listener.get("/test/joints")) == 20, 15, "replayed messages")
    assert [list(m.position) for m in listener.get("/test/joints")] == [list(m.position) for m in sent]
    assert [m.data for m in listener.get("/wp/instruction")] == ["pick up the cup"]
    listener.close()


def test_bad_bag_arguments_fail_clearly(tmp_path):
    proc = wp_bag("replay", str(tmp_path / "missing.mcap"))
    assert proc.wait(30) == 2 and "not found" in proc.output
    proc = wp_bag("info", str(tmp_path))  # a directory that is no bag
    assert proc.wait(30) != 0


@pytest.fixture
def sim_time_aggregator(tmp_path):
    data = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    data["aggregator"]["ros__parameters"].update(input_qos="reliable")  # best effort may drop inside a step
    params = tmp_path / "lockstep.yaml"
    params.write_text(yaml.safe_dump(data))
    proc = wp_launch("r1lite", "--nodes", "aggregator", "use_sim_time:=true", f"params_file:={params}")
    yield proc
    assert proc.stop() == 0, proc.output


def test_lockstep_replay_is_reproducible(rclpy_context, sim_time_aggregator, r1lite_bag, r1lite_config):
    views = r1lite_config.camera_views
    listener = Listener("lockstep_listener")
    for view in views:
        listener.listen(Image, f"/wp/obs/{view}")
    # The listener acks every proprio it hears, so the replay waits for it too: a loaded machine cannot let the
    # aggregator's reliable writers (keep last 10) run more than a step ahead of this reader and overwrite samples.
    heard = listener.create_publisher(Empty, "/test/lockstep_heard", 10)
    listener.listen(JointState, "/wp/obs/proprio", then=lambda _: heard.publish(Empty()))
    wait_for(lambda: listener.count_publishers("/wp/obs/proprio") > 0, 20, "the aggregator")
    runs = []
    for _ in range(2):
        listener.clear()
        replay = wp_bag("replay", str(r1lite_bag), "--lockstep", "--step", str(CAMERA_PERIOD_S),
                        "--ack", "/wp/obs/proprio", "--ack", "/test/lockstep_heard", "--ack-timeout", "2")
        assert replay.wait(60) == 0, replay.output
        assert "45 lock-step steps, 0 ack timeouts" in replay.output
        time.sleep(0.2)
        runs.append(collect_sets(listener, views))
    listener.close()
    first, second = runs
    assert len(first) == 45  # every frame group of the 3 s bag
    assert [s for s, _ in first] == [s for s, _ in second]
    for (_, a), (_, b) in zip(first, second):
        assert np.array_equal(a["proprio"].position, b["proprio"].position)
        assert all(bytes(a[v].data) == bytes(b[v].data) for v in views)


def test_lockstep_steps_group_messages_by_bag_time():
    from wp_policy.ros.bag import _steps
    from wp_policy.ros.bag_io import BagMessage

    msgs = [BagMessage("/t", "x", t, b"") for t in (0, 5, 10, 11, 40)]
    assert [(end, [m.log_ns for m in batch]) for end, batch in _steps(iter(msgs), 10)] == [
        (10, [0, 5, 10]), (20, [11]), (40, [40])]
    assert [end for end, _ in _steps(iter(msgs), 0)] == [0, 5, 10, 11, 40]


def test_synth_and_info_cli(tmp_path, capsys, r1lite_config):
    from wp_policy.ros.bag_cli import main

    out = tmp_path / "synth"  # no .mcap suffix: a rosbag2 directory
    assert main(["synth", "r1lite", "-o", str(out), "--duration", "1", "--width", "64", "--height", "48"]) == 0
    assert (out / "metadata.yaml").is_file()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "/hdas/feedback_arm_left  [sensor_msgs/msg/JointState]  100 msgs" in text
    assert main(["synth", "r1lite", "-o", str(out)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def test_record_with_duration_stops_by_itself(tmp_path):
    out = tmp_path / "empty.mcap"
    proc = wp_bag("record", "/nobody/publishes/this", "-o", str(out), "--duration", "1")
    assert proc.wait(30) == 0, proc.output
    with BagReader(out) as bag:
        assert bag.message_count == 0
