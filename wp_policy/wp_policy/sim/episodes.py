"""Episodes as data, shared by ``wp-eval``, the LIBERO bridge node and ``wp-demo`` (ROS-free, no simulator state).

- ``EpisodeSpec`` / ``EpisodeResult``: one episode to run and what happened in it (``to_json`` / ``from_json``
  round-trip exactly).
- ``plan_specs(env, tasks, trials, ...)``: the episode list of a run (LIBERO's protocol: stand-in trial t resets with
  ``seed + t`` or ``seeds[t]``, LIBERO trial t from init state t; budgets per task); names unknown tasks at once.
- ``summary_record``, ``summarize``, ``format_table``: results.json's per-episode records, its success rates and the
  printed table.
- ``results_document``: results.json's content, for whoever owns the file (``wp-eval``, the bridge, ``wp-demo``).
- ``append_record`` / ``read_records``: a JSON-lines file a run appends one record to as each episode ends, so a
  caller follows progress from data instead of log lines (the bridge's ``EPISODE_RECORDS``, which wp-demo reads).

Keeping these in one place means every runner plans the same episodes and reports them the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np

from wp_policy.config_io import ConfigError
from wp_policy.sim.protocol import EVAL_SEED, NUM_WAIT_STEPS, WAIT_ACTION, video_filename
from wp_policy.sim.recording import TERMINATIONS, PlanRecord

Termination = Literal["success", "max_steps", "stopped"]
EPISODE_RECORDS = "episodes.jsonl"  # the bridge's per-episode records: a header line, then one line per episode
_ARRAYS = ("actions", "proprio", "plans")  # per-step data: in episode files, not in summaries


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode. ``max_steps`` counts policy steps; the wait steps come on top (LIBERO protocol)."""

    task: str
    trial: int
    seed: int | None = None  # seeded reset (robosuite stand-ins); LIBERO seeds its env once and uses init states
    init_state: int | None = None  # row of the env's fixed init states (LiberoEnv.init_states); wins over seed
    max_steps: int = 100
    num_wait_steps: int = 10

    def __post_init__(self):
        if self.trial < 0:
            raise ValueError(f"trial must be >= 0, got {self.trial}")
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.num_wait_steps < 0:
            raise ValueError(f"num_wait_steps must be >= 0, got {self.num_wait_steps}")
        if self.init_state is not None and self.init_state < 0:
            raise ValueError(f"init_state must be a row index >= 0, got {self.init_state}")

    @property
    def key(self) -> str:
        """File-name safe identity of the episode (task + trial), used for resumable result files."""
        return video_filename(self.task, self.trial, True).removeprefix("rollout_").removesuffix("_success.mp4")


@dataclass(frozen=True)
class EpisodeResult:
    task: str
    trial: int
    seed: int | None
    success: bool
    steps: int  # policy steps executed (wait steps excluded)
    termination: Termination
    actions: np.ndarray  # float64 [steps, action_dim], exactly what the env received
    plan_latency_s: tuple[float, ...] = ()  # one per policy.plan call
    fill_latency_s: tuple[float, ...] = ()  # one per policy.fill call
    video: str | None = None
    replan_mode: str = "after_last"
    pairs_per_plan: int = 0  # pairs of each plan that ran before the next plan (0: all)
    plan_lead_s: float | None = None  # the ReplanConfig's leads (None: a record from before they were recorded)
    fill_lead_s: float | None = None
    pair_start: str = "planned"  # the ReplanConfig's pair_start
    init_state: int | None = None
    num_plans: int = 0
    episode_s: float = 0.0  # wall time of the whole episode (reset, wait steps, policy steps, video)
    proprio: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # float64 [steps + 1, P] observed
    plans: tuple[PlanRecord, ...] = ()  # every plan loaded, with the policy step it was made at

    def to_json(self) -> dict:
        """Plain JSON data; floats survive the round trip exactly (Python's repr is shortest round-trip)."""
        out = asdict(self)
        out["actions"] = np.asarray(self.actions, dtype=np.float64).tolist()
        out["plan_latency_s"] = list(self.plan_latency_s)
        out["fill_latency_s"] = list(self.fill_latency_s)
        out["proprio"] = np.asarray(self.proprio, dtype=np.float64).tolist()
        out["plans"] = [p.to_json() for p in self.plans]
        return out

    @classmethod
    def from_json(cls, data: dict) -> EpisodeResult:
        """The inverse of :meth:`to_json`; records written before ``proprio`` and ``plans`` existed load too, and
        keys that are not fields (a runner's own, e.g. the bridge's ``bridge``) are ignored."""
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in names}
        actions = np.asarray(data.pop("actions"), dtype=np.float64)
        if actions.size == 0:
            actions = actions.reshape(0, len(WAIT_ACTION))
        proprio = np.asarray(data.pop("proprio", []), dtype=np.float64)
        if proprio.size == 0:
            proprio = proprio.reshape(0, 0)
        dim = proprio.shape[1]
        plans = tuple(PlanRecord.from_json(p, dim) for p in data.pop("plans", []))
        return cls(actions=actions, plan_latency_s=tuple(data.pop("plan_latency_s")),
                   fill_latency_s=tuple(data.pop("fill_latency_s")), proprio=proprio, plans=plans, **data)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> EpisodeResult:
        return cls.from_json(json.loads(Path(path).read_text()))


