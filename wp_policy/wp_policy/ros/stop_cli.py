"""wp-stop: stop the robot now (operator stop), or resume it.

    wp-stop                 # duration-0 waypoint on /wp/waypoints: the filler drops its queue and holds, and stays
                            # stopped (latched) whatever plans arrive; the planner stops re-planning
    wp-stop --resume        # calls /wp/resume (std_srvs/Trigger) on the filler: it releases the latch and asks
                            # the planner for a plan from the next observation

The stop is a ``trajectory_msgs/JointTrajectory`` with one point at ``time_from_start`` 0 and no joint names (the
same as ``ros2 topic pub --once /wp/waypoints trajectory_msgs/msg/JointTrajectory "{points: [{time_from_start:
{sec: 0}}]}"``), published reliably to every subscriber as it matches and kept until each acknowledged it.
Publishing a new instruction message on /wp/instruction also resumes (and restarts the task). Exit codes: 0 done, 1 nobody
listening or the resume was refused, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from wp_policy.ros.plan_msgs import stop_message
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import RESUME_SERVICE, TOPIC_QOS, WAYPOINTS_TOPIC

SETTLE_S = 3.0  # discovery is taken as complete once no new subscriber matched for this long (loaded hosts
# match the planner and the filler seconds apart; the first publish still goes out at the first match)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-stop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", action="store_true", help=f"call {RESUME_SERVICE} instead of stopping")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a subscriber (stop) or for the filler's service (resume)")
    return parser


def send_stop(node: Node, timeout: float) -> tuple[bool, str]:
    """Publish the stop to every subscriber of /wp/waypoints, the filler AND the planner.

    A reliable volatile message only reaches subscribers already matched, and under load discovery matches them
    one by one, so the stop is published at the first match and again whenever another subscriber matches, until
    none appeared for ``SETTLE_S`` (stops are idempotent); then we wait until every subscriber acknowledged it.
    """
    pub = node.create_publisher(JointTrajectory, WAYPOINTS_TOPIC, qos_profile(TOPIC_QOS[WAYPOINTS_TOPIC]))
    deadline = time.monotonic() + timeout
    listeners, stable_since = 0, time.monotonic()
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.02)
        count = pub.get_subscription_count()
        if count > listeners:
            pub.publish(stop_message(time.time_ns()))
            listeners, stable_since = count, time.monotonic()
        elif listeners and time.monotonic() - stable_since >= SETTLE_S:
            break
    if listeners == 0:
        return False, f"nobody subscribes to {WAYPOINTS_TOPIC} (is the filler running in this ROS_DOMAIN_ID?)"
    acked = pub.wait_for_all_acked(Duration(seconds=max(deadline - time.monotonic(), 0.5)))
    return True, f"stop sent to {listeners} subscriber(s){'' if acked else ' (not all acknowledged it yet)'}"


def call_resume(node: Node, timeout: float) -> tuple[bool, str]:
    client = node.create_client(Trigger, RESUME_SERVICE)
    if not client.wait_for_service(timeout_sec=timeout):
        return False, f"{RESUME_SERVICE} is not available (is the filler running?)"
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if future.result() is None:
        return False, f"{RESUME_SERVICE} did not answer within {timeout} s"
    return future.result().success, future.result().message


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print(f"wp-stop: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return 2
    rclpy.init()
    node = Node("wp_stop")
    try:
        ok, message = (call_resume if args.resume else send_stop)(node, args.timeout)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"wp-stop: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
