"""LIBERO simulation graph: the bridge stands in for the robot drivers and publishes /clock (use_sim_time).

    ros2 launch wp_policy libero_sim.launch.py vlm_checkpoint:=/ckpt/vlm ae_checkpoint:=/ckpt/ae \
        stats:=/ckpt/stats.json tokenizer:=/ckpt/tokenizer.model env:=libero:libero_object task_id:=0 trials:=50
    ros2 launch wp_policy libero_sim.launch.py --show-args

The graph (nodes, arguments, parameters) is defined once in wp_policy.graph; ``wp-launch libero_sim`` runs the same one.
"""

from wp_policy.ros.launch_description import graph_launch_description

GRAPH = "libero_sim"


def generate_launch_description():
    return graph_launch_description(GRAPH)
