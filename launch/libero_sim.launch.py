"""LIBERO simulation graph: the bridge stands in for the robot drivers and publishes /clock (use_sim_time).

    ros2 launch wp_policy libero_sim.launch.py policy:=/ckpt/policy.yaml env:=libero:libero_object task_id:=0 \
        trials:=50
    ros2 launch wp_policy libero_sim.launch.py --show-args

The policy file (a PolicyConfig YAML) gives every policy setting; the path and device arguments override it.
The graph (nodes, arguments, parameters) is defined once in wp_policy.graph; ``wp-launch libero_sim`` runs the same one.
"""

from wp_policy.ros.launch_description import graph_launch_description

GRAPH = "libero_sim"


def generate_launch_description():
    return graph_launch_description(GRAPH)
