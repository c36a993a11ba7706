"""A robot stand-in that closes the loop: JPEG cameras at 15 Hz and joint feedback at 100 Hz that follows the
commands it receives (a perfectly tracking arm), so a hold command equals the measured position. Cameras can be
switched off to simulate a failing driver. Every command is recorded with its receive time (``time.monotonic``).
Commands are read in each topic's configured message type, through the graph's own conversion code;
``reverse_feedback`` publishes each feedback topic's joints in reverse order (with their names), as a driver that
orders joints differently would.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, JointState

from wp_policy.command_map import CommandMapper, command_values
from wp_policy.image_proc import encode_jpeg
from wp_policy.obs_sync import feedback_layout
from wp_policy.robot_config import RobotConfig
from wp_policy.ros.bag_synth import proprio_ranges
from wp_policy.ros.conversions import command_msg_class, make_joint_state, ns_to_stamp
from wp_policy.ros.qos import qos_profile


class FakeRobot(Node):
    def __init__(self, robot: RobotConfig, camera_hz: float = 15.0, feedback_hz: float = 100.0, size=(120, 160),
                 reverse_feedback: bool = False):
        super().__init__("fake_robot")
        self.reverse_feedback = reverse_feedback
        self.renamed: dict[str, str] = {}  # joint name -> the name published instead (a misconfigured driver)
        self.last_message: dict[str, object] = {}  # command topic -> the last message received there
        self.robot = robot
        lo, hi = proprio_ranges(robot)
        self.state = (lo + hi) / 2  # physical proprio
        self.mapper = CommandMapper(robot)
        self.cameras_on = {c.view: True for c in robot.cameras}
        self.commands: list[tuple[float, np.ndarray]] = []  # (receive time, full action) per complete command
        self.reasons: list[str] = []  # header.frame_id of each complete command ("hold:<reason>", "" for actions)
        self.states: list[tuple[float, np.ndarray]] = []  # (time, state) after every command
        self._parts: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(0)
        self._size = size
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.cam_pubs = {c.view: self.create_publisher(CompressedImage, c.topic, qos_profile(robot.ros.camera_qos))
                         for c in robot.cameras}
        self.fb_pubs = {fb.topic: self.create_publisher(JointState, fb.topic, qos_profile(robot.ros.feedback_qos))
                        for fb in robot.ros.feedback}
        for cmd in robot.ros.commands:
            self.create_subscription(command_msg_class(cmd.msg_type), cmd.topic,
                                     lambda m, c=cmd: self._on_command(c, m), best_effort)
        self.create_timer(1.0 / camera_hz, self._publish_cameras)
        self.create_timer(1.0 / feedback_hz, self._publish_feedback)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def _on_command(self, cmd, msg) -> None:
        """Commands arrive per topic; the last topic of the config completes one tick's command."""
        now = time.monotonic()
        topic = cmd.topic
        with self._lock:
            self.last_message[topic] = msg
            self._parts[topic] = command_values(cmd, msg, cmd.msg_type)
            if topic != self.mapper.topics[-1] or len(self._parts) < len(self.mapper.topics):
                return
            action = self.mapper.join(self._parts)
            self._parts = {}
            for i, name in enumerate(self.robot.action.names):
                self.state[self.robot.proprio.names.index(name)] = action[i]
            self.commands.append((now, action))
            self.reasons.append(msg.header.frame_id if hasattr(msg, "header") else "")
            self.states.append((now, self.state.copy()))

    def _publish_cameras(self) -> None:
        stamp = ns_to_stamp(time.time_ns())
        h, w = self._size
        for k, (view, pub) in enumerate(self.cam_pubs.items()):
            if not self.cameras_on[view]:
                continue
            rgb = np.full((h, w, 3), 40 + 50 * k, np.uint8) + self._rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
            msg = CompressedImage(format="jpeg", data=encode_jpeg(rgb, 80))
            msg.header.stamp = stamp
            pub.publish(msg)

    def _publish_feedback(self) -> None:
        stamp_ns = time.time_ns()
        with self._lock:
            state = self.state.copy()
        for fb in self.robot.ros.feedback:
            names, position = feedback_layout(fb, state)
            if self.reverse_feedback:
                names, position = [self.renamed.get(n, n) for n in names[::-1]], position[::-1]
            else:
                names = []  # the R1 Lite tests' drivers name no joints: read by index
            self.fb_pubs[fb.topic].publish(make_joint_state(names, position, stamp_ns))

    def commands_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        with self._lock:
            return [c for c in self.commands if c[0] >= t]

    def reasons_since(self, t: float) -> list[str]:
        with self._lock:
            return [r for (when, _), r in zip(self.commands, self.reasons) if when >= t]

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self._thread.join(timeout=2.0)
        self.destroy_node()
