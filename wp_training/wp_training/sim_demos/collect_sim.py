"""``wp-data collect-sim``: scripted-expert demonstrations (robosuite stand-ins, real LIBERO) as LIBERO-layout RLDS.

Attempt i of a task runs the expert (:func:`wp_training.sim_demos.scripted_expert.run_expert_episode`, its
variation seeded with ``seed + i``) from the evaluation's reset: the stand-ins reset with seed ``seed + i``, real
LIBERO tasks (``libero:<suite>``, :mod:`wp_training.sim_demos.libero_expert`) from init state
``first_init_state + i`` of the suite. An episode is kept only if it succeeds, until ``--episodes`` successes per task. Kept episodes are the first successful
attempts in attempt order, so the dataset is the same for any ``--workers``. Output: ``OUT/<name>/1.0.0``
(observation/image, observation/wrist_image at 256, observation/state [8], action [7], language_instruction) plus
``OUT/collect_summary.json`` (attempts, the expert's success rate and mean steps per task, seconds per episode).
Every finished attempt is also kept in ``OUT/.collect_cache/`` until the collection completes: the same command run
again after an interruption continues where it stopped (:mod:`wp_training.sim_demos.attempt_cache`).

Examples::

    wp-data collect-sim --task robosuite:Lift --episodes 50 --out data/sim_lift --workers 2
    python -m wp_training.sim_demos.collect_sim --task robosuite:Lift,Stack --episodes 5 --out /tmp/sim_demo --seed 0
    wp-data collect-sim --task libero:libero_object --episodes 20 --out data/sim_libero_object --first-init-state 25
    wp-data collect-sim --task libero:libero_spatial --task-ids 0,3 --episodes 2 --out /tmp/sim_spatial
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

import numpy as np
from tqdm import tqdm

from wp_policy.cli_help import HelpFormatter
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.sim.base import SimEnv, SimUnavailableError
from wp_policy.sim.protocol import RENDER_SIZE
from wp_policy.sim.registry import BACKENDS, SimEnvConfig, make_env, parse_env_name
from wp_training.data.rlds_layout import RldsError
from wp_training.data.rlds_writer import write_rlds
from wp_training.sim_demos.attempt_cache import AttemptCache
from wp_training.sim_demos.scripted_expert import DEMO_SEED, EXPERTS, ExpertEpisode, Pushes, run_expert_episode

DEFAULT_SEED = DEMO_SEED  # stand-ins: demos never replay an evaluation scene
SUMMARY_FILE = "collect_summary.json"


@dataclass(frozen=True)
class CollectConfig:
    env: str  # "robosuite:Lift", "robosuite:Lift,Stack" or "libero:<suite>"
    episodes: int  # successful episodes to keep per task
    out_dir: str
    seed: int = DEFAULT_SEED
    workers: int = 1
    max_attempts: int = 0  # per task; 0 = 2 * episodes + 10
    image_size: int = RENDER_SIZE
    name: str = ""  # dataset name; "" = sim_<tasks>
    overwrite: bool = False
    post_success_steps: int = 0  # expert steps recorded past the first successful one (a margin for the stop)
    task_ids: tuple[int, ...] = ()  # positions in the env's task list to collect; () = all
    first_init_state: int = 0  # LIBERO: attempt i starts from init state first_init_state + i
    missed_grasp_fraction: float = 0.0  # stand-ins: share of attempts recorded from a missed grasp (recovery demos)
    push_rate: float = 0.0  # chance per step that the expert's arm is pushed (DART-style disturbances; 0: none)
    allow_fewer: bool = False  # a task short of `episodes` after its attempts is reported, not an error
    backend: str = field(init=False)
    targets: tuple[str, ...] = field(init=False)  # stand-in tasks, or the LIBERO suite

    def __post_init__(self):
        backend, targets = parse_env_name(self.env)
        caps = BACKENDS[backend]
        if not caps.uses_init_states:  # the stand-ins: one scripted expert per task
            missing = [t for t in targets if t not in EXPERTS]
            if missing:
                raise ValueError(f"no scripted expert for {missing}; experts exist for {sorted(EXPERTS)}")
        if any(i < 0 for i in self.task_ids) or len(set(self.task_ids)) != len(self.task_ids):
            raise ValueError(f"task_ids must be distinct indices >= 0, got {list(self.task_ids)}")
        if self.first_init_state < 0:
            raise ValueError(f"first_init_state must be >= 0, got {self.first_init_state}")
        if not caps.uses_init_states and self.first_init_state:
            raise ValueError("first_init_state applies to LIBERO suites (fixed init states) only; the stand-ins "
                             "reset with --seed")
        if not 0.0 <= self.missed_grasp_fraction <= 1.0:
            raise ValueError(f"missed_grasp_fraction must be in [0, 1], got {self.missed_grasp_fraction}")
        if not caps.recovery_demos and self.missed_grasp_fraction:
            raise ValueError("missed-grasp starts exist for the stand-in tasks' experts only, not for LIBERO suites")
        if not 0.0 <= self.push_rate <= 1.0:
            raise ValueError(f"push_rate must be in [0, 1], got {self.push_rate}")
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
        object.__setattr__(self, "backend", backend)
        object.__setattr__(self, "targets", targets)

    @property
    def uses_init_states(self) -> bool:
        """Attempts start from the suite's fixed init states (LIBERO), not from seeded resets (the stand-ins)."""
        return BACKENDS[self.backend].uses_init_states

    def cache_settings(self) -> dict:
        """What an attempt's recording depends on (attempt i of a task is a function of these and i): the attempt
        cache is reused only under the same values."""
        return {"env": self.env, "seed": self.seed, "image_size": self.image_size, "first_init_state":
                self.first_init_state, "post_success_steps": self.post_success_steps,
                "missed_grasp_fraction": self.missed_grasp_fraction, "push_rate": self.push_rate}

    @property
    def attempts_per_task(self) -> int:
        return self.max_attempts or 2 * self.episodes + 10

    @property
    def dataset_name(self) -> str:
        return self.name or "sim_" + "_".join(t.lower() for t in self.targets)

    def env_config(self) -> SimEnvConfig:
        return SimEnvConfig(env=self.env, image_size=self.image_size)

    def plan(self, env: SimEnv) -> tuple[tuple[str, int], ...]:
        """(task, attempts) to collect: ``task_ids`` of the env's task list (all when empty); a LIBERO task has at
        most as many attempts as init states from ``first_init_state`` on."""
        names = tuple(t.name for t in env.tasks)
        bad = [i for i in self.task_ids if i >= len(names)]
        if bad:
            raise ValueError(f"task_ids {bad} out of range: {self.env} has {len(names)} tasks (0..{len(names) - 1})")
        plan = []
        for name in (tuple(names[i] for i in self.task_ids) if self.task_ids else names):
            attempts = self.attempts_per_task
            if self.uses_init_states:
                available = len(env.init_states(name)) - self.first_init_state
                if available <= 0:
                    raise ValueError(f"first_init_state {self.first_init_state} is past the "
                                     f"{available + self.first_init_state} init states of task {name!r}")
                attempts = min(attempts, available)
            plan.append((name, attempts))
        return tuple(plan)

    def job(self, task: str, attempt: int) -> tuple[str, int, int | None, bool]:
        """(task, expert seed, init-state row or None, missed-grasp start) of attempt ``attempt``.

        Whether an attempt starts from a missed grasp is drawn from its own seed, so it does not depend on workers.
        """
        seed = self.seed + attempt
        init_state = self.first_init_state + attempt if self.uses_init_states else None
        draw = np.random.default_rng([seed, 2]).random()
        missed = bool(self.missed_grasp_fraction and draw < self.missed_grasp_fraction)
        return task, seed, init_state, missed


