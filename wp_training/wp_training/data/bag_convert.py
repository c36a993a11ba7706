"""``wp-data from-bags``: recorded ROS 2 bags (MCAP file or rosbag2 directory) -> RLDS in the robot config's layout.

Observations are built by the aggregator's own code: every camera message is decoded and resized-with-pad to the
model resolution (``wp_policy.image_proc.image_msg_to_rgb``, ``wp_policy.image_proc.resize_with_pad``) and
fed, with every feedback message, in log-time order into ``wp_policy.obs_sync.ObsSynchronizer`` (header stamps
align the inputs, log times stand in for the node's receive clock). Training therefore sees exactly the observation
sets the deployed graph builds from the same recording: same stamp tolerance and liveness timeout, same drops.

From those sets, one step per control period of the robot config: after each step the set nearest to one period
later (within half a period) is the next step; no set there is a gap. Per step:

- ``observation/<camera rlds_key>``: the set's image (model resolution, JPEG); the state keys hold the set's proprio
  (physical units) at ``proprio.indices`` of the concatenated keys (other positions 0);
- ``action`` (``--actions commanded``): per command topic of the config the newest command received by the next
  step's decision time (the set's receive time + one period), joined by ``wp_policy.command_map.CommandMapper``
  and placed at ``action.indices`` of the dataset vector (other dims 0); a command older than the input timeout at
  that time leaves the step without an action. ``--actions feedback``: the next step's proprio (the last step holds
  its own), matched to the action dims by joint name; joint-position robots only;
- ``language_instruction``: the newest ``/wp/instruction`` (std_msgs/String) received before the episode's first
  step, else the first one inside it, else ``--instruction``.

Episodes: one per bag, or split by ``--episode-topic`` (std_msgs/Bool: True starts and False ends an episode, time
outside is dropped; any other type: every message is a boundary). Each episode is reported (``conversion_report.json``
and a printed table) with its counts: messages rejected per topic (corrupt image, NaN, wrong length), gaps and
missing control ticks, steps without a fresh command. A bad episode is skipped, or with ``--on-bad cut`` cut to its
longest clean run of steps; nothing bad is written silently.

Example::

    wp-data from-bags recordings/*.mcap --robot r1lite --out data/r1lite_teleop --episode-topic /teleop/recording
"""

from __future__ import annotations

import argparse
import json
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rosbags.rosbag2 import ReaderError
from tqdm import tqdm

from wp_policy.command_map import CommandMapper, command_values
from wp_policy.config_io import ConfigError
from wp_policy.image_proc import ImageDecodeError, image_msg_to_rgb, resize_with_pad
from wp_policy.obs_sync import (
    DEFAULT_INPUT_TIMEOUT,
    DEFAULT_SYNC_TOLERANCE,
    InvalidInput,
    ObsSynchronizer,
    joint_state_position,
)
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.ros.bag_io import BagReader, deserialize
from wp_policy.ros.topics import INSTRUCTION_TOPIC, camera_topic
from wp_training.data.rlds_layout import RldsError
from wp_training.data.rlds_writer import encode_image, write_rlds

REPORT_FILE = "conversion_report.json"
_NS = 1_000_000_000
BOOL = "std_msgs/msg/Bool"


@dataclass(frozen=True)
class BagConvertConfig:
    bags: tuple[str, ...]
    out_dir: str
    robot: str = "r1lite"  # robot config name or YAML path
    name: str = ""  # dataset name; "" = <robot_type>_bags
    actions: Literal["commanded", "feedback"] = "commanded"
    episode_topic: str = ""  # marker topic splitting a bag into episodes; "" = one episode per bag
    instruction: str = ""  # for episodes without a /wp/instruction message
    sync_tolerance: float = DEFAULT_SYNC_TOLERANCE  # the aggregator's parameters (configs/graphs/<graph>.yaml)
    input_timeout: float = DEFAULT_INPUT_TIMEOUT
    image_size: int = 0  # 0 = the robot config's image_size (what the aggregator publishes)
    state_dims: tuple[tuple[str, int], ...] = ()  # per state key, when the config cannot tell (see state_layout)
    on_bad: Literal["skip", "cut"] = "skip"
    min_steps: int = 2  # shorter episodes (after a cut) are skipped
    overwrite: bool = False

    def __post_init__(self):
        if not self.bags:
            raise ValueError("no bags given")
        if self.actions not in ("commanded", "feedback"):
            raise ValueError(f"actions must be 'commanded' or 'feedback', got {self.actions!r}")
        if self.on_bad not in ("skip", "cut"):
            raise ValueError(f"on_bad must be 'skip' or 'cut', got {self.on_bad!r}")
        if not (self.sync_tolerance > 0 and self.input_timeout > 0):
            raise ValueError(f"sync_tolerance ({self.sync_tolerance}) and input_timeout ({self.input_timeout}) "
                             f"must be > 0")
        if self.image_size < 0 or self.min_steps < 1:
            raise ValueError(f"image_size ({self.image_size}) must be >= 0 and min_steps ({self.min_steps}) >= 1")


