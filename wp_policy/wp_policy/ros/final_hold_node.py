"""wp_final_hold: one last explicit hold on every command topic, sent on the filler's behalf when it is gone.

The filler ends with hold commands itself when it is stopped (Ctrl-C, SIGTERM, the graph shutting down). When it
dies without that chance (killed, crashed, frozen and then killed), the launcher (``wp-launch``, or ``ros2 launch``
through an on-exit handler) starts this one-shot node: it reads the robot's joint feedback, and publishes
``ticks`` hold commands of the measured position, through the same SafetyFilter -> CommandMapper path and in the same
message types as the filler, on every command topic, then exits 0. Delta-action robots (LIBERO) hold with zero
motion and need no feedback.
Exit 1 with one line when no feedback arrived within ``feedback_wait_s`` (nothing safe to send) or no controller
subscribes to a command topic.

Why: the R1 Lite's command topics take absolute targets (joint angles with max velocities, gripper stroke), and
Galaxea's SDK documents no command timeout for them: a controller that keeps its last target keeps driving toward
it, so after a silent end the arm would finish whatever motion the last command started, and what it does after
that is up to the controller's firmware. An explicit hold of the measured position makes the end of a run the
robot's current pose, whatever the controller does with silence afterwards.

    python -m wp_policy.ros.final_hold_node --ros-args -p robot_config:=r1lite
"""

from __future__ import annotations

import sys
import time
from functools import partial

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState

from wp_policy.command_map import CommandMapper
from wp_policy.config_io import ConfigError
from wp_policy.obs_sync import InvalidInput
from wp_policy.robot_config import FeedbackConfig, load_robot_config
from wp_policy.ros.conversions import command_message, command_msg_class
from wp_policy.ros.feedback import FeedbackComposer
from wp_policy.ros.node_main import reject_unknown_parameters
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import HOLD_FRAME_PREFIX
from wp_policy.safety import HoldReason, SafetyFilter


class FinalHoldNode(Node):
    def __init__(self):
        super().__init__("final_hold")
        self.declare_parameter("robot_config", "r1lite")
        self.declare_parameter("command_qos", "")
        self.declare_parameter("feedback_wait_s", 5.0)
        self.declare_parameter("ticks", 5)
        reject_unknown_parameters(self)
        self.robot = robot = load_robot_config(self.get_parameter("robot_config").value)
        self.wait_s = float(self.get_parameter("feedback_wait_s").value)
        self.ticks = int(self.get_parameter("ticks").value)
        if self.wait_s <= 0 or self.ticks < 1:
            raise ConfigError(f"feedback_wait_s must be > 0 and ticks >= 1, got {self.wait_s}, {self.ticks}")
        self.mapper = CommandMapper(robot)
        self.safety = SafetyFilter.from_robot(robot)
        self.feedback = FeedbackComposer(robot)
        self.rejected = ""  # why the last feedback message was refused (a missing joint name, NaN)
        cmd_qos = qos_profile(self.get_parameter("command_qos").value or robot.ros.command_qos)
        self.pubs = {c.topic: self.create_publisher(command_msg_class(c.msg_type), c.topic, cmd_qos)
                     for c in robot.ros.commands}
        for fb in robot.ros.feedback:
            self.create_subscription(JointState, fb.topic, partial(self._on_feedback, fb),
                                     qos_profile(robot.ros.feedback_qos))

    def _on_feedback(self, fb: FeedbackConfig, msg: JointState) -> None:
        try:
            self.feedback.update(fb, msg, time.monotonic())
        except InvalidInput as exc:
            self.rejected = str(exc)
            self.get_logger().warning(f"{fb.topic}: {exc}", throttle_duration_sec=1.0)

    @property
    def needs_feedback(self) -> bool:
        return self.robot.action_kind != "delta_eef"

    def run(self) -> tuple[bool, str]:
        """Wait for the measurement and the controllers, then send the holds; (ok, what happened)."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and not self._ready():
            rclpy.spin_once(self, timeout_sec=0.01)
        if self.needs_feedback and not self.feedback.complete:
            rejected = f" (last rejected: {self.rejected})" if self.rejected else ""
            return False, (f"no joint feedback on {[fb.topic for fb in self.robot.ros.feedback]} within "
                           f"{self.wait_s:g} s: no hold could be computed{rejected}")
        if self.needs_feedback:
            self.safety.observe_feedback(self.feedback.values, time.monotonic())
        decision = self.safety.hold(HoldReason.FILLER_GONE)
        frame_id = f"{HOLD_FRAME_PREFIX}{decision.reason}"
        for _ in range(self.ticks):
            for payload in self.mapper.split(decision.action):
                msg = command_message(payload, self.get_clock().now().nanoseconds, frame_id)
                self.pubs[payload.topic].publish(msg)
            rclpy.spin_once(self, timeout_sec=self.robot.control_period)
        unheard = [t for t, p in self.pubs.items() if p.get_subscription_count() == 0]
        held = ", ".join(f"{v:.4g}" for v in decision.action)
        if unheard:
            return False, f"sent {self.ticks} hold(s) [{held}], but nothing subscribes to {unheard}"
        return True, f"sent {self.ticks} hold(s) [{held}] on {', '.join(self.pubs)}"

    def _ready(self) -> bool:
        matched = all(p.get_subscription_count() > 0 for p in self.pubs.values())
        return matched and (self.feedback.complete or not self.needs_feedback)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = FinalHoldNode()
        ok, message = node.run()
    except ConfigError as exc:
        ok, message = False, f"cannot start: {exc}"
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    print(f"wp_final_hold: {message}", file=sys.stdout if ok else sys.stderr, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
