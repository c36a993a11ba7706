"""Any robot by its config: aggregator -> VLM planner -> AE filler -> the robot config's command topics.

    ros2 launch wp_policy robot.launch.py robot_config:=/robots/my_arm.yaml policy:=/ckpt/policy.yaml
    ros2 launch wp_policy robot.launch.py policy:=/ckpt/policy.yaml   # the policy file's robot (a YAML path)
    ros2 launch wp_policy robot.launch.py --show-args

The robot YAML (docs/robots.md) names the cameras, feedback and command topics with their message types, the limits
and the gripper convention; ``robot_config`` is required unless the policy file names the robot. The graph (nodes,
arguments, parameters) is defined once in wp_policy.graph; ``wp-launch robot`` runs the same one.
"""

from wp_policy.ros.launch_description import graph_launch_description

GRAPH = "robot"


def generate_launch_description():
    return graph_launch_description(GRAPH)
