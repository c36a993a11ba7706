"""wp-eval: evaluate a waypoint policy directly in simulation (no ROS), with LIBERO's protocol.

    wp-eval --config configs/eval/eval_lift.yaml
    wp-eval --config configs/eval/eval_lift.yaml --set trials_per_task=5 --set workers=2 --output-dir runs/eval/try

Episodes (tasks x trials, planned by :func:`wp_policy.sim.episodes.plan_specs`) are spread over ``workers`` spawned
processes; each builds its env and policy once and runs :func:`wp_policy.sim.rollout.run_episode` with a
:class:`~wp_policy.sim.rollout.PolicyActor`. Every finished episode is written to ``<output_dir>/episodes/<task>_t<i>
.json`` at once, so an interrupted run resumes where it stopped (finished episodes are skipped; a changed config is
refused unless ``--overwrite``). At the end: ``results.json`` (per-episode records, per-task and overall success
rates, terminations per reason, latencies), a printed table, ``success_rate.png`` and one MP4 per episode under
``videos/`` (:mod:`wp_policy.sim.recording`). ``wp-eval plot`` draws one episode (:mod:`wp_policy.sim.episode_plot`).

Episodes always run in child processes, even with one worker: rendering must never share a process with TensorFlow
(see :func:`wp_policy.sim.robosuite_env.check_render_process`), and the parent stays free of simulator state.
Results are reproducible: robosuite trials reset with ``seed + trial`` (or ``seeds[trial]``), LIBERO trials with the
suite's init state ``trial``, and the policy's noise is seeded from observation stamps; bitwise-equal actions also
need the same ``torch_threads`` (CPU float reductions depend on the thread count).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from wp_policy.cli_help import HelpFormatter
from wp_policy.config_io import ConfigError, load_config, parse_overrides, to_dict
from wp_policy.process_utils import die_with_parent
from wp_policy.runtime.policy import PolicyConfig, load_policy_config
from wp_policy.runtime.replan import MOVED_KEYS, ReplanConfig
from wp_policy.sim.protocol import EVAL_SEED, NUM_TRIALS_PER_TASK, NUM_WAIT_STEPS
from wp_policy.sim.base import SimUnavailableError
from wp_policy.sim.episodes import (EpisodeResult, EpisodeSpec, format_table, plan_specs, results_document,
                                    summary_record, tasks_of, write_json)
from wp_policy.sim.recording import VIDEO_SIZE, check_video_size
from wp_policy.sim.registry import SimEnvConfig, backend_of, make_env

RESULTS_FILE = "results.json"
CHART_FILE = "success_rate.png"
CONFIG_FILE = "eval_config.json"
# fields that do not change what an episode does: a resumed run may change them (e.g. add trials or tasks)
_RESUME_FREE = ("workers", "output_dir", "torch_threads", "tasks", "trials_per_task", "record_video", "video_size")


class EpisodeError(RuntimeError):
    """An episode raised in a worker (policy files that do not load, a simulator failure); names the episode."""


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run. Defaults follow LIBERO's protocol (50 trials per task, seed 7, 10 wait steps)."""

    env: SimEnvConfig = field(default_factory=SimEnvConfig)
    policy_config: str = ""  # PolicyConfig YAML (relative: to this file); or give `policy` inline
    policy: PolicyConfig | None = None  # inline PolicyConfig fields (paths relative to this file)
    tasks: tuple[str, ...] = ()  # empty: every task of the env, in the env's order
    trials_per_task: int = NUM_TRIALS_PER_TASK
    seed: int = EVAL_SEED  # robosuite trial i resets with seed + i (LIBERO: init state i, env seeded by the suite)
    seeds: tuple[int, ...] = ()  # explicit reset seed per trial (robosuite); overrides `seed`
    num_wait_steps: int = NUM_WAIT_STEPS
    max_steps: int = 0  # policy steps per episode; 0: the task's budget (LIBERO: the suite's)
    max_steps_per_task: dict[str, int] = field(default_factory=dict)  # per-task budget, wins over max_steps
    replan: ReplanConfig = field(default_factory=ReplanConfig)  # mode, pairs_per_plan, leads (as the graph's)
    workers: int = 1  # episode worker processes
    torch_threads: int = 0  # intra-op threads per worker; 0: cpu_count // workers
    record_video: bool = True
    video_size: int = VIDEO_SIZE  # pixels per view in the videos (agentview and wrist side by side)
    output_dir: str = "runs/eval"  # relative: to the current directory
    REMOVED_KEYS: ClassVar[dict[str, str]] = MOVED_KEYS

    def __post_init__(self):
        if bool(self.policy_config) == (self.policy is not None):
            raise ValueError("give exactly one of policy_config (a PolicyConfig YAML path) and policy (inline fields)")
        for name in ("trials_per_task", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_wait_steps", "max_steps", "torch_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.seeds and len(self.seeds) != self.trials_per_task:
            raise ValueError(f"seeds has {len(self.seeds)} values but trials_per_task is {self.trials_per_task}")
        bad = {t: n for t, n in self.max_steps_per_task.items() if n <= 0}
        if bad:
            raise ValueError(f"max_steps_per_task values must be positive, got {bad}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must not repeat, got {list(self.tasks)}")
        if not self.output_dir:
            raise ValueError("output_dir must not be empty")
        check_video_size(self.video_size)

    @property
    def uses_init_states(self) -> bool:
        """LIBERO trials start from the suite's fixed init states; the stand-ins from seeded placements."""
        return backend_of(self.env.env).uses_init_states


def load_eval_config(path: str | Path, overrides: dict | None = None) -> tuple[EvalConfig, PolicyConfig]:
    """The eval config and its resolved PolicyConfig (relative paths resolved against ``path``'s folder)."""
    path = Path(path)
    config = load_config(EvalConfig, path, overrides)
    base = path.resolve().parent
    if config.policy is not None:
        return config, config.policy.resolve(base)
    policy_path = Path(config.policy_config)
    policy_path = policy_path if policy_path.is_absolute() else base / policy_path
    if not policy_path.is_file():
        raise ConfigError(f"{path}: policy_config: policy config file {policy_path} not found")
    return config, load_policy_config(policy_path)


# ---- planning the episodes -------------------------------------------------------------------------------------
def episode_specs(config: EvalConfig) -> list[EpisodeSpec]:
    """Every episode of the run in a stable order; checks task names against the env (no simulator started)."""
    return plan_specs(config.env, config.tasks, config.trials_per_task, seed=config.seed, seeds=config.seeds,
                      num_wait_steps=config.num_wait_steps, max_steps=config.max_steps,
                      max_steps_per_task=config.max_steps_per_task)


def check_policy_files(policy: PolicyConfig) -> None:
    """Fail before any worker starts: evaluation needs both models, and every file the policy names."""
    missing = [k for k in ("vlm_checkpoint", "ae_checkpoint") if not getattr(policy, k)]
    if missing:
        raise ConfigError(f"policy: evaluation needs a planner and a filler; {', '.join(missing)} not set")
    for key in ("vlm_checkpoint", "ae_checkpoint", "stats_path", "tokenizer_path"):
        if not Path(getattr(policy, key)).exists():
            raise ConfigError(f"policy: {key} {getattr(policy, key)} does not exist")


def episode_path(output_dir: Path, spec: EpisodeSpec) -> Path:
    return output_dir / "episodes" / f"{spec.key}.json"


def check_resume(output_dir: Path, config: EvalConfig, policy: PolicyConfig, overwrite: bool) -> None:
    """Refuse to mix episodes of different configs in one output dir (unless ``overwrite`` clears it)."""
    record = {"eval": _fingerprint(config), "policy": to_dict(policy)}
    saved = output_dir / CONFIG_FILE
    if overwrite and output_dir.exists():
        for sub in ("episodes", "videos"):
            shutil.rmtree(output_dir / sub, ignore_errors=True)
        for name in (RESULTS_FILE, CHART_FILE, CONFIG_FILE):
            (output_dir / name).unlink(missing_ok=True)
    elif saved.is_file():
        previous = json.loads(saved.read_text())
        if previous != record:
            changed = sorted(
                f"{part}.{k}" for part in record for k in set(record[part]) | set(previous.get(part, {}))
                if record[part].get(k) != previous.get(part, {}).get(k)
            )
            raise ConfigError(f"{output_dir} holds episodes of a different evaluation (changed: {changed}); "
                              "use another output_dir or pass --overwrite to start over")
    (output_dir / "episodes").mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(record, indent=1))


