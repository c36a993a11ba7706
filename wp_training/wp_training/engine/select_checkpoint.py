"""``wp-train select``: pick the planner checkpoint that succeeds most often in simulation, not the last one.

The training loss says little about task success (a planner whose loss still falls can place its grasp worse), so
the recipe evaluates saved checkpoints on held-out episodes and ships the best. For each candidate
(``run_dir/checkpoints/step_*`` of one or more VLM runs, optionally only every ``--every`` steps; a run's last
checkpoint always counts) this:

1. exports the checkpoint for inference (``<out>/candidates/<run>_<step>/vlm``, rebuilt from the checkpoint's own
   training config, so no YAML is needed);
2. runs the direct evaluator (:func:`wp_policy.sim.eval_cli.evaluate`) with a policy template whose planner is
   replaced by the candidate: the template's AE, stats and tokenizer, the eval config's env and protocol, and
   held-out reset seeds ``seed .. seed + episodes - 1``, which must not overlap the eval config's own test seeds;
3. records ``(run, step, successes, episodes)`` in ``<out>/selection.json`` and ``selection.tsv``, and copies the
   best export to ``<out>/best_vlm`` (most successes; a tie goes to the later candidate, i.e. more training).

Everything is resumable: an exported candidate is not exported again and the evaluator skips finished episodes,
so an interrupted selection continues where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from wp_policy.cli_help import HelpFormatter
from wp_policy.config_io import ConfigError, parse_overrides
from wp_policy.models.checkpoint import CONFIG_FILE
from wp_training.engine.train_config import train_config_from_checkpoint
from wp_training.engine.train_state import list_checkpoints
from wp_training.tasks.interface import get_task

SELECTION_FILE = "selection.json"
TABLE_FILE = "selection.tsv"
BEST_DIR = "best_vlm"


@dataclass(frozen=True)
class Candidate:
    run: str  # the run directory's name (candidates of several runs are told apart by it)
    step: int
    checkpoint: Path

    @property
    def label(self) -> str:
        return f"{self.run}_{self.step:08d}"


def list_candidates(run_dirs: list[Path], every: int = 0) -> list[Candidate]:
    """Complete checkpoints of ``run_dirs`` in the given order (steps ascending within a run); with ``every`` > 0
    only steps that are multiples of it, plus each run's last checkpoint."""
    out = []
    names = [Path(r).name for r in run_dirs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run directories must have different names, got {names}")
    for run in map(Path, run_dirs):
        found = list_checkpoints(run / "checkpoints")
        if not found:
            raise ConfigError(f"{run}: no complete checkpoint under {run / 'checkpoints'}")
        last = found[-1][0]
        out += [Candidate(run.name, step, path) for step, path in found
                if every <= 0 or step % every == 0 or step == last]
    return out


def export_candidate(candidate: Candidate, out_dir: Path) -> Path:
    """The candidate's inference export (reused when already complete), rebuilt from its checkpoint's config."""
    from wp_training.engine.trainer import export_checkpoint

    if (out_dir / CONFIG_FILE).is_file():
        return out_dir
    cfg = train_config_from_checkpoint(candidate.checkpoint)
    task = get_task(cfg.mode)
    if task.name != "vlm":
        raise ConfigError(f"{candidate.checkpoint}: a {task.name} checkpoint; selection compares planner (vlm) runs")
    model_cfg, _ = task.parse_configs(cfg.model, cfg.data, str(candidate.checkpoint))
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    export_checkpoint(task, cfg, model_cfg, candidate.checkpoint, tmp)
    tmp.replace(out_dir)
    return out_dir


def held_out_seeds(eval_config, seed: int, episodes: int) -> tuple[int, ...]:
    """``seed .. seed + episodes - 1``, refused when they overlap the eval config's own (test) seeds."""
    seeds = tuple(range(seed, seed + episodes))
    test = set(eval_config.seeds or range(eval_config.seed, eval_config.seed + eval_config.trials_per_task))
    overlap = sorted(test & set(seeds))
    if overlap:
        raise ConfigError(f"held-out seeds {seeds[0]}..{seeds[-1]} overlap the eval config's test seeds "
                          f"({min(test)}..{max(test)}) at {overlap[:5]}; choose another --seed")
    return seeds


def select_checkpoint(run_dirs: list[Path], eval_config, policy, out_dir: Path, seed: int, episodes: int,
                      every: int = 0, progress: bool = True) -> dict:
    """Evaluate every candidate (see the module docstring); returns the selection record written to disk."""
    from wp_policy.sim.eval_cli import evaluate

    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    seeds = held_out_seeds(eval_config, seed, episodes)
    out_dir = Path(out_dir)
    rows = []
    for cand in list_candidates(run_dirs, every):
        base = out_dir / "candidates" / cand.label
        vlm = export_candidate(cand, base / "vlm")
        cfg = dataclasses.replace(eval_config, trials_per_task=episodes, seeds=seeds, record_video=False,
                                  output_dir=str(base / "eval"))
        summary = evaluate(cfg, dataclasses.replace(policy, vlm_checkpoint=str(vlm)), progress=progress)
        overall = summary["overall"]
        rows.append({"run": cand.run, "step": cand.step, "successes": overall["successes"],
                     "episodes": overall["episodes"], "success_rate": overall["success_rate"],
                     "export": str(vlm)})
        print(f"{cand.label}: {overall['successes']}/{overall['episodes']}", flush=True)
    best = max(range(len(rows)), key=lambda i: (rows[i]["successes"], i))
    best_dir = out_dir / BEST_DIR
    shutil.rmtree(best_dir, ignore_errors=True)
    shutil.copytree(rows[best]["export"], best_dir)
    record = {"env": eval_config.env.env, "seeds": list(seeds), "candidates": rows, "best": rows[best],
              "best_dir": str(best_dir)}
    (out_dir / SELECTION_FILE).write_text(json.dumps(record, indent=1))
    lines = ["run\tstep\tsuccesses\tepisodes"] + [f"{r['run']}\t{r['step']}\t{r['successes']}\t{r['episodes']}"
                                                  for r in rows]
    (out_dir / TABLE_FILE).write_text("\n".join(lines) + "\n")
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wp-train select", formatter_class=HelpFormatter,
        description="Pick the planner checkpoint with the most simulated successes on held-out seeds.",
        epilog=__doc__.split("\n\n", 1)[1] + "\nexample:\n  wp-train select --runs runs/vlm runs/vlm_refine "
        "--policy runs/base_policy.yaml \\\n      --eval-config configs/eval/eval_lift.yaml --seed 1000 --episodes 20 "
        "--every 1000 --out runs/select\n")
    parser.add_argument("--runs", nargs="+", required=True, type=Path, help="VLM run directories (run_dir)")
    parser.add_argument("--policy", required=True, help="PolicyConfig YAML: AE, stats, tokenizer (its VLM is "
                        "replaced by each candidate)")
    parser.add_argument("--eval-config", required=True, help="eval config YAML: env and protocol (its test seeds "
                        "are excluded from the held-out ones)")
    parser.add_argument("--seed", type=int, required=True, help="first held-out reset seed")
    parser.add_argument("--episodes", type=int, default=20, help="held-out episodes per candidate (default 20)")
    parser.add_argument("--every", type=int, default=0, help="only checkpoints at multiples of this step (plus "
                        "each run's last); 0: all")
    parser.add_argument("--out", required=True, type=Path, help="output directory (exports, evals, table, best)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an eval config field, e.g. --set env.image_size=128 --set workers=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str]) -> int:
    from wp_policy.runtime.policy import load_policy_config
    from wp_policy.sim.eval_cli import load_eval_config

    args = build_parser().parse_args(argv)
    policy_path = Path(args.policy)
    overrides = {**parse_overrides(args.overrides), "policy_config": str(policy_path.resolve())}
    eval_config, _ = load_eval_config(args.eval_config, overrides)
    policy = load_policy_config(policy_path)
    record = select_checkpoint(args.runs, eval_config, policy, args.out, args.seed, args.episodes, args.every,
                               progress=not args.no_progress)
    best = record["best"]
    print((Path(args.out) / TABLE_FILE).read_text(), end="")
    print(f"best: {best['run']} step {best['step']} ({best['successes']}/{best['episodes']}) -> {record['best_dir']}")
    return 0