@dataclass
class TaskTally:
    attempts: int = 0
    successes: int = 0
    steps_kept: int = 0
    regrasps: int = 0
    missed_grasp_starts: int = 0  # kept episodes recorded from a missed grasp
    pushed_steps: int = 0  # steps of the kept episodes whose translation was a push (collect-sim --push-rate)
    failed: list[str] = field(default_factory=list)  # file_path-style names of the failed attempts

    @property
    def mean_steps(self) -> float:
        return self.steps_kept / self.successes if self.successes else 0.0


# -- worker side: one env per process, built on first use -----------------------------------------------------------
_WORKER_ENV: SimEnv | None = None
_POST_SUCCESS_STEPS = 0
_PUSHES: Pushes | None = None


def _init_worker(env_config: SimEnvConfig, post_success_steps: int, push_rate: float) -> None:
    global _WORKER_ENV, _POST_SUCCESS_STEPS, _PUSHES
    _WORKER_ENV = make_env(env_config)
    _POST_SUCCESS_STEPS = post_success_steps
    _PUSHES = Pushes(push_rate) if push_rate else None


def _attempt(job: tuple[str, int, int | None, bool]) -> ExpertEpisode:
    task, seed, init_state, missed_grasp = job
    return run_expert_episode(_WORKER_ENV, task, seed, post_success_steps=_POST_SUCCESS_STEPS, init_state=init_state,
                              missed_grasp=missed_grasp, pushes=_PUSHES)


def _task_plan(cfg: CollectConfig) -> tuple[tuple[str, int], ...]:
    """Worker side: :meth:`CollectConfig.plan` (LIBERO's task list is read where LIBERO runs)."""
    return cfg.plan(_WORKER_ENV)


