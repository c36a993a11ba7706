"""The one entry-point pattern every node's ``main()`` uses: init, build the node, spin, shut down cleanly.

Ctrl-C and SIGTERM (rclpy's signal handlers) end the spin and exit 0. A node that cannot start because of bad
configuration (missing file, invalid parameter, bad robot config) logs ONE fatal line naming the problem and exits 1,
which ``wp-launch`` reports with the node's name. Anything else propagates with its traceback.

    def main(args=None):
        run_node(AggregatorNode, args, name="aggregator")
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, Executor, SingleThreadedExecutor
from rclpy.node import Node

from wp_policy.config_io import ConfigError

STARTUP_ERRORS = (ConfigError, FileNotFoundError, ValueError, InvalidParameterValueException,
                  InvalidParameterTypeException)


def run_node(
    factory: Callable[[], Node],
    args: list[str] | None = None,
    executor_factory: Callable[[], Executor] | None = None,
    name: str | None = None,
) -> None:
    """Run the node ``factory()`` builds until shutdown.

    ``executor_factory``: e.g. MultiThreadedExecutor; ``name``: logger name for start-up errors (default: factory's).
    """
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = factory()
        except STARTUP_ERRORS as exc:
            logger = rclpy.logging.get_logger(name or getattr(factory, "__name__", "node"))
            logger.fatal(f"cannot start: {exc}")
            sys.exit(1)
        executor = (executor_factory or SingleThreadedExecutor)()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
