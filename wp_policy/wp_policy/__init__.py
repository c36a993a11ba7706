"""wp_policy: everything needed to run a waypoint VLA policy. The ROS-free core never imports rclpy."""

__version__ = "0.1.0"
