import subprocess
import sys

ROS_FREE = ["wp_policy.image_proc", "wp_policy.obs_sync", "wp_policy.safety", "wp_policy.command_map",
            "wp_policy.graph", "wp_policy.supervisor", "wp_policy.ros.bag_io", "wp_policy.ros.bag_synth",
            "wp_policy.ros.topics", "wp_policy.runtime.filler_core", "wp_policy.runtime.timeline"]


def test_core_modules_import_without_rclpy():
    code = f"import sys\nfor m in {ROS_FREE!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.startswith('rclpy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
