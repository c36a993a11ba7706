"""Build a simulation env from a name: ``robosuite:Lift``, ``robosuite:Lift,Stack``, ``libero:libero_object``.

The name is what configs and command lines carry; :class:`SimEnvConfig` is the frozen config block an evaluation or
bridge config embeds (loaded through :mod:`wp_policy.config_io`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wp_policy.sim.base import SimEnv
from wp_policy.sim.protocol import LIBERO_SUITES, RENDER_SIZE
from wp_policy.sim.libero_env import LiberoEnv
from wp_policy.sim.robosuite_env import STANDIN_TASKS, RobosuiteEnv

@dataclass(frozen=True)
class Backend:
    """A simulation backend and what it can do, so callers ask for a capability rather than compare names."""

    name: str
    targets: tuple[str, ...]  # the task (stand-ins) or suite (LIBERO) names it knows
    single_target: bool  # an env holds exactly one suite (LIBERO); the stand-ins combine tasks
    uses_init_states: bool  # trials start from the target's fixed init states, not from seeded placements
    always_renders: bool  # cameras cannot be switched off (render: false is refused)
    recovery_demos: bool  # its scripted experts can start from a missed grasp (collect-sim --missed-grasp-fraction)
    build: Callable[[tuple[str, ...], SimEnvConfig], SimEnv]


def _robosuite(targets: tuple[str, ...], config: SimEnvConfig) -> SimEnv:
    return RobosuiteEnv(targets, render=config.render, image_size=config.image_size)


def _libero(targets: tuple[str, ...], config: SimEnvConfig) -> SimEnv:
    return LiberoEnv(targets[0], image_size=config.image_size)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("robosuite", tuple(STANDIN_TASKS), single_target=False, uses_init_states=False,
                always_renders=False, recovery_demos=True, build=_robosuite),
        Backend("libero", LIBERO_SUITES, single_target=True, uses_init_states=True, always_renders=True,
                recovery_demos=False, build=_libero),
    )
}


def parse_env_name(name: str) -> tuple[str, tuple[str, ...]]:
    """``"backend:a,b"`` -> ``(backend, (a, b))``, checked against the known backends, tasks and suites."""
    backend, sep, rest = name.partition(":")
    if not sep or backend not in BACKENDS:
        raise ValueError(f"env name {name!r} must look like '<backend>:<task or suite>' with backend in "
                         f"{tuple(BACKENDS)}")
    targets = tuple(t.strip() for t in rest.split(",") if t.strip())
    if not targets:
        raise ValueError(f"env name {name!r} names no task or suite after ':'")
    known = BACKENDS[backend].targets
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise ValueError(f"env name {name!r}: unknown {backend} target(s) {unknown}; known: {list(known)}")
    if BACKENDS[backend].single_target and len(targets) != 1:
        raise ValueError(f"env name {name!r}: a {backend} env holds exactly one suite")
    return backend, targets


def backend_of(name: str) -> Backend:
    """The backend (with its capabilities) an env name runs on."""
    return BACKENDS[parse_env_name(name)[0]]


def available_env_names() -> list[str]:
    """Every single-target name :func:`make_env` accepts (LIBERO ones still need the package and assets)."""
    return [f"{b.name}:{t}" for b in BACKENDS.values() for t in b.targets]


@dataclass(frozen=True)
class SimEnvConfig:
    """Which simulator a run uses and how it renders."""

    env: str = "robosuite:Lift"  # see parse_env_name
    render: bool = True  # False: no camera images (robosuite only; experts and state-only checks)
    image_size: int = RENDER_SIZE  # square render size of both cameras (LIBERO protocol: 256)

    def __post_init__(self):
        backend = backend_of(self.env)
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if backend.always_renders and not self.render:
            raise ValueError(f"env {self.env!r}: {backend.name} always renders; set render: true")


def make_env(config: SimEnvConfig | str) -> SimEnv:
    """Create the env a config (or a bare env name) describes. Raises SimUnavailableError if it cannot run here."""
    if isinstance(config, str):
        config = SimEnvConfig(env=config)
    backend, targets = parse_env_name(config.env)
    return BACKENDS[backend].build(targets, config)
