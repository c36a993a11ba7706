"""The aggregator as a real process started by wp-launch, fed by wp-bag replay and by a live publisher."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import yaml
from bag_fixtures import camera_stamps, feedback_samples
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import Listener, collect_sets, diagnostics_of, wait_for, wp_bag, wp_launch
from sensor_msgs.msg import CompressedImage, Image, JointState

from wp_policy.image_proc import encode_jpeg
from wp_policy.paths import config_dir
from wp_policy.ros.conversions import image_msg_to_rgb, ns_to_stamp
from wp_policy.ros.diagnostics import status_values

pytestmark = [pytest.mark.ros, pytest.mark.slow]

INPUT_TIMEOUT = 0.5
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    data = yaml.safe_load((config_dir() / "graphs" / "r1lite.yaml").read_text())
    data["aggregator"]["ros__parameters"].update(diagnostics_period=0.2, input_timeout=INPUT_TIMEOUT,
                                                 sync_tolerance=TOLERANCE)
    path = tmp_path_factory.mktemp("params") / "r1lite_test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def listener(rclpy_context, r1lite_config):
    node = Listener("aggregator_test_listener")
    for view in r1lite_config.camera_views:
        node.listen(Image, f"/wp/obs/{view}")
    node.listen(JointState, "/wp/obs/proprio")
    node.listen(DiagnosticArray, "/diagnostics")
    yield node
    node.close()


@pytest.fixture(scope="module")
def aggregator(params_file, listener):
    proc = wp_launch("r1lite", "--nodes", "aggregator", f"params_file:={params_file}")
    wait_for(lambda: listener.count_publishers("/wp/obs/proprio") > 0 or proc.popen.poll() is not None, 20,
             "the aggregator to come up")
    assert proc.popen.poll() is None, proc.output
    yield proc
    assert proc.stop() == 0, proc.output


def test_bag_replay_gives_synchronised_sets(aggregator, listener, r1lite_bag, r1lite_config):
    listener.clear()
    replay = wp_bag("replay", str(r1lite_bag))
    assert replay.wait(60) == 0, replay.output
    wait_for(lambda: len(listener.get("/wp/obs/proprio")) >= 40, 5, "observation sets")
    time.sleep(0.3)
    views = r1lite_config.camera_views
    sets = collect_sets(listener, views)
    # one set per frame group (45 in the bag), each complete: every view + proprio share one stamp
    assert len(sets) >= 40
    assert all(len(listener.get(f"/wp/obs/{v}")) == len(sets) for v in views)
    stamps = [s for s, _ in sets]
    assert stamps == sorted(set(stamps))
    # the set stamp is the newest view of the group: the last camera's capture stamp
    last_cam = [c.topic for c in r1lite_config.cameras][-1]
    assert set(stamps) <= set(camera_stamps(r1lite_bag, last_cam))
    for _, parts in sets:
        img = parts["head"]
        assert (img.encoding, img.height, img.width) == ("rgb8", 224, 224)
        rgb = image_msg_to_rgb(img)
        assert not rgb[:28].any() and rgb[28:196].any()  # 320x240 -> 224x168, padded 28 rows top and bottom
        assert list(parts["proprio"].name) == list(r1lite_config.proprio.names)
    _check_proprio_matches_bag(sets, r1lite_bag, r1lite_config)


def _check_proprio_matches_bag(sets, bag, cfg):
    nearest_hits = 0
    for fb in cfg.ros.feedback:
        t, pos = feedback_samples(bag, fb.topic)
        for stamp, parts in sets:
            got = np.asarray(parts["proprio"].position)[list(fb.proprio_dims)]
            near = np.abs(t - stamp) <= TOLERANCE * 1e9
            assert any(np.array_equal(got, p[list(fb.source_indices)]) for p in pos[near]), (fb.topic, stamp)
            nearest = pos[np.argmin(np.abs(t - stamp))][list(fb.source_indices)]
            nearest_hits += np.array_equal(got, nearest)
    assert nearest_hits >= 0.5 * len(sets) * len(cfg.ros.feedback)  # keep-last-1 feedback QoS may drop some


class LiveFeed(Node):
    """Publishes R1-Lite-like inputs from timers, stamped with the wall clock; cameras can be switched off."""

    def __init__(self, cfg):
        super().__init__("live_feed")
        self.cfg = cfg
        self.frame = encode_jpeg(np.full((120, 160, 3), 90, dtype=np.uint8))
        self.cameras_on = {c.view: True for c in cfg.cameras}
        self.feedback_on = True
        self.cam_pubs = {c.view: self.create_publisher(CompressedImage, c.topic, qos_profile_sensor_data)
                         for c in cfg.cameras}
        self.fb_pubs = {fb.topic: self.create_publisher(JointState, fb.topic, 10) for fb in cfg.ros.feedback}
        self.create_timer(1 / 15, self._cameras)
        self.create_timer(1 / 100, self._feedback)

    def _stamp(self):
        return ns_to_stamp(time.time_ns())

    def _cameras(self):
        stamp = self._stamp()
        for view, pub in self.cam_pubs.items():
            if self.cameras_on[view]:
                msg = CompressedImage(format="jpeg", data=self.frame)
                msg.header.stamp = stamp
                pub.publish(msg)

    def _feedback(self):
        if not self.feedback_on:
            return
        stamp = self._stamp()
        for fb in self.cfg.ros.feedback:
            msg = JointState(position=[0.1] * len(fb.source_indices))
            msg.header.stamp = stamp
            self.fb_pubs[fb.topic].publish(msg)


@pytest.fixture
def live_feed(aggregator, listener, r1lite_config):
    feed = LiveFeed(r1lite_config)
    executor = SingleThreadedExecutor(context=feed.context)
    executor.add_node(feed)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    listener.clear()
    wait_for(lambda: len(listener.get("/wp/obs/proprio")) >= 3, 10, "sets from the live feed")
    yield feed
    executor.shutdown(timeout_sec=1.0)
    feed.destroy_node()


def test_camera_that_stops_gives_no_sets_and_an_error(live_feed, listener):
    live_feed.cameras_on["head"] = False
    listener.clear()
    wait_for(lambda: any(s.level == DiagnosticStatus.ERROR and "stale: head" in s.message
                         for s in diagnostics_of(listener, "/aggregator")), INPUT_TIMEOUT + 3, "a stale-camera error")
    n = len(listener.get("/wp/obs/proprio"))
    time.sleep(0.5)
    assert len(listener.get("/wp/obs/proprio")) == n  # no sets while the head camera is silent
    assert n <= 1 + INPUT_TIMEOUT * 15  # at most the sets before the timeout expired (none: head is required)
    live_feed.cameras_on["head"] = True
    wait_for(lambda: len(listener.get("/wp/obs/proprio")) >= n + 3, 5, "sets after the camera came back")


def test_malformed_messages_are_rejected_and_the_node_stays_alive(live_feed, listener, aggregator, r1lite_config):
    arm_left, grip_left, arm_right, _ = (fb.topic for fb in r1lite_config.ros.feedback)
    wrist = r1lite_config.cameras[1].topic
    bad = [
        (arm_left, JointState(position=[0.1, float("nan"), 0.1, 0.1, 0.1, 0.1])),
        (arm_right, JointState(position=[0.1, 0.2, 0.3])),  # wrong length
        (grip_left, JointState(name=["a", "b"], position=[10.0])),  # names/positions mismatch
        (wrist, CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0garbage")),
    ]
    live_feed.feedback_on = False  # the feedback QoS is keep-last-1: a good sample could replace a bad one unread
    for _ in range(3):
        for topic, msg in bad:
            msg.header.stamp = ns_to_stamp(time.time_ns())
            pub = live_feed.cam_pubs["wrist_left"] if topic == wrist else live_feed.fb_pubs[topic]
            pub.publish(msg)
        time.sleep(0.05)

    def counters():
        values = [status_values(s) for s in diagnostics_of(listener, "/aggregator")]
        return values[-1] if values else {}

    wanted = [f"count.rejected.{t}" for t in (arm_left, arm_right, grip_left)] + ["count.rejected.wrist_left"]
    wait_for(lambda: all(int(counters().get(k, 0)) >= 1 for k in wanted), 5, f"rejection counters {wanted}")
    live_feed.feedback_on = True
    assert any(s.level == DiagnosticStatus.WARN and "rejected" in s.message
               for s in diagnostics_of(listener, "/aggregator"))
    n = len(listener.get("/wp/obs/proprio"))
    wait_for(lambda: len(listener.get("/wp/obs/proprio")) >= n + 3, 5, "sets after the faults")
    assert aggregator.popen.poll() is None
