"""wp-eval plot: one episode's planned waypoints against its executed trajectory, to see what the planner wanted.

One axis per dimension group of the robot config (``proprio.groups``; LIBERO: eef position, eef rotation, gripper
fingers), time in policy steps: every dim's executed (observed) proprio as a solid line, every plan as a dashed
line of the same colour from the step it was made (at the proprio observed then) through its waypoints at the
steps they are due, plans made marked on the time axis, predicted stops, and the commanded gripper closing / opening
as vertical lines. Legends name the dims and the marks.

Inputs:

- an episode file of ``wp-eval`` (``<output_dir>/episodes/<task>_t<i>.json``: actions, proprio and plans per step);
- a ``results.json`` with ``--episode`` (a key such as ``Lift_t0`` or an index): ``wp-eval``'s (the episode file
  next to it is read) or the LIBERO bridge's / ``make demo``'s (its records hold everything);
- a recorded bag of one episode (MCAP file or rosbag2 folder, see ``wp-bag record``) with ``/wp/obs/proprio`` and
  ``/wp/waypoints``, plus the robot's command topics for gripper events; time is counted in control periods from
  the first proprio message (a lock-step simulation restarts its clock with every episode: record one at a time).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wp_policy.cli_help import HelpFormatter
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.sim.recording import PlanRecord

GRIPPER_LEVEL = 0.5  # model-space gripper value (0 closed .. 1 open) separating closed from open


@dataclass(frozen=True, eq=False)
class EpisodeTrace:
    """What one plot shows, whatever the source."""

    title: str
    steps: np.ndarray  # float64 [T]: policy step of each proprio row
    proprio: np.ndarray  # float64 [T, P]: observed proprio (physical units)
    plans: tuple[PlanRecord, ...]
    gripper_steps: np.ndarray  # float64 [K]: step of each gripper command
    gripper: np.ndarray  # float64 [K, G]: commanded gripper in model space (0 closed .. 1 open)

    def __post_init__(self):
        if self.proprio.ndim != 2 or len(self.steps) != len(self.proprio) or len(self.proprio) == 0:
            raise ValueError(f"{self.title}: no executed proprio to plot (got {self.proprio.shape}); episodes "
                             "recorded before proprio was saved per step cannot be plotted")


def gripper_events(steps: np.ndarray, gripper: np.ndarray, level: float = GRIPPER_LEVEL) -> list[tuple[float, str]]:
    """``(step, "close" | "open")`` wherever a commanded gripper crosses ``level`` (the first command sets the
    state; it is no event)."""
    if len(gripper) < 2:
        return []
    is_open = np.asarray(gripper) > level
    events = []
    for k in np.flatnonzero(np.any(is_open[1:] != is_open[:-1], axis=1)) + 1:
        for g in np.flatnonzero(is_open[k] != is_open[k - 1]):
            events.append((float(steps[k]), "open" if is_open[k, g] else "close"))
    return events


# ---- sources ---------------------------------------------------------------------------------------------------
def trace_from_result(result, robot: RobotConfig) -> EpisodeTrace:
    """An :class:`wp_policy.sim.rollout.EpisodeResult` (wp-eval episode file or bridge record)."""
    model = robot.action_to_model(result.actions) if len(result.actions) else np.zeros((0, robot.action.dim))
    title = (f"{result.task} t{result.trial}: {result.termination} after {result.steps} steps, "
             f"{len(result.plans)} plans")
    return EpisodeTrace(title, np.arange(len(result.proprio), dtype=np.float64), result.proprio, result.plans,
                        np.arange(len(model), dtype=np.float64), model[:, list(robot.action.gripper_dims)])


def load_result(path: Path, episode: str | None):
    """The EpisodeResult an episode file or a results.json (``episode``: key like ``Lift_t0`` or an index) names."""
    from wp_policy.sim.rollout import EpisodeResult, EpisodeSpec

    data = json.loads(path.read_text())
    if "episodes" not in data:
        if episode is not None:
            raise ValueError(f"{path} is one episode's file; --episode only applies to a results.json")
        return EpisodeResult.from_json(data)
    records = data["episodes"]
    keys = [EpisodeSpec(r["task"], r["trial"]).key for r in records]
    if episode is None:
        raise ValueError(f"{path} holds {len(records)} episodes; pick one with --episode (a key: "
                         f"{', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}, or an index)")
    if episode in keys:
        record = records[keys.index(episode)]
    elif episode.isdigit() and int(episode) < len(records):
        record = records[int(episode)]
    else:
        raise ValueError(f"{path}: no episode {episode!r}; keys: {keys[:10]}{' ...' if len(keys) > 10 else ''} "
                         f"or an index below {len(records)}")
    if "proprio" in record:  # the bridge's results keep every per-step array (and its own extras)
        return EpisodeResult.from_json({k: v for k, v in record.items() if k in EpisodeResult.__dataclass_fields__})
    episode_file = path.parent / "episodes" / f"{keys[records.index(record)]}.json"
    if not episode_file.is_file():
        raise FileNotFoundError(f"{path}: the episode file {episode_file} with the per-step records is missing")
    return EpisodeResult.load(episode_file)


def trace_from_bag(path: Path, robot: RobotConfig) -> EpisodeTrace:
    """Proprio from /wp/obs/proprio, plans from /wp/waypoints, gripper commands from the robot's command topics."""
    from wp_policy.ros.bag_io import BagReader, deserialize
    from wp_policy.ros.conversions import stamp_to_ns
    from wp_policy.ros.plan_msgs import recorded_plan
    from wp_policy.ros.topics import PROPRIO_TOPIC, WAYPOINTS_TOPIC

    period_ns = robot.control_period * 1e9
    gripper_of = {c.topic: [(i, robot.action.gripper_dims.index(d)) for i, d in enumerate(c.action_dims)
                            if d in robot.action.gripper_dims] for c in robot.ros.commands}
    proprio, plans, grippers = [], [], []
    with BagReader(path) as bag:
        missing = [t for t in (PROPRIO_TOPIC, WAYPOINTS_TOPIC) if t not in bag.topics]
        if missing:
            raise ValueError(f"bag {path} has no {missing}; record them, e.g. wp-bag record {PROPRIO_TOPIC} "
                             f"{WAYPOINTS_TOPIC} {' '.join(gripper_of)} -o run.mcap")
        wanted = [PROPRIO_TOPIC, WAYPOINTS_TOPIC, *(t for t in gripper_of if t in bag.topics)]
        for m in bag.messages(wanted):
            msg = deserialize(m.data, m.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            if m.topic == PROPRIO_TOPIC:
                names = list(msg.name)
                pos = np.asarray(msg.position, dtype=np.float64)
                if sorted(names) == sorted(robot.proprio.names):
                    pos = pos[[names.index(n) for n in robot.proprio.names]]
                proprio.append((stamp, pos))
            elif m.topic == WAYPOINTS_TOPIC:
                plan = recorded_plan(msg, robot)
                if plan is not None:
                    plans.append((stamp, plan))
            else:
                value = np.full(len(robot.action.gripper_dims), np.nan)
                for i, g in gripper_of[m.topic]:
                    value[g] = msg.position[i]
                grippers.append((stamp, value))
    if not proprio:
        raise ValueError(f"bag {path}: {PROPRIO_TOPIC} has no messages")
    t0 = proprio[0][0]

    def step(stamp: int) -> float:
        return (stamp - t0) / period_ns

    records = [PlanRecord.from_plan(int(round(step(stamp))), plan, robot.proprio.dim) for stamp, plan in plans]
    g = np.array([v for _, v in grippers]) if grippers else np.zeros((0, len(robot.action.gripper_dims)))
    g = robot.gripper.action_to_model(g) if g.size else g
    return EpisodeTrace(f"{path.name}: {len(proprio)} proprio messages, {len(records)} plans",
                        np.array([step(s) for s, _ in proprio]), np.stack([p for _, p in proprio]), tuple(records),
                        np.array([step(s) for s, _ in grippers]), g)


def load_trace(source: Path, robot: RobotConfig, episode: str | None = None) -> EpisodeTrace:
    if not source.exists():
        raise FileNotFoundError(f"{source} not found")
    if source.suffix == ".json":
        return trace_from_result(load_result(source, episode), robot)
    return trace_from_bag(source, robot)


# ---- the figure ------------------------------------------------------------------------------------------------
def episode_figure(trace: EpisodeTrace, robot: RobotConfig):
    """The matplotlib figure: one axis per dim group of ``robot`` (shared step axis), legends outside on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = robot.proprio.plot_groups
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, 2.8 * len(groups) + 0.8), sharex=True, squeeze=False)
    events = gripper_events(trace.gripper_steps, trace.gripper)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x_end = float(trace.steps[-1])
    for ax, group in zip(axes[:, 0], groups):
        handles = []
        for j, d in enumerate(group.dims):
            colour = colours[j % len(colours)]
            handles += ax.plot(trace.steps, trace.proprio[:, d], color=colour, lw=1.6, label=robot.proprio.names[d])
            for plan in trace.plans:
                if plan.is_stop:
                    continue
                n = plan.num_moves
                row = min(int(np.searchsorted(trace.steps, plan.step, side="right")) - 1, len(trace.steps) - 1)
                xs = np.concatenate([[plan.step], plan.due_steps[:n]])
                ys = np.concatenate([[trace.proprio[max(row, 0), d]], plan.proprio[:n, d]])
                ax.plot(xs, ys, "--o", color=colour, lw=0.9, ms=3.5, alpha=0.75)
                x_end = max(x_end, float(xs[-1]))
        for plan in trace.plans:
            ax.axvline(plan.step, color="0.55", lw=1.0, ls=":", zorder=0)
            if plan.stop_step is not None:
                ax.axvline(plan.stop_step, color="black", lw=1.4, ls="-.")
                x_end = max(x_end, float(plan.stop_step))
        for k, kind in events:
            ax.axvline(k, color="tab:red" if kind == "close" else "tab:green", lw=1.4, ls="--")
        handles += [Line2D([], [], color="0.3", ls="--", marker="o", ms=3.5,
                           label="planned waypoints (one line per plan)"),
                    Line2D([], [], color="0.55", ls=":", label="plan made")]
        if any(p.stop_step is not None for p in trace.plans):
            handles.append(Line2D([], [], color="black", ls="-.", label="stop planned (d = 0)"))
        kinds = {kind for _, kind in events}
        handles += [Line2D([], [], color=c, ls="--", label=f"gripper {kind}s commanded")
                    for kind, c in (("close", "tab:red"), ("open", "tab:green")) if kind in kinds]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_ylabel(group.name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f"policy step ({robot.control_hz:g} Hz)")
    axes[-1, 0].set_xlim(min(0.0, float(trace.steps[0])), x_end + 1)
    fig.suptitle(trace.title)
    fig.tight_layout()
    return fig


def plot_trace(trace: EpisodeTrace, robot: RobotConfig, path: str | Path) -> Path:
    """Write :func:`episode_figure` as a PNG; returns the path."""
    import matplotlib.pyplot as plt

    fig = episode_figure(trace, robot)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- command line ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-eval plot", formatter_class=HelpFormatter,
        description="Plot one episode: planned waypoints against the executed trajectory over time, one axis per\n"
                    "dimension group (position, rotation, gripper), plans and gripper events marked.",
        epilog="examples:\n  wp-eval plot runs/eval/lift/episodes/Lift_t0.json\n"
               "  wp-eval plot outputs/demo/results.json --episode Lift_t3 -o /tmp/lift_t3.png\n"
               "  wp-eval plot /tmp/run.mcap --robot libero")
    parser.add_argument("source", type=Path,
                        help="an episode file (<output_dir>/episodes/<task>_t<i>.json), a results.json (with "
                             "--episode) or a recorded bag (.mcap file or rosbag2 folder)")
    parser.add_argument("--episode", help="results.json only: the episode, as a key (Lift_t0) or an index")
    parser.add_argument("-o", "--output", type=Path,
                        help="PNG to write (default: the episode file's or bag's path with .png; for a results.json "
                             "plots/<episode>.png next to it)")
    parser.add_argument("--robot", default="libero",
                        help="robot config (name or YAML) for dim names, groups and the gripper convention")
    return parser


def default_output(source: Path, episode: str | None) -> Path:
    if episode is not None:
        return source.parent / "plots" / f"{episode}.png"
    return source.parent / f"{source.stem}.png"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        robot = load_robot_config(args.robot)
        trace = load_trace(args.source, robot, args.episode)
        path = plot_trace(trace, robot, args.output or default_output(args.source, args.episode))
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"wp-eval plot: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
