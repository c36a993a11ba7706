"""Aggregator node: robot cameras + joint feedback -> synchronised observation sets on /wp/obs/*.

Subscribes to every camera of the robot config (CompressedImage JPEG or raw Image, camera QoS) and every joint
feedback topic (JointState, feedback QoS; joints read by name, or by index when a message has no names). Frames are
decoded and resized-with-pad to the model resolution on arrival; :class:`wp_policy.obs_sync.ObsSynchronizer` turns
them into sets. Each set is published as ``/wp/obs/<view>``
(Image rgb8) plus ``/wp/obs/proprio`` (JointState, physical units, proprio names), all with the SAME header.stamp.
Stale or missing inputs produce no set and an ERROR/WARN on /diagnostics; malformed messages (corrupt JPEG, NaN,
wrong length) are counted, reported and dropped, and the node carries on. It also watches the other nodes'
heartbeats (their /diagnostics, :mod:`wp_policy.heartbeat`): a planner or filler silent for ``heartbeat_timeout``
(frozen, deadlocked) is an ERROR here.

    python -m wp_policy.ros.aggregator_node --ros-args -p robot_config:=r1lite -p sync_tolerance:=0.05
"""

from __future__ import annotations

import time
from functools import partial

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from wp_policy.heartbeat import HeartbeatMonitor
from wp_policy.image_proc import ImageDecodeError, resize_with_pad
from wp_policy.obs_sync import DEFAULT_INPUT_TIMEOUT, DEFAULT_SYNC_TOLERANCE, InvalidInput, ObsSynchronizer
from wp_policy.robot_config import load_robot_config
from wp_policy.ros.conversions import (
    image_msg_to_rgb,
    joint_state_position,
    make_joint_state,
    rgb_to_image_msg,
    stamp_to_ns,
)
from wp_policy.ros.diagnostics import ERROR, OK, WARN, Diagnostics
from wp_policy.ros.node_main import reject_unknown_parameters, run_node
from wp_policy.ros.qos import QOS_NAMES, qos_profile
from wp_policy.ros.topics import DIAGNOSTICS_TOPIC, OBS_QOS, PROPRIO_TOPIC, TOPIC_QOS, camera_topic, obs_topic

PARAMS = {  # name: (default, description)
    "robot_config": ("r1lite", "robot config name (configs/robots/<name>.yaml) or path to a robot YAML"),
    "sync_tolerance": (DEFAULT_SYNC_TOLERANCE, "max |stamp difference| (s) between the views and the proprio "
                                               "sample of one set"),
    "input_timeout": (DEFAULT_INPUT_TIMEOUT, "an input not received for this long (s, node clock) is stale: no sets "
                                             "are published"),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages"),
    "image_size": (0, "model resolution (square, pixels); 0 = the robot config's image_size"),
    "input_qos": ("", "QoS profile name for the camera/feedback subscriptions; empty = the robot config's. "
                      "Lock-step bag replay needs 'reliable' (best-effort, keep-last-1 inputs drop within a step)"),
    "watch_nodes": (["planner", "filler"], "nodes whose /diagnostics are a heartbeat: silence -> ERROR here"),
    "heartbeat_timeout": (3.0, "s without /diagnostics from a watched node (heard before) -> reported frozen/dead"),
}
_POSITIVE = ("sync_tolerance", "input_timeout", "diagnostics_period", "heartbeat_timeout")
_READ_ONLY = ("robot_config", "image_size", "diagnostics_period", "input_qos", "watch_nodes", "heartbeat_timeout")


class AggregatorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("aggregator", **kwargs)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name, (default, description) in PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                      read_only=name in _READ_ONLY))
        reject_unknown_parameters(self)
        p = {name: self.get_parameter(name).value for name in PARAMS}
        self.robot = load_robot_config(p["robot_config"])
        self.size = p["image_size"] or self.robot.image_size
        self.input_qos = p["input_qos"]
        self.sync = ObsSynchronizer.from_robot(self.robot, p["sync_tolerance"], p["input_timeout"])
        self.diag = Diagnostics(self, p["diagnostics_period"], self._status)
        self.diag.extra.append(lambda: {"count.time_jumps": self.sync.time_jumps})
        self.heartbeats = HeartbeatMonitor(p["watch_nodes"], p["heartbeat_timeout"])
        self._silent: dict[str, float] = {}
        self.diag.extra.append(lambda: {f"count.heartbeat_lost.{n.lstrip('/')}": c
                                        for n, c in self.heartbeats.lost.items()})
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics,
                                 qos_profile(TOPIC_QOS[DIAGNOSTICS_TOPIC]))
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # heartbeats are wall-clock facts, also under sim time
        self.create_timer(min(0.5, p["heartbeat_timeout"] / 4), self._check_heartbeats, clock=steady)
        self._last_rejection = ""
        self._rejections_in_window = 0
        obs_qos = qos_profile(OBS_QOS)
        self.image_pubs = {v: self.create_publisher(Image, obs_topic(v), obs_qos) for v in self.robot.camera_views}
        self.proprio_pub = self.create_publisher(JointState, PROPRIO_TOPIC, obs_qos)
        self._subscribe()
        self.get_logger().info(
            f"{self.robot.robot_type}: {len(self.robot.cameras)} cameras, {len(self.robot.ros.feedback)} feedback "
            f"topics -> /wp/obs/* at {self.size}x{self.size}"
        )

    def _subscribe(self) -> None:
        cam_qos = qos_profile(self.input_qos or self.robot.ros.camera_qos)
        for cam in self.robot.cameras:
            msg_type = CompressedImage if cam.encoding == "jpeg" else Image
            self.create_subscription(msg_type, camera_topic(cam), partial(self._on_image, cam.view), cam_qos)
        fb_qos = qos_profile(self.input_qos or self.robot.ros.feedback_qos)
        for fb in self.robot.ros.feedback:
            self.create_subscription(JointState, fb.topic, partial(self._on_feedback, fb.topic), fb_qos)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_image(self, view: str, msg: Image | CompressedImage) -> None:
        t0 = time.monotonic()
        try:
            rgb = resize_with_pad(image_msg_to_rgb(msg), self.size, self.size)
        except ImageDecodeError as exc:
            self._reject(view, exc)
            return
        self.diag.latency("decode", time.monotonic() - t0)
        self.diag.event(f"in.{view}")
        self.sync.add_image(view, stamp_to_ns(msg.header.stamp), rgb, self._now())
        self._publish_if_complete()

    def _on_feedback(self, topic: str, msg: JointState) -> None:
        try:
            self.sync.add_feedback(topic, stamp_to_ns(msg.header.stamp), joint_state_position(msg), self._now(),
                                   msg.name)
        except InvalidInput as exc:
            self._reject(topic, exc)
            return
        self.diag.event(f"in.{topic}")
        self._publish_if_complete()

    def _publish_if_complete(self) -> None:
        now = self._now()
        obs = self.sync.try_assemble(now)
        if obs is None:
            return
        for view, rgb in obs.images.items():
            self.image_pubs[view].publish(rgb_to_image_msg(rgb, obs.stamp_ns))
        self.proprio_pub.publish(make_joint_state(self.robot.proprio.names, obs.proprio, obs.stamp_ns))
        self.diag.count("sets")
        self.diag.event("sets")
        self.diag.latency("frame_to_set", now - obs.received)

    def _reject(self, source: str, exc: Exception) -> None:
        self._rejections_in_window += 1
        self._last_rejection = f"{source}: {exc}"
        self.diag.count(f"rejected.{source}")
        self.get_logger().warning(f"rejected message on {source}: {exc}", throttle_duration_sec=1.0)
        self.diag.alert()  # report the fault at once, not up to one period later

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for status in msg.status:
            self.heartbeats.beat(status.name, now)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        new = self.heartbeats.newly_silent(now, self._silent)
        self._silent = self.heartbeats.silent(now)
        if new:
            self.get_logger().error(f"no /diagnostics from {new} for {self.heartbeats.timeout:g} s: frozen or dead?")
            self.diag.alert()

    def _status(self) -> tuple[bytes, str]:
        if self._silent:
            ages = ", ".join(f"{n} for {age:.1f} s" for n, age in self._silent.items())
            return ERROR, f"no /diagnostics from {ages} (frozen or dead?)"
        sync = self.sync.status(self._now())
        rejected, self._rejections_in_window = self._rejections_in_window, 0
        if sync.stale or sync.missing:
            # inputs that arrive but are all rejected (e.g. a joint name the driver does not publish) are an error
            # to fix, not a driver still starting up
            why = f"; rejected {rejected} message(s), last: {self._last_rejection}" if rejected else ""
            return ERROR if sync.stale or rejected else WARN, f"no observation sets: {sync.message()}{why}"
        if rejected:
            return WARN, f"rejected {rejected} malformed message(s); last: {self._last_rejection}"
        return OK, sync.message()

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name in _POSITIVE and not (isinstance(p.value, (int, float)) and p.value > 0):
                return SetParametersResult(successful=False, reason=f"{p.name} must be > 0, got {p.value!r}")
            if p.name == "image_size" and not (isinstance(p.value, int) and p.value >= 0):
                return SetParametersResult(successful=False, reason=f"image_size must be >= 0, got {p.value!r}")
            if p.name == "input_qos" and p.value not in ("", *QOS_NAMES):
                return SetParametersResult(successful=False, reason=f"input_qos {p.value!r} is not one of {QOS_NAMES}")
        if hasattr(self, "sync"):  # live changes after start-up
            values = {p.name: p.value for p in params}
            self.sync.configure(values.get("sync_tolerance", self.sync.tolerance),
                                values.get("input_timeout", self.sync.timeout))
        return SetParametersResult(successful=True)


def main(args=None):
    run_node(AggregatorNode, args, name="aggregator")


if __name__ == "__main__":
    main()