# ---- the robot's RLDS layout --------------------------------------------------------------------------------------
def state_layout(robot: RobotConfig, state_dims: Mapping[str, int] | None = None) -> dict[str, int]:
    """Width of each state key. The config names the keys but not their widths: given explicitly, or one key holds
    ``max(proprio.indices) + 1`` dims, or (R1 Lite) the feedback topics pair up with the keys in order."""
    width = max(robot.proprio.indices) + 1
    keys = list(robot.state_keys)
    if state_dims:
        if sorted(state_dims) != sorted(keys):
            raise ConfigError(f"state dims given for {sorted(state_dims)}, the robot's state keys are {keys}")
        dims = {k: int(state_dims[k]) for k in keys}
        if any(d < 1 for d in dims.values()) or sum(dims.values()) < width:
            raise ConfigError(f"state dims {dims} must be >= 1 and hold proprio.indices (need {width} in total)")
        return dims
    if len(keys) == 1:
        return {keys[0]: width}
    sizes = [len(fb.proprio_dims) for fb in robot.ros.feedback]
    if len(sizes) == len(keys) and sum(sizes) == width:
        return dict(zip(keys, sizes))
    raise ConfigError(f"{robot.robot_type}: cannot tell the widths of state keys {keys} from the config; give them "
                      f"(--state-dims {' '.join(f'{k}=N' for k in keys)})")


def split_state(robot: RobotConfig, dims: Mapping[str, int], proprio: np.ndarray) -> dict[str, np.ndarray]:
    """Physical proprio ``[T, proprio.dim]`` -> the state keys, so that ``select_proprio(concat(keys)) == proprio``."""
    raw = np.zeros((len(proprio), sum(dims.values())), np.float32)
    raw[:, list(robot.proprio.indices)] = proprio
    bounds = np.cumsum([0, *dims.values()])
    return {k: raw[:, a:b] for k, a, b in zip(dims, bounds[:-1], bounds[1:])}


def dataset_action(robot: RobotConfig, action: np.ndarray) -> np.ndarray:
    """Execution-space action ``[T, action.dim]`` -> the dataset vector (``action.indices``; other dims 0)."""
    out = np.zeros((len(action), robot.dataset_action_dim), np.float32)
    out[:, list(robot.action.indices)] = action
    return out


def feedback_actions(robot: RobotConfig, proprio: np.ndarray) -> np.ndarray:
    """Future-feedback actions ``[T, action.dim]``: the next step's proprio (the last step holds), per joint name;
    grippers go through model space into the command convention."""
    if robot.action_kind != "joint_position":
        raise ConfigError(f"{robot.robot_type}: --actions feedback needs absolute joint targets "
                          f"(action_kind joint_position), this robot's actions are {robot.action_kind}")
    missing = [n for n in robot.action.names if n not in robot.proprio.names]
    if missing:
        raise ConfigError(f"{robot.robot_type}: action dims {missing} have no proprio dim of the same name")
    src = [robot.proprio.names.index(n) for n in robot.action.names]
    nxt = np.concatenate([proprio[1:], proprio[-1:]])
    out = nxt[:, src].astype(np.float64)
    grip = list(robot.action.gripper_dims)
    if grip:
        model = robot.proprio_to_model(nxt)[:, src]
        out[:, grip] = robot.gripper.action_to_execution(model[:, grip])
    return out


