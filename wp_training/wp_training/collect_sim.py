"""``wp-data collect-sim``: scripted-expert demonstrations on the robosuite stand-ins, written as LIBERO-layout RLDS.

Attempt i of task k resets with seed ``seed + i`` (the expert's variation is seeded the same way), runs the expert
(:func:`wp_training.scripted_expert.run_expert_episode`) and keeps the episode only if it succeeds, until
``--episodes`` successes per task. Kept episodes are the first successful attempts in attempt order, so the dataset
is the same for any ``--workers``. Output: ``OUT/<name>/1.0.0`` (observation/image, observation/wrist_image at 256,
observation/state [8], action [7], language_instruction) plus ``OUT/collect_summary.json`` (attempts, success rate).

Examples::

    wp-data collect-sim --task robosuite:Lift --episodes 50 --out data/sim_lift --workers 2
    python -m wp_training.collect_sim --task robosuite:Lift,Stack --episodes 5 --out /tmp/sim_demo --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.pool import AsyncResult
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.sim.base import SimUnavailableError
from wp_policy.sim.protocol import RENDER_SIZE
from wp_policy.sim.registry import parse_env_name
from wp_policy.sim.robosuite_env import RobosuiteEnv
from wp_training.rlds_io import RldsError, write_rlds
from wp_training.scripted_expert import EXPERTS, ExpertEpisode, run_expert_episode

DEFAULT_SEED = 100_000  # far from the small seeds evaluations use, so demos never replay an evaluation scene
SUMMARY_FILE = "collect_summary.json"


@dataclass(frozen=True)
class CollectConfig:
    env: str  # "robosuite:Lift" or "robosuite:Lift,Stack"
    episodes: int  # successful episodes to keep per task
    out_dir: str
    seed: int = DEFAULT_SEED
    workers: int = 1
    max_attempts: int = 0  # per task; 0 = 2 * episodes + 10
    image_size: int = RENDER_SIZE
    name: str = ""  # dataset name; "" = sim_<tasks>
    overwrite: bool = False
    post_success_steps: int = 0  # expert steps recorded past the first successful one (a margin for the stop)
    tasks: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        backend, tasks = parse_env_name(self.env)
        if backend != "robosuite":
            raise ValueError(f"collect-sim needs a robosuite stand-in env (scripted experts), got {self.env!r}")
        missing = [t for t in tasks if t not in EXPERTS]
        if missing:
            raise ValueError(f"no scripted expert for {missing}; experts exist for {sorted(EXPERTS)}")
        if self.episodes <= 0:
            raise ValueError(f"episodes must be positive, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_attempts and self.max_attempts < self.episodes:
            raise ValueError(f"max_attempts ({self.max_attempts}) must be >= episodes ({self.episodes})")
        if self.post_success_steps < 0:
            raise ValueError(f"post_success_steps must be >= 0, got {self.post_success_steps}")
        if self.seed < 0 or self.image_size <= 0:
            raise ValueError(f"seed must be >= 0 and image_size positive, got {self.seed}, {self.image_size}")
        object.__setattr__(self, "tasks", tasks)

    @property
    def attempts_per_task(self) -> int:
        return self.max_attempts or 2 * self.episodes + 10

    @property
    def dataset_name(self) -> str:
        return self.name or "sim_" + "_".join(t.lower() for t in self.tasks)


@dataclass
class TaskTally:
    attempts: int = 0
    successes: int = 0
    steps_kept: int = 0
    regrasps: int = 0


# -- worker side: one env per process, built on first use -----------------------------------------------------------
_WORKER_ENV: RobosuiteEnv | None = None
_POST_SUCCESS_STEPS = 0


def _init_worker(tasks: tuple[str, ...], image_size: int, post_success_steps: int) -> None:
    global _WORKER_ENV, _POST_SUCCESS_STEPS
    _WORKER_ENV = RobosuiteEnv(tasks, render=True, image_size=image_size)
    _POST_SUCCESS_STEPS = post_success_steps


def _attempt(job: tuple[str, int]) -> ExpertEpisode:
    task, seed = job
    return run_expert_episode(_WORKER_ENV, task, seed, post_success_steps=_POST_SUCCESS_STEPS)


@contextlib.contextmanager
def _submitter(cfg: CollectConfig) -> Iterator[Callable[[tuple[str, int]], AsyncResult]]:
    """``submit(job) -> AsyncResult`` on ``cfg.workers`` fresh processes.

    Rendering always happens in worker processes: this process writes the RLDS with TensorFlow, and TensorFlow and
    MuJoCo's Mesa renderer crash when they share a process (docs/simulation.md). ``spawn`` keeps GL contexts and
    TF threads out of the workers.
    """
    ctx = multiprocessing.get_context("spawn")
    initargs = (cfg.tasks, cfg.image_size, cfg.post_success_steps)
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=initargs) as pool:
        yield lambda job: pool.apply_async(_attempt, (job,))  # leaving the block terminates unneeded attempts


def _to_rlds_episode(ep: ExpertEpisode, robot: RobotConfig) -> dict:
    """The rlds_io episode dict in the LIBERO layout (camera views -> rlds keys from the robot config)."""
    observation = {cam.rlds_key: ep.images[cam.view] for cam in robot.cameras}
    observation[robot.state_keys[0]] = ep.states
    return {
        "observation": observation,
        "action": ep.actions,
        "language_instruction": ep.instruction,
        "success": ep.success,
        "file_path": f"{ep.task}_seed{ep.seed}",
    }


def _kept_episodes(cfg: CollectConfig, robot: RobotConfig, tally: dict[str, TaskTally]) -> Iterator[dict]:
    """Successful episodes, task by task, until each has ``cfg.episodes``; fills ``tally`` as it goes.

    ``workers`` attempts are in flight and results are taken in attempt order, so the kept episodes do not depend
    on the number of workers, and at most ``workers`` attempts are wasted once a task is complete.
    """
    progress = tqdm(total=cfg.episodes * len(cfg.tasks), desc="collect-sim", unit="ep")
    with _submitter(cfg) as submit:
        for task in cfg.tasks:
            t = tally[task]
            seeds = iter(range(cfg.seed, cfg.seed + cfg.attempts_per_task))
            window = deque(submit((task, seed)) for seed in itertools.islice(seeds, cfg.workers))
            while window and t.successes < cfg.episodes:
                ep = window.popleft().get()
                for seed in itertools.islice(seeds, 1):  # keep every worker busy
                    window.append(submit((task, seed)))
                t.attempts += 1
                progress.set_postfix(task=task, attempts=t.attempts)
                if ep.success:
                    t.successes += 1
                    t.steps_kept += ep.num_steps
                    t.regrasps += ep.regrasps
                    progress.update(1)
                    yield _to_rlds_episode(ep, robot)
    progress.close()


def collect(cfg: CollectConfig) -> dict:
    """Run the collection, write the RLDS and the summary JSON; returns the summary."""
    robot = load_robot_config("libero")
    tally = {task: TaskTally() for task in cfg.tasks}
    start = time.perf_counter()
    dataset_dir = write_rlds(
        cfg.out_dir, _kept_episodes(cfg, robot, tally), robot, cfg.dataset_name, image_size=cfg.image_size,
        overwrite=cfg.overwrite,
        description=f"scripted-expert demonstrations on {cfg.env} (wp_training.collect_sim, seed {cfg.seed})",
    )
    short = {task: t for task, t in tally.items() if t.successes < cfg.episodes}
    summary = {
        "env": cfg.env,
        "dataset_dir": str(dataset_dir),
        "seed": cfg.seed,
        "episodes_per_task": cfg.episodes,
        "wall_s": round(time.perf_counter() - start, 1),
        "tasks": {
            task: {**asdict(t), "success_rate": t.successes / t.attempts if t.attempts else 0.0}
            for task, t in tally.items()
        },
    }
    (Path(cfg.out_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if short:
        raise RuntimeError(
            f"only {[(k, v.successes) for k, v in short.items()]} successes within {cfg.attempts_per_task} "
            f"attempts per task; the partial dataset is in {dataset_dir}; raise --max-attempts"
        )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--task", required=True, help="stand-in env, e.g. robosuite:Lift or robosuite:Lift,Stack")
    parser.add_argument("--episodes", type=int, required=True, help="successful episodes to keep per task")
    parser.add_argument("--out", required=True, help="output directory (gets <name>/1.0.0 and collect_summary.json)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="attempt i resets with seed + i")
    parser.add_argument("--workers", type=int, default=1, help="rollout processes, each rendering its own scene")
    parser.add_argument("--max-attempts", type=int, default=0, help="per task; 0 = 2 * episodes + 10")
    parser.add_argument("--image-size", type=int, default=RENDER_SIZE, help="camera resolution (LIBERO: 256)")
    parser.add_argument("--name", default="", help="dataset name (default sim_<tasks>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    parser.add_argument("--post-success-steps", type=int, default=0,
                        help="expert steps to record past the first successful one (a margin for the policy's stop)")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = CollectConfig(
        env=args.task, episodes=args.episodes, out_dir=args.out, seed=args.seed, workers=args.workers,
        max_attempts=args.max_attempts, image_size=args.image_size, name=args.name, overwrite=args.overwrite,
        post_success_steps=args.post_success_steps,
    )
    summary = collect(cfg)
    for task, t in summary["tasks"].items():
        print(f"{task}: kept {t['successes']}/{t['attempts']} attempts ({100 * t['success_rate']:.0f}% success), "
              f"{t['steps_kept']} steps")
    print(f"wrote {summary['dataset_dir']} in {summary['wall_s']} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-data collect-sim", description=__doc__.split("\n")[0],
        epilog=__doc__.split("Examples::")[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (RldsError, SimUnavailableError, ValueError, RuntimeError) as exc:
        print(f"wp-data collect-sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