def _fingerprint(config: EvalConfig) -> dict:
    data = to_dict(config)
    for key in _RESUME_FREE:
        data.pop(key)
    data.pop("policy")  # compared as the resolved PolicyConfig instead
    data.pop("policy_config")
    return json.loads(json.dumps(data))  # tuples -> lists, as read back from the file


# ---- worker processes ------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(config: EvalConfig, policy: PolicyConfig, output_dir: str, threads: int, parent: int) -> None:
    """Runs in each spawned worker; the env and policy are built on its first episode (errors then reach the
    parent through the episode's future instead of killing the pool). The worker ends with its parent, however the
    parent ends (SIGKILL included), instead of finishing an episode nobody will read."""
    die_with_parent(parent)
    _WORKER.update(config=config, policy_config=policy, output_dir=Path(output_dir), threads=threads)


def _run_in_worker(spec: EpisodeSpec) -> dict:
    from wp_policy.sim.rollout import PolicyActor, run_episode

    w = _WORKER
    if "env" not in w:
        import torch

        from wp_policy.runtime.policy import WaypointPolicy

        torch.set_num_threads(w["threads"])
        w["policy"] = WaypointPolicy.from_config(w["policy_config"])  # a ConfigError names the file
        w["env"] = make_env(w["config"].env)
    cfg: EvalConfig = w["config"]
    video_dir = w["output_dir"] / "videos" if cfg.record_video else None
    result = run_episode(w["env"], spec, PolicyActor(w["policy"], cfg.replan), video_dir=video_dir,
                         video_size=cfg.video_size)
    result.save(episode_path(w["output_dir"], spec))
    return summary_record(result)


