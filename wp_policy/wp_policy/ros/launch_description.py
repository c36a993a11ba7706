"""Build a ROS 2 LaunchDescription from a graph in ``wp_policy.graph`` (what ``launch/*.launch.py`` call).

Every graph argument is declared first (default + description). The nodes are created at launch time by an
OpaqueFunction that hands the argument values to :func:`wp_policy.graph.resolve_graph`, the same function
``wp-launch`` uses, so both launchers start the same nodes with the same parameters files, parameters and remaps;
it also reads the ``policy:=`` file there (``wp_policy.policy_config`` needs neither torch nor the project venv).
A node marked ``ends_graph`` shuts the launch down when it exits (as wp-launch does). A node that ``covers`` another
(the final hold) is not started with the graph: an ``OnProcessExit`` handler starts it when the covered node exits
(launch does not tell a clean exit from a crash there, so it also runs after a clean one: one more hold, harmless).
Needs the ``launch`` and ``launch_ros`` packages of a ROS 2 install.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from wp_policy.graph import GraphSpec, ResolvedNode, get_graph, resolve_graph

PACKAGE = "wp_policy"


def graph_launch_description(graph_name: str) -> LaunchDescription:
    graph = get_graph(graph_name)
    declared = []
    for arg in graph.arguments:
        kwargs = {"choices": list(arg.choices)} if arg.choices else {}
        declared.append(DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.help, **kwargs))
    return LaunchDescription([*declared, OpaqueFunction(function=_launch_nodes, args=[graph])])


def _launch_nodes(context: LaunchContext, graph: GraphSpec) -> list:
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in graph.arguments}
    nodes = resolve_graph(graph, values)
    actions = {node.name: _node_action(node) for node in nodes if not node.covers}
    handlers = [RegisterEventHandler(OnProcessExit(target_action=actions[node.covers], on_exit=[_node_action(node)]))
                for node in nodes if node.covers in actions]
    return [*actions.values(), *handlers]


def _node_action(node: ResolvedNode) -> Node:
    return Node(
        package=PACKAGE,
        executable=node.executable,
        name=node.name,
        output="screen",
        emulate_tty=True,
        parameters=[*(str(f) for f in node.params_files), dict(node.parameters)],
        remappings=list(node.remaps),
        **({"on_exit": Shutdown(reason=f"{node.name} finished")} if node.ends_graph else {}),
    )
