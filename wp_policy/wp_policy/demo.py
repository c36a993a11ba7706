"""wp-demo (``make demo``): run a waypoint policy through the simulated ROS graph and summarise the episodes.

Starts ``wp-launch libero_sim`` (LIBERO bridge on a robosuite stand-in, aggregator, planner, filler: one process
each, lock-step on the bridge's /clock, CPU) with the policy a demo config names (default: the shipped Lift policy),
shows a progress bar that follows the bridge's per-episode records (``episodes.jsonl``), and leaves in
``output_dir``: ``results.json`` (written once by the demo from those records: per-episode records with the
executed actions, per-task and overall success rates, the demo's wall time), ``episodes.jsonl``, ``videos/`` (one
MP4 per episode, LIBERO naming), ``graph.log`` (every node's output) and ``params.yaml`` (the node parameters
used). Exit code: the graph's (0 when every episode ran, whatever the outcomes), 2 for a bad config or a missing
policy.

    .venv/bin/python -m wp_policy.demo
    .venv/bin/python -m wp_policy.demo --episodes 10 --output-dir /tmp/demo --set image_size=256

Unless set, ROS_AUTOMATIC_DISCOVERY_RANGE is LOCALHOST and ROS_DOMAIN_ID is derived from the process id, so the demo
neither sees nor disturbs other ROS graphs; set ROS_DOMAIN_ID to watch it with ``ros2 topic echo``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from wp_policy.cli_help import HelpFormatter
from wp_policy.config_io import ConfigError, load_config, parse_overrides
from wp_policy.paths import config_dir
from wp_policy.policy_config import load_policy_config
from wp_policy.runtime.replan import MOVED_KEYS, ReplanConfig
from wp_policy.sim.episodes import (EPISODE_RECORDS, EpisodeResult, format_table, read_records, results_document,
                                    write_json)
from wp_policy.sim.recording import VIDEO_SIZE, check_video_size

DEFAULT_CONFIG = "demo/lift.yaml"  # in the configs dir
SHIPPED_POLICY = Path(__file__).resolve().parent / "assets" / "policies" / "lift_demo" / "policy.yaml"
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class DemoConfig:
    policy_config: str = ""  # PolicyConfig YAML (relative: to the demo config); empty: the shipped policy
    env: str = "robosuite:Lift"  # a wp_policy.sim env name
    task_id: int = 0  # task index within the env (LIBERO: the suite's task list); -1: every task
    episodes: int = 10  # trials per task
    seed: int = 7  # stand-ins: trial i resets with seed + i (LIBERO: trial i starts from the task's init state i)
    image_size: int = 128  # render size (match the policy's training demos)
    max_steps: int = 0  # 0: the task's budget
    replan: ReplanConfig = field(default_factory=ReplanConfig)  # the filler's (launch arguments of the graph)
    cpu_threads: int = 1  # torch threads of the planner and the filler
    record_video: bool = True
    video_size: int = VIDEO_SIZE  # pixels per view in the videos (agentview + wrist side by side, plan overlay)
    output_dir: str = "outputs/demo"
    REMOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    def __post_init__(self):
        for name in ("episodes", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "max_steps", "cpu_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.task_id < -1:
            raise ValueError(f"task_id must be >= -1 (-1: every task), got {self.task_id}")
        check_video_size(self.video_size)


def load_demo(path: Path, overrides: dict) -> tuple[DemoConfig, Path]:
    """The demo config and its policy file, checked (every file it names present); a missing policy is a
    ConfigError that says how to get one."""
    config = load_config(DemoConfig, path, overrides)
    policy_path = Path(config.policy_config) if config.policy_config else SHIPPED_POLICY
    policy_path = policy_path if policy_path.is_absolute() else (path.parent / policy_path).resolve()
    if not policy_path.is_file():
        raise ConfigError(f"policy config {policy_path} not found: the shipped demo policy is missing (rebuild it "
                          "with scripts/train_demo_policy.sh) or pass --policy <policy.yaml>")
    policy = load_policy_config(policy_path)
    from wp_policy.sim.eval_cli import check_policy_files

    check_policy_files(policy)  # both models, every file present
    return config, policy_path


def graph_params(config: DemoConfig) -> dict:
    """The libero_sim params YAML with the demo's sizes and threads (the policy's settings come with policy:=); the
    bridge leaves results.json to the demo, which writes it once from the bridge's episode records."""
    data = yaml.safe_load((config_dir() / "graphs" / "libero_sim.yaml").read_text())
    data["libero_bridge"]["ros__parameters"].update(image_size=config.image_size, record_video=config.record_video,
                                                    video_size=config.video_size, results_file="")
    data["planner"]["ros__parameters"].update(cpu_threads=config.cpu_threads)
    data["filler"]["ros__parameters"].update(cpu_threads=config.cpu_threads)
    return data


