"""Waypoint extraction over an RLDS dataset -> ``waypoint_indices.json`` + a waypoint-filtered RLDS for the VLM.

Per episode, the measured vector is the concatenation of ``keys`` (LIBERO: ``state``; R1 Lite, as in the design
seed: ``joint_position_arm_left joint_position_arm_right``), optionally restricted to ``dims``. Forced waypoints:
the last frame and, with ``gripper_changes``, every frame after which a gripper's open/closed state changes (the
dataset action's gripper dims in model space, 0 = closed .. 1 = open, split at ``gripper_level``). Selection is
:mod:`wp_training.data.waypoints` (``dp`` exact minimum, ``greedy``, or ``awe_dp`` = AWE's own DP), run on batches of
episodes in worker processes while the main process keeps reading.

Outputs in ``out_dir``:
  waypoint_indices.json   {"format", "config" (everything that produced it, incl. the source dir), "summary",
                           "episodes": [{"index", "length", "waypoints": [0, ..., length - 1]}]}
  <filtered_name>/1.0.0/  RLDS holding only the waypoint steps (same observation keys, action, instruction) plus
                          per step ``source_step`` (index in the original episode) and ``duration`` = steps to the
                          next waypoint (0 on the last one: the episode ends there)
  plots/episode_<i>.png   optional: the measured dims over time with the waypoints and gripper changes marked,
                          one axis per dim group (LIBERO: eef position, rotation, fingers), legends naming dims

Example::

    wp-data extract-waypoints --rlds data/libero_object_no_noops/libero_object_no_noops/1.0.0 --robot libero \\
        --keys state --threshold 0.005 --out data/libero_object_wp --plot 0 1
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_training.data.rlds_reader import RldsReader, concat_keys
from wp_training.data.rlds_writer import write_rlds
from wp_training.data.waypoints import METHODS, gripper_change_frames, select_job

INDEX_FILE = "waypoint_indices.json"
INDEX_FORMAT = "wp_training.waypoint_indices/1"


@dataclass(frozen=True)
class ExtractConfig:
    source_dir: str
    out_dir: str
    robot: str = "libero"  # robot config name or YAML path
    split: str = "train"
    keys: tuple[str, ...] = ()  # observation vectors measured; empty: the robot's state_keys
    dims: tuple[int, ...] = ()  # positions inside the concatenated keys; empty: all
    threshold: float = 0.005  # max distance of any frame from its segment (units of the keys)
    method: Literal["dp", "greedy", "awe_dp"] = "dp"  # awe_dp: AWE's own DP, for comparison with AWE's tool
    max_segment: int | None = 32  # longest pair in steps (the AE horizon); None: unlimited
    gripper_changes: bool = True
    gripper_level: float = 0.5
    workers: int = 2  # selection processes; 0 or 1: in the main process
    chunk_steps: int = 20000  # steps per batch handed to a worker
    filtered: bool = True  # also write the waypoint-filtered RLDS
    filtered_name: str = ""  # default: waypoint_filtered_rlds__<robot_type>
    plot_episodes: tuple[int, ...] = ()

    def __post_init__(self):
        if not np.isfinite(self.threshold) or self.threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.max_segment is not None and self.max_segment < 1:
            raise ValueError(f"max_segment must be >= 1 or null, got {self.max_segment}")
        if not 0.0 < self.gripper_level < 1.0:
            raise ValueError(f"gripper_level must be in (0, 1), got {self.gripper_level}")
        if self.workers < 0 or self.chunk_steps < 1:
            raise ValueError(f"workers ({self.workers}) must be >= 0 and chunk_steps ({self.chunk_steps}) >= 1")
        if any(d < 0 for d in self.dims) or len(set(self.dims)) != len(self.dims):
            raise ValueError(f"dims must be distinct non-negative positions, got {list(self.dims)}")


# ---- the index file ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaypointIndex:
    """Contents of ``waypoint_indices.json``: per episode (in dataset order) its length and waypoint frames."""

    config: dict
    lengths: tuple[int, ...]
    waypoints: tuple[np.ndarray, ...]  # int64 [m + 1] each, 0 first, length - 1 last

    @property
    def num_steps(self) -> int:
        return int(sum(self.lengths))

    @property
    def num_waypoints(self) -> int:
        return int(sum(len(w) for w in self.waypoints))

    def summary(self, max_duration: int = 32) -> dict:
        gaps = np.concatenate([np.diff(w) for w in self.waypoints]) if self.waypoints else np.zeros(0)
        return {
            "num_episodes": len(self.lengths),
            "num_steps": self.num_steps,
            "num_waypoints": self.num_waypoints,
            "retention": self.num_waypoints / max(self.num_steps, 1),
            "num_pairs": int(gaps.size),
            f"pairs_within_{max_duration}": int(np.sum(gaps <= max_duration)),
            "mean_duration": float(gaps.mean()) if gaps.size else 0.0,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temp file renamed over the target)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": INDEX_FORMAT,
            "config": self.config,
            "summary": self.summary(),
            "episodes": [{"index": i, "length": n, "waypoints": w.tolist()}
                         for i, (n, w) in enumerate(zip(self.lengths, self.waypoints))],
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "WaypointIndex":
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: waypoint index not found (run `wp-data extract-waypoints`)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict) or "episodes" not in data:
            raise ValueError(f"{path}: not a waypoint index (no 'episodes' list)")
        lengths, waypoints = [], []
        for i, ep in enumerate(data["episodes"]):
            try:
                n, w = int(ep["length"]), np.asarray(ep["waypoints"], dtype=np.int64)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: episode {i}: needs 'length' and a 'waypoints' list ({exc})") from exc
            if w.ndim != 1 or w.size == 0 or w[0] != 0 or w[-1] != n - 1 or np.any(np.diff(w) <= 0):
                raise ValueError(f"{path}: episode {i}: waypoints must increase from 0 to length - 1 ({n - 1}), "
                                 f"got {w.tolist()[:8]}{'...' if w.size > 8 else ''}")
            lengths.append(n)
            waypoints.append(w)
        return cls(dict(data.get("config", {})), tuple(lengths), tuple(waypoints))

    def check_episode(self, index: int, length: int, where: str) -> np.ndarray:
        """Waypoints of episode ``index`` after checking it has ``length`` steps in the dataset being read."""
        if index >= len(self.lengths):
            raise ValueError(f"{where}: episode {index} is not in the waypoint index ({len(self.lengths)} episodes); "
                             f"the index was made from a different dataset or split")
        if self.lengths[index] != length:
            raise ValueError(f"{where}: episode {index} has {length} steps but the waypoint index says "
                             f"{self.lengths[index]}; the index was made from a different dataset")
        return self.waypoints[index]


# ---- selection --------------------------------------------------------------------------------------------------
def episode_inputs(episode: dict, robot: RobotConfig, cfg: ExtractConfig, keys: Sequence[str], index: int):
    """``(x [T, D], forced frames)`` of one episode, with errors naming the episode."""
    x = concat_keys(episode["observation"], keys)
    if cfg.dims:
        if max(cfg.dims) >= x.shape[1]:
            raise ValueError(f"dims {list(cfg.dims)} out of range: keys {list(keys)} hold {x.shape[1]} dims")
        x = x[:, list(cfg.dims)]
    if not np.all(np.isfinite(x)):
        steps = np.unique(np.nonzero(~np.isfinite(x))[0])[:5].tolist()
        raise ValueError(f"episode {index}: {'+'.join(keys)} contains NaN or inf (first steps: {steps})")
    forced = np.zeros(0, np.int64)
    if cfg.gripper_changes and robot.action.gripper_dims:
        action = robot.action_to_model(robot.select_action(episode["action"]))
        try:
            forced = gripper_change_frames(action[:, list(robot.action.gripper_dims)], cfg.gripper_level)
        except ValueError as exc:
            raise ValueError(f"episode {index}: gripper action: {exc}") from None
    return x, forced


def _chunks(reader: RldsReader, robot: RobotConfig, cfg: ExtractConfig, keys: Sequence[str]) -> Iterator[tuple]:
    xs, forced, steps = [], [], 0
    for index, episode in reader.episodes(observation_keys=keys, step_keys=("action",)):
        x, f = episode_inputs(episode, robot, cfg, keys, index)
        xs.append(x)
        forced.append(f)
        steps += len(x)
        if steps >= cfg.chunk_steps:
            yield xs, forced
            xs, forced, steps = [], [], 0
    if xs:
        yield xs, forced


def compute_waypoints(reader: RldsReader, robot: RobotConfig, cfg: ExtractConfig, keys: Sequence[str],
                      progress=None) -> list[np.ndarray]:
    """Waypoints of every episode, in dataset order; selection runs in ``cfg.workers`` worker processes."""
    jobs = ((xs, f, cfg.threshold, cfg.method, cfg.max_segment) for xs, f in _chunks(reader, robot, cfg, keys))
    out: list[np.ndarray] = []
    if cfg.workers <= 1:
        for job in jobs:
            out += select_job(job)
            if progress is not None:
                progress.update(len(job[0]))
        return out
    import multiprocessing

    # forkserver, not fork: a fork of a process that runs threads (DDS, TensorFlow, torch's pools) can inherit a
    # held lock and hang; the server is a fresh process, and workers only run numpy, never TensorFlow
    with multiprocessing.get_context("forkserver").Pool(cfg.workers) as pool:
        pending: deque = deque()
        for job in jobs:  # at most 2 chunks per worker in flight: reading never runs far ahead of selection
            pending.append((len(job[0]), pool.apply_async(select_job, (job,))))
            while len(pending) > 2 * cfg.workers:
                out += _collect(pending.popleft(), progress)
        while pending:
            out += _collect(pending.popleft(), progress)
    return out


def _collect(item, progress) -> list[np.ndarray]:
    n, result = item
    got = result.get()
    if progress is not None:
        progress.update(n)
    return got


# ---- the filtered RLDS ------------------------------------------------------------------------------------------
def filtered_episodes(reader: RldsReader, robot: RobotConfig, index: WaypointIndex, progress=None) -> Iterator[dict]:
    """The waypoint steps of every episode, in write_rlds form (images stay encoded; nothing is re-compressed)."""
    obs_keys = [c.rlds_key for c in robot.cameras] + list(robot.state_keys)
    for i, ep in reader.episodes(observation_keys=obs_keys, step_keys=("action", "language_instruction")):
        w = index.check_episode(i, len(ep["action"]), str(reader.dir))
        yield {
            "observation": {k: v[w] for k, v in ep["observation"].items()},
            "action": ep["action"][w],
            "language_instruction": ep["language_instruction"],
            "success": ep["success"],
            "file_path": ep["file_path"],
            "source_step": w.astype(np.int32),
            "duration": np.append(np.diff(w), 0).astype(np.int32),
        }
        if progress is not None:
            progress.update(1)


def write_filtered(reader: RldsReader, robot: RobotConfig, index: WaypointIndex, out_dir: Path, name: str,
                   progress=None) -> Path:
    sizes = {k: reader.layout.image_shapes[k][:2] for k in (c.rlds_key for c in robot.cameras)}
    return write_rlds(
        out_dir, filtered_episodes(reader, robot, index, progress), robot, name, image_size=sizes,
        image_encoding=reader.layout.image_encoding, step_fields={"source_step": "int32", "duration": "int32"},
        overwrite=True, description=f"Waypoint steps of {reader.dir} (config in {INDEX_FILE})",
    )


# ---- plots ------------------------------------------------------------------------------------------------------
PlotGroup = tuple[str, tuple[tuple[int, str], ...]]  # axis label, (column of x, dim label) per line


def plot_groups(robot: RobotConfig, keys: Sequence[str], key_dims: Sequence[int],
                dims: Sequence[int]) -> list[PlotGroup]:
    """How the measured columns go on axes: with the robot's state keys, its proprio groups (a dim's name from the
    robot config); other keys one axis each. ``key_dims``: width of each key; ``dims``: the selected positions."""
    source = [(k, i) for k, n in zip(keys, key_dims) for i in range(n)]
    columns = list(dims) if dims else list(range(len(source)))
    if tuple(keys) == tuple(robot.state_keys):
        dim_of = {j: d for d, j in enumerate(robot.proprio.indices)}
        groups = [(g.name, tuple((c, robot.proprio.names[dim_of[j]]) for c, j in enumerate(columns)
                                 if j in dim_of and dim_of[j] in g.dims)) for g in robot.proprio.plot_groups]
        rest = tuple((c, f"{source[j][0]}[{source[j][1]}]") for c, j in enumerate(columns) if j not in dim_of)
        groups.append(("other", rest))
    else:
        groups = [(key, tuple((c, f"{key}[{source[j][1]}]") for c, j in enumerate(columns) if source[j][0] == key))
                  for key in keys]
    return [g for g in groups if g[1]]


def waypoint_figure(x: np.ndarray, waypoints: np.ndarray, title: str = "", groups: Sequence[PlotGroup] = (),
                    gripper_frames: Sequence[int] = ()):
    """The measured dims over time (``x [T, D]``), one axis per group (default: one for all), with the waypoint
    frames marked and the forced gripper-change frames as red lines; legends name the dims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = list(groups) or [("measured value", tuple((d, f"dim {d}") for d in range(x.shape[1])))]
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 2.6 * len(groups) + 0.8), sharex=True, squeeze=False)
    t = np.arange(len(x))
    for ax, (name, lines) in zip(axes[:, 0], groups):
        for d, label in lines:
            line, = ax.plot(t, x[:, d], lw=1.2, alpha=0.85, label=label)
            ax.plot(waypoints, x[waypoints, d], "o", ms=3.5, color=line.get_color())
        for w in waypoints:
            ax.axvline(w, color="0.85", lw=0.6, zorder=0)
        for g in gripper_frames:
            ax.axvline(g, color="tab:red", lw=1.2, ls="--")
        handles = ax.get_legend_handles_labels()[0]
        handles += [Line2D([], [], color="0.4", ls="none", marker="o", ms=3.5, label="waypoint"),
                    Line2D([], [], color="0.85", label="waypoint frame")]
        if len(gripper_frames):
            handles.append(Line2D([], [], color="tab:red", ls="--", label="gripper change (forced)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title or f"{len(waypoints)} waypoints / {len(x)} steps")
    fig.tight_layout()
    return fig


def plot_episode(x: np.ndarray, waypoints: np.ndarray, path: str | Path, title: str = "",
                 groups: Sequence[PlotGroup] = (), gripper_frames: Sequence[int] = ()) -> Path:
    """:func:`waypoint_figure` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = waypoint_figure(x, waypoints, title, groups, gripper_frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_selected(reader, robot, cfg, keys, index: WaypointIndex, out_dir: Path) -> list[Path]:
    paths = []
    for i in cfg.plot_episodes:
        if not 0 <= i < reader.num_episodes:
            raise ValueError(f"plot episode {i} out of range (dataset has {reader.num_episodes} episodes)")
        _, episode = next(reader.episodes(i, i + 1, observation_keys=keys, step_keys=("action",)))
        x, forced = episode_inputs(episode, robot, cfg, keys, i)
        title = f"episode {i}: {len(index.waypoints[i])} waypoints / {len(x)} steps ({cfg.method}, {cfg.threshold})"
        widths = [np.asarray(episode["observation"][k]).reshape(len(x), -1).shape[1] for k in keys]
        paths.append(plot_episode(x, index.waypoints[i], out_dir / "plots" / f"episode_{i}.png", title,
                                  plot_groups(robot, keys, widths, cfg.dims), forced))
    return paths


# ---- the whole run ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractResult:
    index_path: Path
    filtered_dir: Path | None
    plots: tuple[Path, ...]
    summary: dict


def run_extraction(cfg: ExtractConfig, show_progress: bool = True) -> ExtractResult:
    from tqdm import tqdm

    robot = load_robot_config(cfg.robot)
    reader = RldsReader(cfg.source_dir, cfg.split).check_robot(robot, cameras=cfg.filtered)
    keys = tuple(cfg.keys) or tuple(robot.state_keys)
    reader.require_keys(keys, "waypoint")
    out_dir = Path(cfg.out_dir)
    with tqdm(total=reader.num_episodes, desc="selecting waypoints", unit="ep", disable=not show_progress) as bar:
        waypoints = compute_waypoints(reader, robot, cfg, keys, bar)
    lengths = tuple(int(w[-1]) + 1 for w in waypoints)
    config = {**asdict(cfg), "source_dir": str(reader.dir.resolve()), "keys": list(keys),
              "robot_type": robot.robot_type}
    index = WaypointIndex(config, lengths, tuple(waypoints))
    index_path = index.save(out_dir / INDEX_FILE)
    filtered_dir = None
    if cfg.filtered:
        name = cfg.filtered_name or f"waypoint_filtered_rlds__{robot.robot_type}"
        with tqdm(total=reader.num_episodes, desc="writing filtered RLDS", unit="ep", disable=not show_progress) as bar:
            filtered_dir = write_filtered(reader, robot, index, out_dir, name, bar)
    plots = _plot_selected(reader, robot, cfg, keys, index, out_dir)
    return ExtractResult(index_path, filtered_dir, tuple(plots), index.summary())

