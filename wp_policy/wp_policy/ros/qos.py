"""Named QoS profiles. Robot configs and topic tables refer to QoS by these names, never by raw settings.

- ``sensor_data``: best effort, keep last 5 (rclpy's sensor profile): cameras, where late frames are useless;
- ``reliable``: reliable, keep last 10, volatile: policy streams that must not silently drop (obs sets, waypoints);
- ``reliable_latched``: reliable, keep last 1, transient local: state a late joiner needs (the instruction);
- ``best_effort_keep_last_1``: the Galaxea R1 Lite SDK's choice for joint feedback and commands;
- ``stop`` / ``stop_reliable``: keep last 100, best effort / reliable: the two subscriptions every node has on
  /wp/stop. A reliable subscription never hears a best-effort publisher, and a reliable publisher sends only best
  effort to a best-effort subscription, so both exist: each publisher gets the best delivery it offers (a stop heard
  twice is still one stop), in a deep queue of its own.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

_PROFILES = {
    "sensor_data": qos_profile_sensor_data,
    "reliable": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    ),
    "reliable_latched": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    ),
    "best_effort_keep_last_1": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    ),
    "stop": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    ),
    "stop_reliable": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    ),
}

QOS_NAMES = tuple(_PROFILES)


def qos_profile(name: str) -> QoSProfile:
    """The profile called ``name`` (one of :data:`QOS_NAMES`); a ValueError names the known ones."""
    try:
        return _PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown QoS profile {name!r}; known: {list(QOS_NAMES)}") from None