def episode_name(ep: ExpertEpisode) -> str:
    """``<task>_seed<seed>[_missed]`` (stand-ins; ``_missed``: recorded from a missed grasp) or ``<task>_init<row>``
    (LIBERO): the episode's ``file_path``."""
    if ep.init_state is not None:
        return f"{ep.task}_init{ep.init_state}"
    return f"{ep.task}_seed{ep.seed}" + ("_missed" if ep.missed_grasp else "")


@contextlib.contextmanager
def _submitter(cfg: CollectConfig) -> Iterator[tuple[tuple[tuple[str, int], ...], Callable[[tuple], AsyncResult]]]:
    """``(plan, submit(job) -> AsyncResult)`` on ``cfg.workers`` fresh processes (plan: :meth:`CollectConfig.plan`).

    Simulation always happens in worker processes: this process writes the RLDS with TensorFlow, and TensorFlow and
    MuJoCo's Mesa renderer crash when they share a process (docs/simulation.md). ``spawn`` keeps GL contexts and
    TF threads out of the workers. The task list comes from a worker too: LIBERO's comes with its simulator.
    """
    ctx = multiprocessing.get_context("spawn")
    initargs = (cfg.env_config(), cfg.post_success_steps, cfg.push_rate)
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=initargs) as pool:
        plan = pool.apply(_task_plan, (cfg,))
        yield plan, lambda job: pool.apply_async(_attempt, (job,))  # leaving the block ends unneeded attempts


def _to_rlds_episode(ep: ExpertEpisode, robot: RobotConfig) -> dict:
    """The rlds_writer episode dict in the LIBERO layout (camera views -> rlds keys from the robot config)."""
    observation = {cam.rlds_key: ep.images[cam.view] for cam in robot.cameras}
    observation[robot.state_keys[0]] = ep.states
    return {
        "observation": observation,
        "action": ep.actions,
        "language_instruction": ep.instruction,
        "success": ep.success,
        "file_path": episode_name(ep),
    }


def _kept_episodes(cfg: CollectConfig, robot: RobotConfig, tally: dict[str, TaskTally],
                   cache: AttemptCache) -> Iterator[dict]:
    """Successful episodes, task by task, until each has ``cfg.episodes``; fills ``tally`` (task -> counts) as it
    goes.

    ``workers`` attempts are in flight and results are taken in attempt order, so the kept episodes do not depend
    on the number of workers, and at most ``workers`` attempts are wasted once a task is complete. Attempts found
    in ``cache`` are read instead of simulated; simulated ones are added to it.
    """
    with _submitter(cfg) as (plan, submit):
        progress = tqdm(total=cfg.episodes * len(plan), desc="collect-sim", unit="ep")
        for task, attempts in plan:
            t = tally.setdefault(task, TaskTally())

            def start(attempt: int, task: str = task) -> tuple[int, ExpertEpisode | AsyncResult]:
                cached = cache.get(task, attempt)
                return attempt, cached if cached is not None else submit(cfg.job(task, attempt))

            pending = (start(attempt) for attempt in range(attempts))
            window = deque(itertools.islice(pending, cfg.workers))
            while window and t.successes < cfg.episodes:
                attempt, ep = window.popleft()
                if not isinstance(ep, ExpertEpisode):
                    ep = ep.get()
                    cache.put(attempt, ep)
                window.extend(itertools.islice(pending, 1))  # keep every worker busy
                t.attempts += 1
                progress.set_postfix(task=task[:40], attempts=t.attempts, reused=cache.reused)
                if not ep.success:
                    t.failed.append(episode_name(ep))
                    continue
                t.successes += 1
                t.steps_kept += ep.num_steps
                t.regrasps += ep.regrasps
                t.missed_grasp_starts += ep.missed_grasp
                t.pushed_steps += ep.pushed_steps
                progress.update(1)
                yield _to_rlds_episode(ep, robot)
        progress.close()


