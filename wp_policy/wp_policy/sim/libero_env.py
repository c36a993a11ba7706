"""The real LIBERO suites behind the :class:`SimEnv` interface (needs the ``libero`` package and its assets).

Everything follows the published protocol (:mod:`wp_policy.sim.protocol`): tasks and their order come from LIBERO's
benchmark API, init states from the suite's ``.pruned_init`` files, the scene is ``OffScreenRenderEnv`` with both
cameras at 256x256, seeded with 7, and observations go through the same conversions as the stand-ins.

Two deliberate departures from calling LIBERO naively:

- LIBERO's ``import libero.libero`` asks questions on stdin when ``~/.libero/config.yaml`` is missing, and its
  ``get_task_init_states`` calls ``torch.load`` without ``weights_only=False``, which PyTorch >= 2.6 refuses for the
  pickled numpy arrays LIBERO ships. So the config and paths are checked here first (:func:`resolve_libero_paths`)
  and init states are read by :func:`load_init_states`.
- When anything is missing, :class:`SimUnavailableError` names the missing package, file or folder and how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wp_policy.sim.base import SimEnv, SimObservation, SimUnavailableError, StepResult, TaskSpec, validate_action
from wp_policy.sim.conventions import libero_images, libero_state
from wp_policy.sim.protocol import EVAL_SEED, RENDER_SIZE, max_steps_for_suite
from wp_policy.sim.robosuite_env import check_render_process, import_robosuite

LIBERO_REPO = "https://github.com/Lifelong-Robot-Learning/LIBERO"
_PATH_KEYS = ("bddl_files", "init_states", "assets")


@dataclass(frozen=True)
class LiberoPaths:
    """The folders LIBERO reads, from its config file (``$LIBERO_CONFIG_PATH/config.yaml``)."""

    config_file: Path
    bddl_files: Path
    init_states: Path
    assets: Path


def libero_config_file() -> Path:
    """Where LIBERO keeps its config (same rule as ``libero.libero``)."""
    return Path(os.environ.get("LIBERO_CONFIG_PATH", "~/.libero")).expanduser() / "config.yaml"


def resolve_libero_paths(config_file: Path | None = None) -> LiberoPaths:
    """Read LIBERO's config and check that the task files, init states and scene assets exist."""
    config_file = Path(config_file) if config_file is not None else libero_config_file()
    if not config_file.is_file():
        raise SimUnavailableError(
            f"LIBERO config file {config_file} not found. Create it (or point LIBERO_CONFIG_PATH at its folder) "
            f"with the keys {list(_PATH_KEYS)} set to the folders of your LIBERO checkout, "
            "e.g. bddl_files: <LIBERO>/libero/libero/bddl_files"
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
            hint = " (LIBERO scene assets: see the LIBERO README for the download)" if key == "assets" else ""
            raise SimUnavailableError(f"LIBERO {key} folder {path} (from {config_file}) does not exist{hint}")
    return LiberoPaths(config_file=config_file, **paths)


def require_libero(config_file: Path | None = None):
    """Import LIBERO's benchmark API and env class after checking package, config and folders.

    Returns ``(benchmark_module, OffScreenRenderEnv, LiberoPaths)``.
    """
    if importlib.util.find_spec("libero") is None:
        raise SimUnavailableError(
            f"the `libero` package is not installed: clone {LIBERO_REPO} and `pip install -e` it (with its "
            "requirements bddl, easydict, robosuite==1.4.1), then provide its assets; the robosuite stand-ins "
            "('robosuite:Lift', 'robosuite:Stack') run without it"
        )
    paths = resolve_libero_paths(config_file)
    os.environ["LIBERO_CONFIG_PATH"] = str(paths.config_file.parent)  # libero.libero reads the same file
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
    """One LIBERO suite; the scene of the current task is kept until a reset asks for another task."""

    def __init__(self, suite: str, image_size: int = RENDER_SIZE, seed: int = EVAL_SEED, config_file=None):
        self.max_steps = max_steps_for_suite(suite)
        self.suite_name = suite
        self.image_size = image_size
        self.seed = seed
        benchmark, self._env_cls, self.paths = require_libero(config_file)
        self._suite = benchmark.get_benchmark_dict()[suite]()
        suite_tasks = [self._suite.get_task(i) for i in range(self._suite.get_num_tasks())]
        self._tasks = tuple(TaskSpec(t.name, t.language, self.max_steps) for t in suite_tasks)
        self._env = None
        self._env_task: str | None = None

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
            raw = env.set_init_state(np.asarray(init_state, dtype=np.float64))
        return self._observe(raw)

    def step(self, action) -> StepResult:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        raw, reward, _, _ = self._env.step(validate_action(action).tolist())
        success = bool(self._env.check_success())
        return StepResult(self._observe(raw), float(reward), success, {"success": success})

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env, self._env_task = None, None

    def _index(self, name: str) -> int:
        self.task(name)
        return [t.name for t in self._tasks].index(name)

    def _scene(self, name: str):
        if self._env_task != name:
            self.close()
            check_render_process()
            bddl, _ = self.task_files(name)
            self._env = self._env_cls(
                bddl_file_name=str(bddl), camera_heights=self.image_size, camera_widths=self.image_size
            )
            self._env.seed(self.seed)
            self._env_task = name
        return self._env

    def _observe(self, raw: dict) -> SimObservation:
        return SimObservation(libero_images(raw), libero_state(raw), self.task(self._env_task).instruction)
