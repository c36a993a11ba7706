"""robosuite stand-ins for LIBERO: same robot, controller, rate, cameras and observation conventions, no assets.

robosuite's own tasks run everywhere robosuite does, build in a fraction of a LIBERO scene's time and expose their
object poses to scripted experts; the shipped demo policy and most simulation tests use them.
Each stand-in task uses LIBERO's setup (Panda, OSC_POSE delta control at 20 Hz, cameras ``agentview`` +
``robot0_eye_in_hand``) so data collected here has the LIBERO RLDS layout and a policy sees the same kind of inputs.

Seeded resets: robosuite 1.4 samples object placements and joint noise from numpy's global generator, so a reset
with a seed runs under a temporarily seeded global state (restored afterwards); the same seed gives the same scene in
any process. Rendering is headless: ``MUJOCO_GL`` defaults to ``egl`` when unset (``osmesa`` also works). On CPU
(Mesa llvmpipe) rendering must not share a process with TensorFlow (see :func:`check_render_process`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from wp_policy.sim.base import SimEnv, SimObservation, SimUnavailableError, StepResult, TaskSpec, validate_action
from wp_policy.sim.camera import project_to_view
from wp_policy.sim.conventions import (CAMERAS, EEF_POS_KEY, EEF_QUAT_KEY, camera_of_view, libero_images,
                                       libero_state)
from wp_policy.sim.protocol import RENDER_SIZE

CONTROL_HZ = 20
_HORIZON = 100_000  # robosuite's own time limit is disabled (ignore_done); callers own the step budget


@dataclass(frozen=True)
class StandInTask:
    """A robosuite environment presented as a LIBERO-style task."""

    spec: TaskSpec
    env_name: str  # robosuite environment class name
    object_keys: tuple[str, ...]  # ground-truth object observations handed to scripted experts


# max_steps: about twice the scripted expert's mean episode (Lift 49, Stack 97 steps), like LIBERO's budgets
STANDIN_TASKS: Mapping[str, StandInTask] = MappingProxyType(
    {
        "Lift": StandInTask(
            TaskSpec("Lift", "pick up the red cube", max_steps=100), "Lift", ("cube_pos", "cube_quat")
        ),
        "Stack": StandInTask(
            TaskSpec("Stack", "put the red cube on the green cube", max_steps=220),
            "Stack",
            ("cubeA_pos", "cubeA_quat", "cubeB_pos", "cubeB_quat"),
        ),
    }
)


def import_robosuite():
    """Import robosuite for headless use (``MUJOCO_GL`` must be set before mujoco is first imported)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import robosuite
    except ImportError as exc:
        raise SimUnavailableError(
            f"robosuite is not importable ({exc}); install robosuite==1.4.1 with mujoco==3.8.1"
        ) from exc
    return robosuite


def check_render_process() -> None:
    """Refuse to render in a process that has imported TensorFlow (unless WP_SIM_ALLOW_TF_RENDER=1).

    On CPU machines MuJoCo renders through Mesa's llvmpipe, whose libLLVM clashes with the LLVM copy inside
    TensorFlow: the process segfaults (tensorflow/tensorflow#109933). Render in a separate process instead; on a
    GPU EGL driver the clash does not exist and the variable lifts the check.
    """
    if "tensorflow" in sys.modules and os.environ.get("WP_SIM_ALLOW_TF_RENDER") != "1":
        raise SimUnavailableError(
            "this process has imported TensorFlow, and MuJoCo's Mesa (llvmpipe) renderer crashes next to it; "
            "render in a separate process (wp-data collect-sim does), or set WP_SIM_ALLOW_TF_RENDER=1 on a GPU "
            "EGL driver"
        )


@contextlib.contextmanager
def seeded_global_numpy(seed: int | None) -> Iterator[None]:
    """Run a block with numpy's global generator seeded, then restore the caller's generator state."""
    if seed is None:
        yield
        return
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    saved = np.random.get_state()
    np.random.seed(int(seed))
    try:
        yield
    finally:
        np.random.set_state(saved)


def checked_flat_state(sim, flat_state) -> np.ndarray:
    """``flat_state`` as float64 [1 + nq + nv] for ``sim``'s scene; a wrong size or NaN would corrupt the scene."""
    expected = 1 + sim.model.nq + sim.model.nv
    state = np.asarray(flat_state, dtype=np.float64)
    if state.shape != (expected,):
        raise ValueError(f"init state must have shape ({expected},) = 1 + nq + nv for this scene, got {state.shape}")
    if not np.all(np.isfinite(state)):
        raise ValueError("init state contains NaN or inf")
    return state


def restore_flat_state(rs_env, flat_state: np.ndarray) -> dict:
    """Put a robosuite env into a flat MuJoCo state [1 + nq + nv] and return fresh observations.

    The steps of LIBERO's ``ControlEnv.set_init_state`` (set state, forward, refresh observables) minus its
    BDDL-specific ``_post_process``, so a saved init state behaves like a suite's.
    """
    sim = rs_env.sim
    sim.set_state_from_flattened(checked_flat_state(sim, flat_state))
    sim.forward()
    rs_env._update_observables(force=True)
    return rs_env._get_observations()