def run_episodes(config: EvalConfig, policy: PolicyConfig, specs: list[EpisodeSpec], output_dir: Path,
                 progress: bool = True) -> None:
    """Run ``specs`` over the worker pool; each finished episode is on disk before the next is reported."""
    if not specs:
        return
    from tqdm import tqdm

    workers = min(config.workers, len(specs))
    threads = config.torch_threads or max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(config, policy, str(output_dir), threads, os.getpid()))
    try:
        with tqdm(total=len(specs), desc="episodes", unit="ep", disable=not progress) as bar:
            spec_of = {pool.submit(_run_in_worker, s): s for s in specs}
            futures, successes = set(spec_of), 0
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.exception() is not None:
                        exc = fut.exception()
                        if isinstance(exc, (ConfigError, SimUnavailableError)):
                            raise exc  # a known configuration problem: one line, no traceback
                        raise EpisodeError(f"episode {spec_of[fut].key} failed: {type(exc).__name__}: {exc}") from exc
                    successes += fut.result()["success"]
                    bar.update(1)
                    bar.set_postfix(success=f"{successes}/{bar.n}")
    except BaseException:  # an episode failed or Ctrl-C: stop at once; finished episodes are already on disk
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


# ---- results ---------------------------------------------------------------------------------------------------
def write_chart(summary: dict, path: Path, title: str) -> Path:
    """Horizontal bar chart of per-task success rates plus the overall rate (PNG, matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*summary["per_task"], "overall"]
    rates = [v["success_rate"] for v in summary["per_task"].values()] + [summary["overall"]["success_rate"]]
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.4 * len(names)))
    bars = ax.barh(range(len(names)), [100 * r for r in rates], color=["tab:blue"] * (len(names) - 1) + ["tab:green"])
    ax.set_yticks(range(len(names)), [n if len(n) <= 48 else n[:45] + "..." for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("success rate (%)")
    ax.set_title(title)
    ax.bar_label(bars, fmt="%.0f%%", padding=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def collect_results(specs: list[EpisodeSpec], output_dir: Path) -> list[EpisodeResult]:
    return [EpisodeResult.load(episode_path(output_dir, s)) for s in specs]


def write_results(config: EvalConfig, policy: PolicyConfig, specs: list[EpisodeSpec], output_dir: Path) -> dict:
    """results.json + success_rate.png from the episode files; returns the summary."""
    results = collect_results(specs, output_dir)
    doc = results_document(config.env.env, to_dict(config), tasks_of(specs), results,
                           [summary_record(r) for r in results], policy=to_dict(policy))
    write_json(output_dir / RESULTS_FILE, doc)
    summary = {k: doc[k] for k in ("per_task", "overall", "terminations", "latency")}
    write_chart(summary, output_dir / CHART_FILE, f"{config.env.env} ({config.replan.mode})")
    return summary


def evaluate(config: EvalConfig, policy: PolicyConfig, overwrite: bool = False, progress: bool = True) -> dict:
    """The whole run: plan episodes, skip finished ones, run the rest, write results; returns the summary."""
    output_dir = Path(config.output_dir)
    specs = episode_specs(config)
    check_policy_files(policy)
    check_resume(output_dir, config, policy, overwrite)
    todo = [s for s in specs if not episode_path(output_dir, s).is_file()]
    if len(todo) < len(specs):
        print(f"resuming: {len(specs) - len(todo)} of {len(specs)} episodes already done in {output_dir}")
    run_episodes(config, policy, todo, output_dir, progress)
    return write_results(config, policy, specs, output_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter,
                                     epilog="example:\n  wp-eval --config configs/eval/eval_lift.yaml "
                                            "--set trials_per_task=5 --workers 2\n\n"
                                            "plot one episode (planned waypoints against the executed trajectory):\n"
                                            "  wp-eval plot <output_dir>/episodes/<task>_t<i>.json   "
                                            "(see wp-eval plot --help)\n")
    parser.add_argument("--config", required=True, help="eval config YAML (configs/eval/*.yaml)")
    parser.add_argument("--policy", help="policy file (PolicyConfig YAML) to evaluate instead of the config's "
                                         "policy; short for --set policy_config=<the file> (default: the config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (dotted keys, YAML values), e.g. --set env.image_size=128")
    parser.add_argument("--output-dir", help="where episodes, videos and results go (default: the config's)")
    parser.add_argument("--workers", type=int, help="episode worker processes (default: the config's)")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier episodes in the output dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def cli_overrides(args: argparse.Namespace) -> dict:
    """The config overrides the options stand for: ``--set`` items, then ``--policy`` (relative to the current
    directory; it replaces an inline ``policy`` too), ``--output-dir`` and ``--workers``."""
    overrides = parse_overrides(args.overrides)
    if args.policy:
        overrides.update(policy_config=str(Path(args.policy).resolve()), policy=None)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.workers is not None:
        overrides["workers"] = args.workers
    return overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plot"]:
        from wp_policy.sim.episode_plot import main as plot_main

        return plot_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config, policy = load_eval_config(args.config, cli_overrides(args))
        summary = evaluate(config, policy, overwrite=args.overwrite, progress=not args.no_progress)
    except (ConfigError, FileNotFoundError) as exc:  # known configuration problems: one line
        print(f"wp-eval: error: {exc}", file=sys.stderr)
        return 2
    except SimUnavailableError as exc:
        print(f"wp-eval: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except EpisodeError as exc:  # anything else that failed in an episode: a bug, so keep its traceback (the
        traceback.print_exception(exc)  # worker's is attached as the cause)
        return 1
    except KeyboardInterrupt:
        print("wp-eval: interrupted; finished episodes are saved, run the same command again to resume",
              file=sys.stderr)
        return 130
    print(format_table(summary))
    print(f"results: {Path(config.output_dir) / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
