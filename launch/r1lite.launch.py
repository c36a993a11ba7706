"""Galaxea R1 Lite graph: aggregator -> VLM planner -> AE filler -> arm/gripper command topics.

    ros2 launch wp_policy r1lite.launch.py policy:=/ckpt/policy.yaml instruction:="put the cup in the box"
    ros2 launch wp_policy r1lite.launch.py vlm_checkpoint:=/ckpt/vlm ae_checkpoint:=/ckpt/ae \
        stats:=/ckpt/stats.json tokenizer:=/ckpt/tokenizer.model device:=cuda
    ros2 launch wp_policy r1lite.launch.py --show-args

The policy file (a PolicyConfig YAML) gives every policy setting; the path and device arguments override it.
The graph (nodes, arguments, parameters) is defined once in wp_policy.graph; ``wp-launch r1lite`` runs the same one.
"""

from wp_policy.ros.launch_description import graph_launch_description

GRAPH = "r1lite"


def generate_launch_description():
    return graph_launch_description(GRAPH)