def write_json(path: str | Path, data, indent: int | None = 1) -> Path:
    """Write atomically (temp file + rename): an interrupted run never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    tmp.replace(path)
    return path


# ---- planning the episodes -------------------------------------------------------------------------------------
def plan_specs(env, tasks: Sequence[str | int] = (), trials: int = 1, *, seed: int = EVAL_SEED,
               seeds: Sequence[int] = (), num_wait_steps: int = NUM_WAIT_STEPS, max_steps: int = 0,
               max_steps_per_task: dict[str, int] | None = None) -> list[EpisodeSpec]:
    """Every episode of a run in a stable order (tasks, then trials); a ConfigError names an unknown task.

    ``env``: a :class:`wp_policy.sim.registry.SimEnvConfig` or env name; ``tasks``: names, or positions in the env's
    task list (empty: every task); ``seeds``: a reset seed per trial (stand-ins), else ``seed + trial``;
    ``max_steps``: 0 for each task's own budget, which ``max_steps_per_task`` overrides. Builds no scene.
    """
    from wp_policy.sim.registry import backend_of, make_env

    per_task = dict(max_steps_per_task or {})
    with make_env(env) as sim:  # builds no scene yet: cheap, and LIBERO's missing files fail here
        known = {t.name: t for t in sim.tasks}
        names = list(known)
        bad_ids = [t for t in tasks if isinstance(t, int) and not 0 <= t < len(names)]
        if bad_ids:
            raise ConfigError(f"task_id {bad_ids[0]} is out of range: {_env_name(env)} has {len(names)} task(s) "
                              f"{names}")
        chosen = tuple(names[t] if isinstance(t, int) else t for t in tasks) or tuple(names)
        unknown = [t for t in (*chosen, *per_task) if t not in known]
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown} for env {_env_name(env)!r}; known: {names}")
        uses_init_states = backend_of(_env_name(env)).uses_init_states
        if uses_init_states:
            for task in chosen:
                available = len(sim.init_states(task))
                if trials > available:
                    raise ConfigError(f"trials_per_task {trials} > the {available} init states of task {task!r}")
    specs = []
    for task in chosen:
        budget = per_task.get(task) or max_steps or known[task].max_steps
        for trial in range(trials):
            if uses_init_states:
                start = {"seed": None, "init_state": trial}
            else:
                start = {"seed": seeds[trial] if seeds else seed + trial, "init_state": None}
            specs.append(EpisodeSpec(task, trial, **start, max_steps=budget, num_wait_steps=num_wait_steps))
    return specs


def _env_name(env) -> str:
    return getattr(env, "env", env)


def tasks_of(specs: Sequence[EpisodeSpec]) -> list[str]:
    """The tasks of a run in run order (what its summary lists, episodes run or not)."""
    return list(dict.fromkeys(s.task for s in specs))


# ---- results ---------------------------------------------------------------------------------------------------
def summary_record(result: EpisodeResult) -> dict:
    """An episode's record in wp-eval's results.json: everything but the per-step arrays (actions, proprio, plans:
    they stay in its episode file, which ``wp-eval plot`` reads)."""
    data = result.to_json()
    for key in _ARRAYS:
        data.pop(key)
    return data


def _latency_stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {"count": int(arr.size), "mean_s": float(arr.mean()), "p50_s": float(np.percentile(arr, 50)),
            "p90_s": float(np.percentile(arr, 90)), "max_s": float(arr.max())}


def _terminations(results: list[EpisodeResult]) -> dict[str, int]:
    """Episodes per termination reason: every known reason (0 if none), then any other reason recorded."""
    counts = {t: 0 for t in TERMINATIONS}
    for r in results:
        counts[r.termination] = counts.get(r.termination, 0) + 1
    return counts


def summarize(results: list[EpisodeResult], tasks: list[str]) -> dict:
    """Per-task and overall success rates, terminations per reason, latencies (tasks in run order)."""
    per_task = {}
    for task in tasks:
        rs = [r for r in results if r.task == task]
        n, ok = len(rs), sum(r.success for r in rs)
        per_task[task] = {"episodes": n, "successes": ok, "success_rate": ok / n if n else 0.0,
                          "mean_steps": float(np.mean([r.steps for r in rs])) if rs else 0.0,
                          "terminations": _terminations(rs)}
    n, ok = len(results), sum(r.success for r in results)
    return {
        "per_task": per_task,
        "overall": {"episodes": n, "successes": ok, "success_rate": ok / n if n else 0.0,
                    "task_mean_success_rate": float(np.mean([v["success_rate"] for v in per_task.values()]))
                    if per_task else 0.0},
        "terminations": _terminations(results),
        "latency": {"plan": _latency_stats([x for r in results for x in r.plan_latency_s]),
                    "fill": _latency_stats([x for r in results for x in r.fill_latency_s])},
    }


def results_document(env: str, config: dict, tasks: list[str], results: Sequence[EpisodeResult],
                     records: Sequence[dict], **extra) -> dict:
    """results.json: env, the run's config, the summary of ``results``, their ``records`` (as the runner writes
    them: wp-eval's without per-step arrays, the bridge's with its own block), then ``extra`` (wp-eval's policy,
    wp-demo's own block)."""
    return {"env": env, "config": config, **summarize(list(results), tasks), "episodes": list(records), **extra}


def format_table(summary: dict) -> str:
    """The printed table: per task the episodes, successes, rate, mean policy steps and how the episodes ended
    (one column per termination reason: success, stopped = the policy predicted stop, max_steps = budget spent)."""
    per_task, o = summary["per_task"], summary["overall"]
    overall_ends = summary.get("terminations") or {}
    reasons = list(dict.fromkeys([*TERMINATIONS, *overall_ends,
                                  *(k for v in per_task.values() for k in v.get("terminations", {}))]))
    width = max([len("task"), len("overall"), *(len(t) for t in per_task)])
    cols = [max(len(r), 5) for r in reasons]
    ends_head = "  ".join(f"{r:>{c}}" for r, c in zip(reasons, cols))

    def ends(counts: dict) -> str:
        return "  ".join(f"{counts.get(r, 0) if counts else '-':>{c}}" for r, c in zip(reasons, cols))

    head = f"{'task':<{width}}  episodes  successes  success  mean steps | {ends_head}"
    rule = "-" * len(head)
    lines = [f"{'':<{width + 41}}| episodes that ended in", head, rule]
    lines += [f"{t:<{width}}  {v['episodes']:>8}  {v['successes']:>9}  {v['success_rate']:>6.1%}  "
              f"{v['mean_steps']:>10.1f} | {ends(v.get('terminations', {}))}" for t, v in per_task.items()]
    lines += [rule, f"{'overall':<{width}}  {o['episodes']:>8}  {o['successes']:>9}  {o['success_rate']:>6.1%}  "
              f"{'':>10} | {ends(overall_ends)}"]
    lat = summary["latency"]
    for name in ("plan", "fill"):
        if lat[name]["count"]:
            lines.append(f"{name} latency: mean {lat[name]['mean_s'] * 1e3:.1f} ms, p90 "
                         f"{lat[name]['p90_s'] * 1e3:.1f} ms over {lat[name]['count']} calls")
    return "\n".join(lines)


# ---- per-episode records as a run goes -------------------------------------------------------------------------
def append_record(path: str | Path, record: dict) -> None:
    """One JSON line, flushed at once: a reader sees every finished episode, never half a line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_records(path: str | Path) -> list[dict]:
    """Every complete line of a records file (an unfinished last line is left for the next read); none if absent."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]
