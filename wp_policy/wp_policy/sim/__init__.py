"""Simulation environments in LIBERO conventions (ROS-free): robosuite stand-ins and the real LIBERO suites.

Build one with :func:`wp_policy.sim.registry.make_env` (``"robosuite:Lift"``, ``"libero:libero_object"``). Heavy
simulator imports happen only when an env is created.
"""

from wp_policy.sim.base import SimEnv, SimObservation, SimUnavailableError, StepResult, TaskSpec, validate_action

__all__ = ["SimEnv", "SimObservation", "SimUnavailableError", "StepResult", "TaskSpec", "validate_action"]