def launch_command(config: DemoConfig, policy: Path, params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "wp_policy.supervisor", "libero_sim", f"policy:={policy}",
            *(f"{name}:={value}" for name, value in config.replan.params().items()), f"env:={config.env}",
            f"task_id:={config.task_id}", f"trials:={config.episodes}", f"seed:={config.seed}",
            f"max_steps:={config.max_steps}",
            f"output_dir:={out}", f"params_file:={params}"]


def run_graph(cmd: list[str], log_path: Path, records: Path, episodes: int, progress: bool = True) -> int:
    """Run wp-launch, all output to ``log_path`` (error lines shown), a progress bar advanced by the episode records
    the bridge appends to ``records``."""
    from tqdm import tqdm

    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    bar = tqdm(total=episodes, desc="episodes", unit="ep", disable=not progress)
    bar.set_postfix_str("starting the graph (loading models)")
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      stdin=subprocess.DEVNULL, text=True, env=env) as proc:
        pump = threading.Thread(target=_pump, args=(proc.stdout, log, bar), daemon=True)
        pump.start()
        try:
            while True:
                code = proc.poll()
                _advance(bar, read_records(records))
                if code is not None:
                    pump.join(timeout=10)
                    return code
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.send_signal(2)  # SIGINT: wp-launch stops every node
            proc.wait(timeout=30)
            raise
        finally:
            bar.close()


def _pump(stream, log, bar) -> None:
    """The graph's output into the log; error lines also above the progress bar."""
    for line in stream:
        log.write(line)
        if "ERROR" in line or "FATAL" in line:
            bar.write(line.rstrip())


def _advance(bar, records: list[dict]) -> None:
    """The bar's total from the records' header (every task's episodes), then one step per episode record not yet
    counted, the newest one's outcome beside it."""
    if records and bar.total != records[0]["episodes"]:
        bar.total = records[0]["episodes"]
        bar.refresh()
    episodes = records[1:]
    if len(episodes) > bar.n:
        last = episodes[-1]
        bar.update(len(episodes) - bar.n)
        bar.set_postfix_str(f"{last['task']} t{last['trial']}: {last['termination']} after {last['steps']} steps"[:60])


def write_results(out: Path, demo: dict) -> dict | None:
    """results.json from the bridge's episode records (its config, every episode run) plus the demo's own block;
    None when the bridge never started its records."""
    records = read_records(out / EPISODE_RECORDS)
    if not records:
        return None
    header, episodes = records[0], records[1:]
    doc = results_document(header["env"], header["config"], header["tasks"],
                           [EpisodeResult.from_json(r) for r in episodes], episodes, demo=demo)
    write_json(out / RESULTS_FILE, doc)
    return doc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config", default=None, help=f"demo config YAML (default: configs/{DEFAULT_CONFIG})")
    parser.add_argument("--policy", help="PolicyConfig YAML to run instead of the config's (the shipped policy)")
    parser.add_argument("--episodes", type=int, help="number of seeded episodes (default: the config's)")
    parser.add_argument("--output-dir", help="results, videos and logs go here (default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a demo config field, e.g. --set max_steps=50")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        for key, value in (("policy_config", args.policy and str(Path(args.policy).resolve())),
                           ("episodes", args.episodes), ("output_dir", args.output_dir)):
            if value is not None:
                overrides[key] = value
        path = Path(args.config) if args.config else config_dir() / DEFAULT_CONFIG
        config, policy = load_demo(path, overrides)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"wp-demo: error: {exc}", file=sys.stderr)
        return 2
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS_FILE, EPISODE_RECORDS):  # never report an older run's results
        (out / name).unlink(missing_ok=True)
    params = out / "params.yaml"
    params.write_text(yaml.safe_dump(graph_params(config), sort_keys=False))
    tasks = "every task" if config.task_id < 0 else f"task {config.task_id}"
    print(f"wp-demo: {config.episodes} {config.env} episode(s) per task ({tasks}) with "
          f"{config.policy_config or SHIPPED_POLICY} through the ROS graph (log: {out / 'graph.log'})", flush=True)
    started = time.monotonic()
    try:
        code = run_graph(launch_command(config, policy, params, out), out / "graph.log", out / EPISODE_RECORDS,
                         config.episodes, not args.no_progress)
    except KeyboardInterrupt:
        print("wp-demo: interrupted", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    doc = write_results(out, {"wall_s": wall, "policy_config": config.policy_config or str(SHIPPED_POLICY)})
    if code != 0 or doc is None:
        print(f"wp-demo: the graph failed (exit code {code}); see {out / 'graph.log'}", file=sys.stderr)
        return code or 1
    print(format_table(doc))
    print(f"wall time {wall:.0f} s; results: {out / RESULTS_FILE}; videos: {out / 'videos'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
