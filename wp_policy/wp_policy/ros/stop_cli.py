"""wp-stop: stop the robot now (operator stop) and get the filler's confirmation, or resume it.

    wp-stop                 # /wp/stop: the filler drops its queue and holds, and stays stopped (latched) whatever
                            # plans arrive; the planner stops re-planning. Exit 0 only once the filler confirmed.
    wp-stop --resume        # /wp/resume (std_srvs/Trigger) on the filler: it releases the latch and asks the
                            # planner for a plan from the next observation

The stop takes the dedicated path, which floods on other topics cannot crowd out: a ``std_msgs/Header`` on the
/wp/stop topic (every node listens, best effort with a deep queue, so reliable and best-effort publishers both reach
it; e.g. ``ros2 topic pub --once /wp/stop std_msgs/msg/Header``) and the /wp/stop service (``std_srvs/Trigger``) on
the filler, whose answer is the confirmation that the stop latch is engaged. A duration-0 waypoint on /wp/waypoints
stops the robot too (the mission's interface), without a confirmation. Publishing a new instruction message on
/wp/instruction also resumes (and restarts the task). Exit codes: 0 confirmed, 1 not confirmed (no filler, no
answer in time) or the resume was refused, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from rclpy.node import Node
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from wp_policy.cli_help import HelpFormatter
from wp_policy.ros.conversions import ns_to_stamp
from wp_policy.ros.qos import qos_profile
from wp_policy.ros.topics import RESUME_SERVICE, STOP_SERVICE, STOP_TOPIC

CALL_RETRY_S = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-stop", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--resume", action="store_true", help=f"call {RESUME_SERVICE} instead of stopping")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the filler's answer (stop: its confirmation)")
    return parser


def send_stop(node: Node, timeout: float) -> tuple[bool, str]:
    """Publish the stop on /wp/stop (to every subscriber matched so far, again as others match) and call the
    filler's /wp/stop service; confirmed only by the service's answer. The call is repeated every
    ``CALL_RETRY_S`` until answered (stops are idempotent): a service can look ready before its reply path has
    matched, and that first answer is then lost."""
    pub = node.create_publisher(Header, STOP_TOPIC, qos_profile("reliable"))
    client = node.create_client(Trigger, STOP_SERVICE)
    deadline = time.monotonic() + timeout
    future, called, heard = None, -float("inf"), 0
    while time.monotonic() < deadline:
        count = pub.get_subscription_count()
        if count > heard:
            pub.publish(Header(stamp=ns_to_stamp(time.time_ns()), frame_id="wp-stop"))
            heard = count
        if client.service_is_ready() and time.monotonic() - called > CALL_RETRY_S:
            future, called = client.call_async(Trigger.Request()), time.monotonic()
        if future is not None and future.done():
            break
        rclpy.spin_once(node, timeout_sec=0.02)
    published = f"published on {STOP_TOPIC} to {heard} subscriber(s)"
    if future is None:
        return False, (f"NOT CONFIRMED: the filler's {STOP_SERVICE} service is not available (is the filler running "
                       f"in this ROS_DOMAIN_ID?); {published}")
    if not future.done() or future.result() is None:
        return False, f"NOT CONFIRMED: {STOP_SERVICE} did not answer within {timeout:g} s; {published}"
    return future.result().success, f"stop confirmed by the filler: {future.result().message}"


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
