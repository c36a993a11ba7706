"""The measured proprio from a robot's joint feedback topics, as the filler and the final-hold node read it.

Each feedback topic fills some proprio dims (robot config ``ros.feedback``); the measurement is complete once every
topic has been heard, and its age is that of the oldest topic. Malformed messages raise :class:`InvalidInput`.
"""

from __future__ import annotations

import math

import numpy as np
from sensor_msgs.msg import JointState

from wp_policy.obs_sync import InvalidInput
from wp_policy.robot_config import FeedbackConfig, RobotConfig
from wp_policy.ros.conversions import joint_state_position


class FeedbackComposer:
    def __init__(self, robot: RobotConfig):
        self.values = np.full(robot.proprio.dim, np.nan)
        self.times = {fb.topic: -math.inf for fb in robot.ros.feedback}

    def update(self, fb: FeedbackConfig, msg: JointState, now: float) -> None:
        """Take one feedback message received at ``now``; InvalidInput if it lacks finite values for its dims."""
        pos = joint_state_position(msg)
        if pos.size <= max(fb.source_indices) or not np.all(np.isfinite(pos[list(fb.source_indices)])):
            raise InvalidInput(f"need {max(fb.source_indices) + 1} finite positions, got {pos.tolist()}")
        self.values[list(fb.proprio_dims)] = pos[list(fb.source_indices)]
        self.times[fb.topic] = now

    @property
    def oldest(self) -> float:
        """Receive time of the least recent topic (-inf until every topic was heard)."""
        return min(self.times.values())

    @property
    def complete(self) -> bool:
        return self.oldest > -math.inf
