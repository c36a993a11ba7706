"""Policy topic names (docs/ros_graph.md) and the QoS each one uses, in one table shared by every node and tool.

Robot-side topics (cameras, feedback, commands) come from the robot config; only ``/wp/*`` names live here.
"""

from __future__ import annotations

from wp_policy.robot_config import CameraConfig

OBS_PREFIX = "/wp/obs"
PROPRIO_TOPIC = f"{OBS_PREFIX}/proprio"
INSTRUCTION_TOPIC = "/wp/instruction"
WAYPOINTS_TOPIC = "/wp/waypoints"
REPLAN_TOPIC = "/wp/replan"
ACTION_CHUNK_TOPIC = "/wp/action_chunk"
STOP_STATE_TOPIC = "/wp/stop_state"  # the filler's stop latch (std_msgs/String JSON, latched; runtime.stop_latch)
RESUME_SERVICE = "/wp/resume"  # std_srvs/Trigger on the filler: release the stop latch
STOP_TOPIC = "/wp/stop"  # std_msgs/Header: the dedicated stop path (any reliability, deep queue, its own callback)
STOP_QOS = ("stop", "stop_reliable")  # one subscription each: best-effort and reliable publishers both get through
STOP_SERVICE = "/wp/stop"  # std_srvs/Trigger on the filler: stop, answered once the latch is engaged
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"
HOLD_FRAME_PREFIX = "hold:"  # header.frame_id of a filler hold command: "hold:<reason>" (e.g. hold:stopped)
RAW_PREFIX = "/wp/raw"  # camera topics of robots whose config leaves ``topic`` empty (simulation bridge)

# topic -> named QoS profile (wp_policy.ros.qos); obs views use OBS_QOS
OBS_QOS = "reliable"
TOPIC_QOS = {
    PROPRIO_TOPIC: OBS_QOS,
    INSTRUCTION_TOPIC: "reliable_latched",
    WAYPOINTS_TOPIC: "reliable",
    REPLAN_TOPIC: "reliable",
    ACTION_CHUNK_TOPIC: "reliable",
    STOP_STATE_TOPIC: "reliable_latched",
    DIAGNOSTICS_TOPIC: "reliable",
}


def obs_topic(view: str) -> str:
    """Synchronised model-resolution image of one camera view."""
    if view == "proprio":
        raise ValueError("a camera view may not be called 'proprio' (it would collide with /wp/obs/proprio)")
    return f"{OBS_PREFIX}/{view}"


def camera_topic(camera: CameraConfig) -> str:
    """The raw topic a camera arrives on: the config's topic, or /wp/raw/<view> when the config leaves it empty."""
    return camera.topic or f"{RAW_PREFIX}/{camera.view}"
