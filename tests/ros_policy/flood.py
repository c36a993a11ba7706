"""A flood from another process: well-formed JointTrajectory messages with joint names no robot has, published on
/wp/waypoints at ``--rate`` Hz (reliable, as the planner publishes) until killed or ``--duration`` ends; prints the
rate it reached. The filler must parse and reject every one of them while a stop still gets through at once."""

from __future__ import annotations

import argparse
import time

import rclpy
from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from wp_policy.ros.conversions import ns_to_stamp, sec_to_duration
from wp_policy.ros.qos import qos_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", default="/wp/waypoints")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=120.0)
    args = parser.parse_args()
    rclpy.init()
    node = Node("flood")
    pub = node.create_publisher(JointTrajectory, args.topic, qos_profile("reliable"))
    msg = JointTrajectory(joint_names=[f"nobody_{i}" for i in range(14)],
                          points=[JointTrajectoryPoint(positions=[0.0] * 14, time_from_start=sec_to_duration(0.6))])
    while pub.get_subscription_count() == 0:
        time.sleep(0.05)
    print("flooding", flush=True)
    period, sent, start = 1.0 / args.rate, 0, time.monotonic()
    while time.monotonic() - start < args.duration:
        msg.header.stamp = ns_to_stamp(time.time_ns())
        pub.publish(msg)
        sent += 1
        delay = start + sent * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if sent % 1000 == 0:
            print(f"rate {sent / (time.monotonic() - start):.0f} Hz", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
