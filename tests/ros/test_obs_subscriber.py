import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from ros_helpers import wait_for
from sensor_msgs.msg import Image, JointState

from wp_policy.ros.conversions import make_joint_state, rgb_to_image_msg
from wp_policy.ros.obs_subscriber import ObsSetSubscriber
from wp_policy.ros.qos import qos_profile

pytestmark = pytest.mark.ros


def test_sets_are_rebuilt_by_stamp_and_bad_parts_dropped(rclpy_context, r1lite_config):
    cfg = r1lite_config
    talker, receiver = Node("obs_talker"), Node("obs_receiver")
    got = []
    sub = ObsSetSubscriber(receiver, cfg, got.append)
    pubs = {v: talker.create_publisher(Image, f"/wp/obs/{v}", qos_profile("reliable")) for v in cfg.camera_views}
    proprio_pub = talker.create_publisher(JointState, "/wp/obs/proprio", qos_profile("reliable"))
    executor = SingleThreadedExecutor()
    executor.add_node(talker)
    executor.add_node(receiver)

    def spin_until(pred, what):
        wait_for(lambda: executor.spin_once(timeout_sec=0.01) or pred(), 10, what, poll=0)

    spin_until(lambda: proprio_pub.get_subscription_count() > 0 and all(
        p.get_subscription_count() > 0 for p in pubs.values()), "discovery")
    for k, stamp in enumerate((100, 200)):
        for view, pub in reversed(pubs.items()):  # order does not matter
            pub.publish(rgb_to_image_msg(np.full((4, 4, 3), k, np.uint8), stamp))
        proprio_pub.publish(make_joint_state(cfg.proprio.names, np.arange(14.0) + k, stamp))
    proprio_pub.publish(make_joint_state(cfg.proprio.names[:3], [0.0] * 3, 300))  # wrong size: dropped
    spin_until(lambda: len(got) == 2 and sub.rejected == 1, "two sets and one rejection")
    assert [o.stamp_ns for o in got] == [100, 200] and sub.latest is got[-1]
    assert set(got[1].images) == set(cfg.camera_views) and got[1].images["head"][0, 0, 0] == 1
    np.testing.assert_array_equal(got[1].proprio, np.arange(14.0) + 1)
    executor.shutdown()
    talker.destroy_node()
    receiver.destroy_node()