class RobosuiteEnv(SimEnv):
    """robosuite stand-in tasks behind the :class:`SimEnv` interface.

    render=False skips both cameras (images is then empty), about 14x faster: for scripted experts and tests that
    only need states. One robosuite env per task is built on first use and kept.
    """

    def __init__(self, task_names: tuple[str, ...] | None = None, render: bool = True, image_size: int = RENDER_SIZE):
        names = tuple(task_names) if task_names else tuple(STANDIN_TASKS)
        unknown = [n for n in names if n not in STANDIN_TASKS]
        if unknown:
            raise ValueError(f"unknown robosuite stand-in task(s) {unknown}; known: {list(STANDIN_TASKS)}")
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self._tasks = tuple(STANDIN_TASKS[n] for n in names)
        self.render = render
        self.image_size = image_size
        self._envs: dict[str, object] = {}
        self._current: StandInTask | None = None
        self._raw: dict | None = None

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return tuple(t.spec for t in self._tasks)

    def reset(self, task: str, *, init_state: np.ndarray | None = None, seed: int | None = None) -> SimObservation:
        self.task(task)  # unknown names fail here with the list of known tasks
        self._current = STANDIN_TASKS[task]
        rs_env = self._robosuite_env(self._current)
        with seeded_global_numpy(seed):
            raw = rs_env.reset()
        if init_state is not None:
            raw = restore_flat_state(rs_env, init_state)
        return self._observe(raw)

    def step(self, action) -> StepResult:
        if self._current is None:
            raise RuntimeError("call reset() before step()")
        rs_env = self._envs[self._current.env_name]
        raw, reward, _, _ = rs_env.step(validate_action(action))
        success = bool(rs_env._check_success())
        return StepResult(self._observe(raw), float(reward), success, {"success": success})

    def close(self) -> None:
        for rs_env in self._envs.values():
            rs_env.close()
        self._envs.clear()
        self._current = None

    def privileged_state(self) -> dict[str, np.ndarray]:
        """Ground-truth eef and object poses (quaternions xyzw) for scripted experts; never a policy input."""
        if self._raw is None:
            raise RuntimeError("call reset() before privileged_state()")
        keys = (EEF_POS_KEY, EEF_QUAT_KEY, *self._current.object_keys)
        out = {k: np.array(self._raw[k], dtype=np.float64) for k in keys}
        out["table_height"] = np.array([self._envs[self._current.env_name].table_offset[2]])
        return out

    @property
    def last_raw_obs(self) -> dict:
        """The robosuite observation dict behind the latest observation (raw frames: OpenGL, upside down)."""
        if self._raw is None:
            raise RuntimeError("call reset() before last_raw_obs")
        return self._raw

    def flat_state(self) -> np.ndarray:
        """The current flat MuJoCo state [1 + nq + nv]: what LIBERO stores as an init state."""
        if self._current is None:
            raise RuntimeError("call reset() before flat_state()")
        return self._envs[self._current.env_name].sim.get_state().flatten()

    def project_points(self, points, view: str = "primary") -> np.ndarray:
        if self._current is None:
            raise RuntimeError("call reset() before project_points()")
        sim = self._envs[self._current.env_name].sim
        return project_to_view(sim, camera_of_view(view), points, self.image_size, self.image_size)

    def _observe(self, raw: dict) -> SimObservation:
        self._raw = opengl_frames(raw)
        return SimObservation(libero_images(self._raw), libero_state(self._raw), self._current.spec.instruction)

    def _robosuite_env(self, task: StandInTask):
        if task.env_name not in self._envs:
            with seeded_global_numpy(0):  # robosuite resets while building: keep that off the caller's generator
                self._envs[task.env_name] = self._make(task.env_name)
        return self._envs[task.env_name]

    def _make(self, env_name: str):
        if self.render:
            check_render_process()
        suite = import_robosuite()
        kwargs = dict(
            robots="Panda",
            controller_configs=suite.load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False,
            has_offscreen_renderer=self.render,
            use_camera_obs=self.render,
            use_object_obs=True,
            camera_names=list(CAMERAS.values()),
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            control_freq=CONTROL_HZ,
            horizon=_HORIZON,
            ignore_done=True,
            hard_reset=False,
        )
        try:
            return suite.make(env_name, **kwargs)
        except Exception as exc:
            if not self.render:
                raise
            raise SimUnavailableError(
                f"could not create robosuite {env_name} with offscreen rendering (MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')}): {exc}. Headless rendering needs EGL (Debian: libegl1 "
                "libgl1-mesa-dri) or OSMesa (MUJOCO_GL=osmesa, libosmesa6)."
            ) from exc


def opengl_frames(raw: dict) -> dict:
    """Raw observations with camera frames in robosuite's default OpenGL (upside-down) convention.

    LIBERO's 180 degree rotation assumes that convention; a user macro IMAGE_CONVENTION="opencv" flips frames
    vertically first, which is undone here so observations do not depend on a local robosuite setting.
    """
    from robosuite import macros

    if macros.IMAGE_CONVENTION != "opencv":
        return raw
    out = dict(raw)
    for camera in CAMERAS.values():
        key = f"{camera}_image"
        if key in out:
            out[key] = np.ascontiguousarray(out[key][::-1])
    return out