def collect(cfg: CollectConfig) -> dict:
    """Run the collection, write the RLDS and the summary JSON; returns the summary."""
    robot = load_robot_config("libero")
    tally: dict[str, TaskTally] = {}
    cache = AttemptCache(cfg.out_dir, cfg.cache_settings())
    start = time.perf_counter()
    dataset_dir = write_rlds(
        cfg.out_dir, _kept_episodes(cfg, robot, tally, cache), robot, cfg.dataset_name, image_size=cfg.image_size,
        overwrite=cfg.overwrite,
        description=f"scripted-expert demonstrations on {cfg.env} (wp_training.sim_demos.collect_sim, seed {cfg.seed})",
    )
    wall_s = time.perf_counter() - start
    short = {task: t for task, t in tally.items() if t.successes < cfg.episodes}
    attempts = sum(t.attempts for t in tally.values())
    summary = {
        "env": cfg.env,
        "dataset_dir": str(dataset_dir),
        "seed": cfg.seed,
        "first_init_state": cfg.first_init_state if cfg.uses_init_states else None,
        "episodes_per_task": cfg.episodes,
        "wall_s": round(wall_s, 1),
        "s_per_attempt": round(wall_s / attempts, 2) if attempts else None,  # whole run (start-up included)
        "attempts_reused": cache.reused,  # read from the attempt cache of an interrupted run
        "short_tasks": {task: t.successes for task, t in short.items()},  # kept fewer than episodes_per_task
        "tasks": {
            task: {**asdict(t), "success_rate": t.successes / t.attempts if t.attempts else 0.0,
                   "mean_steps": round(t.mean_steps, 1)}
            for task, t in tally.items()
        },
    }
    (Path(cfg.out_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    shortfall = (f"only {[(k, v.successes) for k, v in short.items()]} successes within "
                 f"{[v.attempts for v in short.values()]} attempts")
    if short and not cfg.allow_fewer:
        raise RuntimeError(
            f"{shortfall}; the partial dataset is in {dataset_dir}; raise --max-attempts (LIBERO: at most the suite's "
            f"init states from --first-init-state on) or pass --allow-fewer to keep it"
        )
    if short:
        print(f"collect-sim: {shortfall}; kept as asked (--allow-fewer): {dataset_dir}")
    cache.remove()
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--task", required=True,
                        help="env: robosuite:Lift, robosuite:Lift,Stack or a LIBERO suite, e.g. libero:libero_object")
    parser.add_argument("--episodes", type=int, required=True, help="successful episodes to keep per task")
    parser.add_argument("--out", required=True, help="output directory (gets <name>/1.0.0 and collect_summary.json)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="attempt i: expert seed + i (stand-ins: also the reset seed)")
    parser.add_argument("--task-ids", type=_int_list, default=(),
                        help="comma-separated positions in the env's task list, e.g. 0,3 (default: all tasks)")
    parser.add_argument("--first-init-state", type=int, default=0,
                        help="LIBERO: attempt i starts from the suite's init state first + i (evaluation uses 0..)")
    parser.add_argument("--workers", type=int, default=1, help="rollout processes, each rendering its own scene")
    parser.add_argument("--max-attempts", type=int, default=0, help="per task; 0 = 2 * episodes + 10")
    parser.add_argument("--image-size", type=int, default=RENDER_SIZE, help="camera resolution (LIBERO: 256)")
    parser.add_argument("--name", default="", help="dataset name (default sim_<tasks>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    parser.add_argument("--post-success-steps", type=int, default=0,
                        help="expert steps to record past the first successful one (a margin for the policy's stop)")
    parser.add_argument("--missed-grasp-fraction", type=float, default=0.0,
                        help="stand-ins: share of attempts recorded from a missed grasp (the expert shuts the hand "
                             "above or beside the object unrecorded, the demo shows the recovery)")
    parser.add_argument("--push-rate", type=float, default=0.0,
                        help="chance per step that the expert's arm is pushed for a few steps in a random direction "
                             "(DART-style disturbances: demos whose motion the pose does not predict; 0: none)")
    parser.add_argument("--allow-fewer", action="store_true",
                        help="keep the dataset when a task has fewer successes than --episodes after its attempts "
                             "(LIBERO: its init states from --first-init-state on run out); the summary names them")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = CollectConfig(
        env=args.task, episodes=args.episodes, out_dir=args.out, seed=args.seed, workers=args.workers,
        max_attempts=args.max_attempts, image_size=args.image_size, name=args.name, overwrite=args.overwrite,
        post_success_steps=args.post_success_steps, task_ids=args.task_ids, first_init_state=args.first_init_state,
        missed_grasp_fraction=args.missed_grasp_fraction, push_rate=args.push_rate, allow_fewer=args.allow_fewer,
    )
    summary = collect(cfg)
    width = max(len(task) for task in summary["tasks"])
    print(f"{'task':<{width}}  expert success  mean steps  kept steps")
    for task, t in summary["tasks"].items():
        rate = f"{t['successes']}/{t['attempts']} ({100 * t['success_rate']:.0f}%)"
        print(f"{task:<{width}}  {rate:>14}  {t['mean_steps']:>10.1f}  {t['steps_kept']:>10}")
    print(f"wrote {summary['dataset_dir']} in {summary['wall_s']} s ({summary['s_per_attempt']} s per attempt)")
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-data collect-sim", description=__doc__.split("\n")[0],
        epilog=__doc__.split("Examples::")[1], formatter_class=HelpFormatter,
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