# ---- control steps ------------------------------------------------------------------------------------------------
def control_steps(stamps_ns: np.ndarray, period_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Sets taken as control steps (indices) and the control ticks missing before each (0 = no gap).

    After each step the next is the set nearest to one period later, if within half a period (so a camera a little
    slower or faster than nominal never drifts off the grid); otherwise the next set after that tick, after a gap.
    """
    n = len(stamps_ns)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    taken, missing = [0], [0]
    half = period_ns // 2
    while True:
        last = taken[-1]
        tick = stamps_ns[last] + period_ns
        k = int(np.searchsorted(stamps_ns, tick, side="left"))
        near = [c for c in (k - 1, k) if last < c < n and abs(int(stamps_ns[c]) - tick) <= half]
        if near:
            taken.append(min(near, key=lambda c: abs(int(stamps_ns[c]) - tick)))
            missing.append(0)
            continue
        later = k if k > last and k < n else -1
        if later < 0:
            return np.array(taken, np.int64), np.array(missing, np.int64)
        taken.append(later)
        missing.append(max(1, int(round((int(stamps_ns[later]) - int(stamps_ns[last])) / period_ns)) - 1))


def longest_clean_run(bad_step: np.ndarray, gap_before: np.ndarray) -> tuple[int, int]:
    """``[start, end)`` of the longest run of good steps not crossing a gap (earliest on ties; (0, 0) if none)."""
    best, start = (0, 0), None
    for t in range(len(bad_step) + 1):
        breaks = t == len(bad_step) or bad_step[t] or gap_before[t] > 0
        if start is not None and breaks:
            if t - start > best[1] - best[0]:
                best = (start, t)
            start = None
        if t < len(bad_step) and not bad_step[t] and start is None:
            start = t
    return best


# ---- reading one bag ----------------------------------------------------------------------------------------------
@dataclass
class _Set:
    stamp_ns: int
    received: float
    images: dict[str, bytes]  # rlds_key -> JPEG
    proprio: np.ndarray


@dataclass
class _Segment:
    index: int
    sets: list[_Set] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)  # first rejection reason per topic
    sync_message: str = ""


@dataclass
class _Timeline:
    """Commands (per topic) and instructions received, by log time (seconds)."""

    commands: dict[str, tuple[list[float], list[np.ndarray]]]
    instructions: tuple[list[float], list[str]] = field(default_factory=lambda: ([], []))

    def command_at(self, topic: str, t: float, timeout: float) -> np.ndarray | None:
        times, values = self.commands[topic]
        i = bisect_right(times, t) - 1
        return values[i] if i >= 0 and t - times[i] <= timeout else None

    def prune(self, before: float) -> None:
        """Forget commands no step can use any more: all but the newest one received by ``before``."""
        for times, values in self.commands.values():
            i = bisect_right(times, before) - 1
            if i > 0:
                del times[:i], values[:i]

    def instruction_for(self, start: float, end: float) -> str | None:
        times, texts = self.instructions
        i = bisect_right(times, start) - 1
        if i >= 0:
            return texts[i]
        return texts[i + 1] if i + 1 < len(times) and times[i + 1] <= end else None


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * _NS + int(header.stamp.nanosec)


class BagConverter:
    """Turns bags into episode dicts for :func:`wp_training.data.rlds_writer.write_rlds` and fills :attr:`report`."""

    def __init__(self, cfg: BagConvertConfig, robot: RobotConfig):
        self.cfg, self.robot = cfg, robot
        self.size = cfg.image_size or robot.image_size
        self.period = robot.control_period
        self.dims = state_layout(robot, dict(cfg.state_dims))
        self.mapper = CommandMapper(robot) if cfg.actions == "commanded" else None
        self.report: list[dict] = []
        self.written = 0

    def episodes(self, progress: tqdm | None = None) -> Iterator[dict]:
        for bag in self.cfg.bags:
            yield from self._bag_episodes(Path(bag), progress)

    # -- one bag
    def _required_topics(self, reader: BagReader) -> dict[str, list[str]]:
        need = {"camera": [camera_topic(c) for c in self.robot.cameras],
                "feedback": [fb.topic for fb in self.robot.ros.feedback]}
        if self.mapper is not None:
            need["command"] = list(self.mapper.topics)
        if self.cfg.episode_topic:
            need["episode marker"] = [self.cfg.episode_topic]
        return {kind: [t for t in topics if t not in reader.topics or reader.topics[t].count == 0]
                for kind, topics in need.items()}

    def topics_to_read(self, reader: BagReader) -> list[str]:
        """The bag's topics this conversion reads (cameras, feedback, commands, instruction, episode markers)."""
        topics = [camera_topic(c) for c in self.robot.cameras] + [fb.topic for fb in self.robot.ros.feedback]
        topics += list(self.mapper.topics) if self.mapper is not None else []
        topics += [t for t in (INSTRUCTION_TOPIC, self.cfg.episode_topic) if t and t in reader.topics]
        return [t for t in dict.fromkeys(topics) if t in reader.topics]

    def _bag_episodes(self, path: Path, progress: tqdm | None) -> Iterator[dict]:
        with BagReader(path) as reader:
            missing = {k: v for k, v in self._required_topics(reader).items() if v}
            if missing:
                what = "; ".join(f"{kind}: {', '.join(topics)}" for kind, topics in missing.items())
                self._record(path, 0, "skipped", [f"missing topics ({what})"], {}, 0, 0)
                if progress is not None:
                    progress.update(sum(reader.topics[t].count for t in self.topics_to_read(reader)))
                return
            cams = {camera_topic(c): c for c in self.robot.cameras}
            commands = {c.topic: c for c in self.mapper.commands} if self.mapper is not None else {}
            sync = ObsSynchronizer.from_robot(self.robot, self.cfg.sync_tolerance, self.cfg.input_timeout)
            timeline = _Timeline({t: ([], []) for t in commands})
            marker_bool = bool(self.cfg.episode_topic) and reader.topics[self.cfg.episode_topic].msgtype == BOOL
            segment: _Segment | None = None if marker_bool else _Segment(0)
            closed: list[_Segment] = []  # ended, waiting until every command their last step needs has been read
            count = 0 if marker_bool else 1
            for n, m in enumerate(reader.messages(self.topics_to_read(reader))):
                now = m.log_ns / _NS
                if progress is not None:
                    progress.update(1)
                while closed and (not closed[0].sets or now > closed[0].sets[-1].received + self.period):
                    yield from self._finish(path, closed.pop(0), timeline)
                if n % 1024 == 0:  # every step still to finish decides at or after its first set's receive time
                    pending = [seg.sets[0].received for seg in (*closed, segment) if seg is not None and seg.sets]
                    timeline.prune(min(pending, default=now))
                if m.topic == self.cfg.episode_topic:
                    starts = bool(deserialize(m.data, m.msgtype).data) if marker_bool else True
                    if segment is not None:
                        closed.append(segment)
                    segment = _Segment(count) if starts else None
                    count += 1 if starts else 0
                    continue
                if m.topic == INSTRUCTION_TOPIC:
                    timeline.instructions[0].append(now)
                    timeline.instructions[1].append(str(deserialize(m.data, m.msgtype).data))
                    continue
                try:
                    msg = deserialize(m.data, m.msgtype)
                    if m.topic in commands:
                        pos = command_values(commands[m.topic], msg, m.msgtype)
                        if not np.all(np.isfinite(pos)):
                            raise InvalidInput(f"non-finite command {pos.tolist()}")
                        timeline.commands[m.topic][0].append(now)
                        timeline.commands[m.topic][1].append(pos)
                        continue
                    if m.topic in cams:
                        rgb = resize_with_pad(image_msg_to_rgb(msg), self.size, self.size)
                        sync.add_image(cams[m.topic].view, _stamp_ns(msg.header), rgb, now)
                    else:
                        sync.add_feedback(m.topic, _stamp_ns(msg.header), joint_state_position(msg), now, msg.name)
                except (InvalidInput, ImageDecodeError, ValueError) as exc:
                    if segment is not None:
                        segment.rejected[m.topic] += 1
                        segment.reasons.setdefault(m.topic, str(exc))
                    continue
                obs = sync.try_assemble(now)
                if obs is not None and segment is not None:
                    images = {c.rlds_key: encode_image(obs.images[c.view]) for c in self.robot.cameras}
                    segment.sets.append(_Set(obs.stamp_ns, obs.received, images, obs.proprio))
                if segment is not None:
                    segment.sync_message = sync.status(now).message()
            if segment is not None:
                closed.append(segment)
            for seg in closed:
                yield from self._finish(path, seg, timeline)

    # -- one episode
    def _finish(self, path: Path, seg: _Segment, timeline: _Timeline) -> Iterator[dict]:
        counts = {"sets": len(seg.sets), "rejected": dict(seg.rejected)}
        reasons = [f"rejected {n} on {t} (first: {seg.reasons[t]})" for t, n in seg.rejected.items()]
        if not seg.sets:
            self._record(path, seg.index, "skipped", [f"no observation sets ({seg.sync_message})", *reasons],
                         counts, 0, 0)
            return
        stamps = np.array([s.stamp_ns for s in seg.sets], np.int64)
        taken, missing = control_steps(stamps, int(round(self.period * _NS)))
        sets = [seg.sets[i] for i in taken]
        proprio = np.stack([s.proprio for s in sets])
        bad = np.zeros(len(sets), bool)
        if self.mapper is not None:
            action = np.zeros((len(sets), self.robot.action.dim))
            stale = Counter()
            for t, s in enumerate(sets):
                decide = s.received + self.period
                parts = {topic: timeline.command_at(topic, decide, self.cfg.input_timeout)
                         for topic in self.mapper.topics}
                lacking = [topic for topic, v in parts.items() if v is None]
                stale.update(lacking)
                if lacking:
                    bad[t] = True
                else:
                    action[t] = self.mapper.join(parts)
            if stale:
                counts["steps_without_command"] = dict(stale)
                reasons.append(f"{int(bad.sum())} steps without a command newer than {self.cfg.input_timeout:g} s "
                               f"({', '.join(f'{t}: {n}' for t, n in stale.items())})")
        else:
            action = feedback_actions(self.robot, proprio)
        gaps = int(np.sum(missing > 0))
        counts.update(steps=len(sets), gaps=gaps, missing_ticks=int(missing.sum()))
        if gaps:
            reasons.append(f"{gaps} gap(s), {int(missing.sum())} control tick(s) without an observation set")
        first, last = seg.sets[0].received, seg.sets[-1].received
        instruction = timeline.instruction_for(first, last) or self.cfg.instruction
        if not instruction:
            reasons.append(f"no instruction ({INSTRUCTION_TOPIC} not recorded and no --instruction given)")
            self._record(path, seg.index, "skipped", reasons, counts, len(sets), 0)
            return
        start, end, status = 0, len(sets), "written"
        if bad.any() or gaps:
            if self.cfg.on_bad == "skip":
                self._record(path, seg.index, "skipped", reasons, counts, len(sets), 0)
                return
            start, end = longest_clean_run(bad, missing)
            status = "cut"
        if end - start < self.cfg.min_steps:
            reasons.append(f"{end - start} clean step(s), fewer than --min-steps {self.cfg.min_steps}")
            self._record(path, seg.index, "skipped", reasons, counts, len(sets), 0)
            return
        self._record(path, seg.index, status, reasons, counts, len(sets), end - start, (start, end))
        keep = slice(start, end)
        obs = {c.rlds_key: [s.images[c.rlds_key] for s in sets[keep]] for c in self.robot.cameras}
        obs.update(split_state(self.robot, self.dims, proprio[keep]))
        yield {"observation": obs, "action": dataset_action(self.robot, action[keep]),
               "language_instruction": instruction, "file_path": f"{path}#episode{seg.index}"}

    def _record(self, path: Path, index: int, status: str, reasons: list[str], counts: dict, steps: int,
                written: int, kept: tuple[int, int] | None = None) -> None:
        entry = {"bag": str(path), "episode": index, "status": status, "steps": steps, "written_steps": written,
                 "rlds_episode": self.written if written else None, "reasons": reasons, "counts": counts}
        if kept is not None and status == "cut":
            entry["kept_steps"] = list(kept)
        self.written += 1 if written else 0
        self.report.append(entry)


# ---- the command --------------------------------------------------------------------------------------------------
def convert_bags(cfg: BagConvertConfig, show_progress: bool = True) -> dict:
    """Write the RLDS and ``conversion_report.json``; returns the report (``{"config", "summary", "episodes"}``)."""
    robot = load_robot_config(cfg.robot)
    missing = [b for b in cfg.bags if not Path(b).exists()]
    if missing:
        raise FileNotFoundError(f"bag(s) not found: {missing}")
    converter = BagConverter(cfg, robot)
    total = 0
    for bag in cfg.bags:
        try:
            with BagReader(bag) as reader:
                total += sum(reader.topics[t].count for t in converter.topics_to_read(reader))
        except ReaderError as exc:
            raise RldsError(f"{bag}: not a readable bag (MCAP file or rosbag2 directory): {exc}") from None
    out = Path(cfg.out_dir)
    name = cfg.name or f"{robot.robot_type}_bags"
    t0 = time.perf_counter()
    with tqdm(total=total, desc="reading bags", unit="msg", disable=not show_progress) as bar:
        try:
            dataset_dir = write_rlds(out, converter.episodes(bar), robot, name, image_size=converter.size,
                                     overwrite=cfg.overwrite,
                                     description=f"{len(cfg.bags)} bag(s) converted by wp-data from-bags")
        except RldsError as exc:
            if converter.written or not converter.report:  # a write error, or one before any bag was read
                raise
            _save_report(out, cfg, converter.report, None, time.perf_counter() - t0, total)
            raise RldsError(f"no episode could be written ({exc}); see {out / REPORT_FILE}") from None
    return _save_report(out, cfg, converter.report, dataset_dir, time.perf_counter() - t0, total)


def _save_report(out: Path, cfg: BagConvertConfig, episodes: list[dict], dataset_dir: Path | None, wall: float,
                 messages: int) -> dict:
    status = Counter(e["status"] for e in episodes)
    summary = {"dataset_dir": str(dataset_dir) if dataset_dir else None, "episodes": len(episodes),
               "written": status["written"], "cut": status["cut"], "skipped": status["skipped"],
               "steps_written": sum(e["written_steps"] for e in episodes), "messages": messages,
               "wall_s": round(wall, 2), "messages_per_s": round(messages / max(wall, 1e-9), 1)}
    report = {"config": asdict(cfg), "summary": summary, "episodes": episodes}
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return report


def _state_dim_arg(text: str) -> tuple[str, int]:
    key, _, n = text.partition("=")
    if not key or not n.isdigit():
        raise argparse.ArgumentTypeError(f"expected KEY=N, got {text!r}")
    return key, int(n)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("bags", nargs="+", help="MCAP files or rosbag2 directories")
    parser.add_argument("--robot", default="r1lite", help="robot config name or YAML path (default: r1lite)")
    parser.add_argument("--out", required=True, help="output directory (gets <name>/1.0.0 and conversion_report.json)")
    parser.add_argument("--name", default="", help="dataset name (default: <robot_type>_bags)")
    parser.add_argument("--actions", choices=("commanded", "feedback"), default="commanded",
                        help="commanded: the command topics' targets; feedback: the next step's joint positions "
                             "(default: commanded)")
    parser.add_argument("--episode-topic", default="",
                        help="marker topic splitting bags into episodes (std_msgs/Bool: True starts, False ends; "
                             "other types: each message is a boundary); default: one episode per bag")
    parser.add_argument("--instruction", default="", help="instruction for episodes without a /wp/instruction message")
    parser.add_argument("--sync-tolerance", type=float, default=DEFAULT_SYNC_TOLERANCE,
                        help=f"the aggregator's sync_tolerance in s (default: {DEFAULT_SYNC_TOLERANCE})")
    parser.add_argument("--input-timeout", type=float, default=DEFAULT_INPUT_TIMEOUT,
                        help=f"the aggregator's input_timeout in s; also the oldest usable command "
                             f"(default: {DEFAULT_INPUT_TIMEOUT})")
    parser.add_argument("--image-size", type=int, default=0,
                        help="stored image side in pixels (default 0: the robot config's image_size)")
    parser.add_argument("--state-dims", nargs="+", type=_state_dim_arg, default=(), metavar="KEY=N",
                        help="width of each state key, when the robot config cannot tell")
    parser.add_argument("--on-bad", choices=("skip", "cut"), default="skip",
                        help="episodes with gaps or steps without a command: skip them, or cut them to their "
                             "longest clean run (default: skip)")
    parser.add_argument("--min-steps", type=int, default=2, help="shortest episode written (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = BagConvertConfig(
        bags=tuple(args.bags), out_dir=args.out, robot=args.robot, name=args.name, actions=args.actions,
        episode_topic=args.episode_topic, instruction=args.instruction, sync_tolerance=args.sync_tolerance,
        input_timeout=args.input_timeout, image_size=args.image_size, state_dims=tuple(args.state_dims),
        on_bad=args.on_bad, min_steps=args.min_steps, overwrite=args.overwrite,
    )
    report = convert_bags(cfg)
    print_report(report)
    return 0


def print_report(report: dict) -> None:
    """One line per episode (status, steps, reasons), then the totals."""
    for e in report["episodes"]:
        why = "; ".join(e["reasons"]) if e["reasons"] else ""
        print(f"{e['status']:<8} {Path(e['bag']).name}#{e['episode']}: {e['written_steps']}/{e['steps']} steps"
              f"{'  ' + why if why else ''}")
    s = report["summary"]
    print(f"{s['episodes']} episode(s): {s['written']} written, {s['cut']} cut, {s['skipped']} skipped; "
          f"{s['steps_written']} steps; {s['messages']} messages in {s['wall_s']} s ({s['messages_per_s']} msg/s)")
    if s["dataset_dir"]:
        print(f"wrote {s['dataset_dir']}")
