"""ROS test plumbing: an isolated DDS domain per test process, one rclpy context, a synthetic R1 Lite bag.

Every test process gets its own ``ROS_DOMAIN_ID`` (``tests/ros_domains.py``: pytest-xdist workers never hear each
other) and localhost-only discovery; child processes (wp-launch, wp-bag) inherit both through the environment.
"""

from __future__ import annotations

import pytest

from bag_fixtures import r1lite_bag_spec
from ros_domains import isolate

isolate()


@pytest.fixture(scope="session")
def r1lite_bag(tmp_path_factory, r1lite_config):
    """A 3 s R1-Lite-style MCAP bag: 3 JPEG views at 15 Hz, 4 JointState feedback topics at 100 Hz."""
    from wp_policy.ros.bag_synth import write_synthetic_bag

    path = tmp_path_factory.mktemp("bags") / "r1lite.mcap"
    write_synthetic_bag(path, r1lite_config, r1lite_bag_spec())
    return path
