"""Receiving side of /wp/obs/*: rebuilds the aggregator's observation sets for the planner and the filler.

The aggregator publishes every view and the proprio of one set as separate messages with the same header.stamp.
:class:`ObsSetSubscriber` subscribes to all of them, joins them by stamp (:class:`StampedSetCollector`) and calls
``on_set(ObsSet)`` once per complete set; malformed parts (undecodable image, proprio of the wrong size or names)
are counted in ``rejected`` and dropped. ``latest`` always holds the newest complete set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from wp_policy.image_proc import ImageDecodeError
from wp_policy.obs_sync import PROPRIO_PART, InvalidInput, ObsSet, StampedSetCollector
from wp_policy.robot_config import RobotConfig
from wp_policy.ros.conversions import image_msg_to_rgb, joint_state_position, stamp_to_ns
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import OBS_QOS, PROPRIO_TOPIC, obs_topic


class ObsSetSubscriber:
    def __init__(self, node: Node, robot: RobotConfig, on_set: Callable[[ObsSet], None] | None = None,
                 callback_group: CallbackGroup | None = None):
        self.node = node
        self.robot = robot
        self.on_set = on_set
        self.latest: ObsSet | None = None
        self.rejected = 0
        self._collector = StampedSetCollector([*robot.camera_views, PROPRIO_PART])
        qos = qos_profile(OBS_QOS)
        for view in robot.camera_views:
            node.create_subscription(Image, obs_topic(view), partial(self._on_image, view), qos,
                                     callback_group=callback_group)
        node.create_subscription(JointState, PROPRIO_TOPIC, self._on_proprio, qos, callback_group=callback_group)

    def _on_image(self, view: str, msg: Image) -> None:
        try:
            rgb = image_msg_to_rgb(msg)
        except ImageDecodeError as exc:
            self._reject(view, exc)
            return
        self._add(view, stamp_to_ns(msg.header.stamp), rgb)

    def _on_proprio(self, msg: JointState) -> None:
        try:
            proprio = self._proprio(msg)
        except InvalidInput as exc:
            self._reject(PROPRIO_PART, exc)
            return
        self._add(PROPRIO_PART, stamp_to_ns(msg.header.stamp), proprio)

    def _proprio(self, msg: JointState) -> np.ndarray:
        pos = joint_state_position(msg)
        if pos.size != self.robot.proprio.dim or not np.all(np.isfinite(pos)):
            raise InvalidInput(f"proprio must be {self.robot.proprio.dim} finite values, got {pos.tolist()}")
        if msg.name and tuple(msg.name) != self.robot.proprio.names:
            raise InvalidInput(f"proprio names {list(msg.name)} differ from the robot config's")
        return pos

    def _add(self, part: str, stamp_ns: int, data) -> None:
        done = self._collector.add(part, stamp_ns, data)
        if done is None:
            return
        stamp, parts = done
        proprio = parts.pop(PROPRIO_PART)
        received = self.node.get_clock().now().nanoseconds * 1e-9
        self.latest = ObsSet(stamp_ns=stamp, images=parts, proprio=proprio, received=received)
        if self.on_set is not None:
            self.on_set(self.latest)

    def _reject(self, part: str, exc: Exception) -> None:
        self.rejected += 1
        self.node.get_logger().warning(f"dropped /wp/obs part {part}: {exc}", throttle_duration_sec=1.0)
