"""Build a simulation env from a name: ``robosuite:Lift``, ``robosuite:Lift,Stack``, ``libero:libero_object``.

The name is what configs and command lines carry; :class:`SimEnvConfig` is the frozen config block an evaluation or
bridge config embeds (loaded through :mod:`wp_policy.config_io`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wp_policy.sim.base import SimEnv
from wp_policy.sim.protocol import LIBERO_SUITES, RENDER_SIZE
from wp_policy.sim.libero_env import LiberoEnv
from wp_policy.sim.robosuite_env import STANDIN_TASKS, RobosuiteEnv

BACKENDS = ("robosuite", "libero")


def parse_env_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``"backend:a,b"`` -> ``(backend, (a, b))``, checked against the known backends, tasks and suites."""
    backend, sep, rest = name.partition(":")
    if not sep or backend not in BACKENDS:
        raise ValueError(f"env name {name!r} must look like '<backend>:<task or suite>' with backend in {BACKENDS}")
    targets = tuple(t.strip() for t in rest.split(",") if t.strip())
    if not targets:
        raise ValueError(f"env name {name!r} names no task or suite after ':'")
    known = tuple(STANDIN_TASKS) if backend == "robosuite" else LIBERO_SUITES
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise ValueError(f"env name {name!r}: unknown {backend} target(s) {unknown}; known: {list(known)}")
    if backend == "libero" and len(targets) != 1:
        raise ValueError(f"env name {name!r}: a LIBERO env holds exactly one suite")
    return backend, targets


def available_env_names() -> list[str]:
    """Every single-target name :func:`make_env` accepts (LIBERO ones still need the package and assets)."""
    return [f"robosuite:{t}" for t in STANDIN_TASKS] + [f"libero:{s}" for s in LIBERO_SUITES]


@dataclass(frozen=True)
class SimEnvConfig:
    """Which simulator a run uses and how it renders."""

    env: str = "robosuite:Lift"  # see parse_env_name
    render: bool = True  # False: no camera images (robosuite only; experts and state-only checks)
    image_size: int = RENDER_SIZE  # square render size of both cameras (LIBERO protocol: 256)

    def __post_init__(self):
        backend, _ = parse_env_name(self.env)
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if backend == "libero" and not self.render:
            raise ValueError(f"env {self.env!r}: LIBERO's OffScreenRenderEnv always renders; set render: true")


def make_env(config: SimEnvConfig | str) -> SimEnv:
    """Create the env a config (or a bare env name) describes. Raises SimUnavailableError if it cannot run here."""
    if isinstance(config, str):
        config = SimEnvConfig(env=config)
    backend, targets = parse_env_name(config.env)
    if backend == "robosuite":
        return RobosuiteEnv(targets, render=config.render, image_size=config.image_size)
    return LiberoEnv(targets[0], image_size=config.image_size)
