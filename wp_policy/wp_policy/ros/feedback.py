"""The measured proprio from a robot's joint feedback topics, as the filler and the final-hold node read it.

Each feedback topic fills some proprio dims (robot config ``ros.feedback``); the measurement is complete once every
topic has been heard, and its age is that of the oldest topic. Joints are read by name (index when the message has
none, :func:`wp_policy.obs_sync.feedback_values`). Malformed messages raise :class:`InvalidInput`.
"""

from __future__ import annotations

import math

import numpy as np
from sensor_msgs.msg import JointState

from wp_policy.obs_sync import feedback_values
from wp_policy.robot_config import FeedbackConfig, RobotConfig
from wp_policy.ros.conversions import joint_state_position


class FeedbackComposer:
    def __init__(self, robot: RobotConfig):
        self.values = np.full(robot.proprio.dim, np.nan)
        self.times = {fb.topic: -math.inf for fb in robot.ros.feedback}

    def update(self, fb: FeedbackConfig, msg: JointState, now: float) -> None:
        """Take one feedback message received at ``now``; InvalidInput if it lacks finite values for its joints."""
        self.values[list(fb.proprio_dims)] = feedback_values(fb, joint_state_position(msg), msg.name)
        self.times[fb.topic] = now

    @property
    def oldest(self) -> float:
        """Receive time of the least recent topic (-inf until every topic was heard)."""
        return min(self.times.values())

    @property
    def complete(self) -> bool:
        return self.oldest > -math.inf
