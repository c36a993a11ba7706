"""The one entry-point pattern every node's ``main()`` uses: init, build the node, spin, shut down cleanly.

Ctrl-C and SIGTERM end the spin and exit 0. They are handled here rather than by rclpy's own handlers, which shut
the context down at once: a node still needs a live context to say goodbye, so a node that defines
``before_shutdown()`` (the filler: a final hold on every command topic) gets it called first, then the node is
destroyed. A second signal while that runs interrupts it.

A node that cannot start because of bad configuration (missing file, invalid parameter, bad robot config, a
checkpoint that does not fit, a CUDA device that is not there) logs ONE fatal line, ``cannot start: <reason>``, naming
the problem and the setting to change, and exits 1, which ``wp-launch`` reports with the node's name. Anything else
(a bug) propagates with its traceback. rclpy's shutdown still destroys a node whose constructor failed half-way (it
tracks every node), so a node's ``destroy_node`` must cope with attributes its constructor never set: clean-up must
not add a second error.

    def main(args=None):
        run_node(AggregatorNode, args, name="aggregator")
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from wp_policy.config_io import ConfigError
from wp_policy.graph import STARTUP_FAILURE

STARTUP_ERRORS = (ConfigError, FileNotFoundError, InvalidParameterValueException, InvalidParameterTypeException)
SPIN_TIMEOUT_S = 0.1  # how quickly a stop request is noticed


def run_node(
    factory: Callable[[], Node],
    args: list[str] | None = None,
    executor_factory: Callable[[], Executor] | None = None,
    name: str | None = None,
) -> None:
    """Run the node ``factory()`` builds until Ctrl-C / SIGTERM.

    ``executor_factory``: e.g. MultiThreadedExecutor; ``name``: logger name for start-up errors (default: factory's).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    state = _StopRequest()
    previous = {sig: signal.signal(sig, state.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = None
    try:
        try:
            node = factory()
        except STARTUP_ERRORS as exc:
            logger = rclpy.logging.get_logger(name or getattr(factory, "__name__", "node"))
            logger.fatal(STARTUP_FAILURE + " ".join(str(exc).split()))  # one line, even for a multi-line reason
            sys.exit(1)
        executor = (executor_factory or SingleThreadedExecutor)()
        executor.add_node(node)
        state.spinning = True
        while not state.requested and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
        state.spinning = False
        if hasattr(node, "before_shutdown") and rclpy.ok():
            node.before_shutdown()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reject_unknown_parameters(node: Node) -> None:
    """A parameter given to this node (params file, ``-p``) that it does not declare is a ConfigError listing the
    valid ones: ROS would ignore it silently, so a misspelt ``obs_timeot: 0.1`` would run with the default 0.5 s.
    Call once every parameter is declared. (rclpy keeps the given values in ``_parameter_overrides`` only.)"""
    declared = {name for name in node._parameters}
    unknown = sorted(set(node._parameter_overrides) - declared)
    if unknown:
        raise ConfigError(f"node {node.get_name()}: unknown parameter(s) {unknown}; valid: {sorted(declared)}")


class _StopRequest:
    """SIGINT / SIGTERM: while spinning, ask the loop to end (it notices within SPIN_TIMEOUT_S, between callbacks,
    never inside one); while starting (models loading) or saying goodbye, or on a second signal, leave at once."""

    def __init__(self):
        self.requested = False
        self.spinning = False

    def handle(self, signum, frame) -> None:
        if self.spinning and not self.requested:
            self.requested = True
            return
        self.requested = True
        raise KeyboardInterrupt
