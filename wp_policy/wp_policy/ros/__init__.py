"""ROS 2 side of wp_policy: thin rclpy nodes over the ROS-free core, plus QoS, conversions, diagnostics and bags.

Only modules in this package import rclpy (and some only rosbags); ``wp_policy`` outside it never does.
"""
