"""``wp-train select``: candidates, held-out seeds, and a real selection over two tiny checkpoints in simulation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from wp_policy.config_io import ConfigError
from wp_policy.models import load_model_config
from wp_policy.paths import config_dir
from wp_policy.sim.eval_cli import load_eval_config
from wp_training.engine.select_checkpoint import held_out_seeds, list_candidates
from wp_training.train_cli import main as train_main

from .e2e_data import cli_overrides, data_overrides, libero_data  # noqa: F401  (libero_data is a fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policy_files import write_sim_policy  # noqa: E402

EVAL_CONFIG = config_dir() / "eval" / "eval_lift.yaml"


def test_held_out_seeds_must_not_overlap_the_test_seeds():
    config, _ = load_eval_config(EVAL_CONFIG)  # test seeds 7..56
    assert held_out_seeds(config, 1000, 3) == (1000, 1001, 1002)
    with pytest.raises(ConfigError, match=r"overlap the eval config's test seeds \(7..56\) at \[50, 51"):
        held_out_seeds(config, 50, 10)


def test_candidates(tmp_path):
    def fake(run, steps):
        for s in steps:
            d = tmp_path / run / "checkpoints" / f"step_{s:08d}"
            d.mkdir(parents=True)
            (d / "manifest.json").write_text("{}")
        return tmp_path / run

    a, b = fake("vlm", [250, 500, 750, 1000, 1100]), fake("vlm_refine", [500, 1000])
    got = [(c.run, c.step) for c in list_candidates([a, b], every=500)]
    assert got == [("vlm", 500), ("vlm", 1000), ("vlm", 1100), ("vlm_refine", 500), ("vlm_refine", 1000)]
    assert len(list_candidates([a])) == 5
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        list_candidates([tmp_path / "missing"])


@pytest.mark.slow
def test_select_evaluates_each_checkpoint_and_keeps_the_best(libero_data, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "vlm"
    args = ["--mode", "vlm", "--config", str(config_dir() / "train/tiny_vlm_libero.yaml"), f"run_dir={run}",
            *cli_overrides(data_overrides("vlm", libero_data)), "num_steps=4", "optim.warmup_steps=1",
            "checkpoint.every_steps=2", "checkpoint.keep_last=5", "model.proprio_tokens=uncoupled"]
    assert train_main(args) == 0
    policy = write_sim_policy(tmp_path / "template", libero_data["tokenizer"])
    out = tmp_path / "select"
    select = ["select", "--runs", str(run), "--policy", str(policy), "--eval-config", str(EVAL_CONFIG), "--seed",
              "1000", "--episodes", "1", "--out", str(out), "--set", "max_steps=2", "--set", "workers=1",
              "--set", "env.image_size=64", "--no-progress"]
    assert train_main(select) == 0
    record = json.loads((out / "selection.json").read_text())
    assert [r["step"] for r in record["candidates"]] == [2, 4] and record["seeds"] == [1000]
    assert all(r["episodes"] == 1 for r in record["candidates"])
    assert (out / "selection.tsv").read_text().splitlines()[0] == "run\tstep\tsuccesses\tepisodes"
    assert load_model_config(out / "best_vlm").waypoint_dims == (0, 1, 2, 3, 4, 5, 6)
    assert "best: vlm step" in capsys.readouterr().out
    # a second run reuses the exports and the finished episodes
    exported = (out / "candidates" / "vlm_00000002" / "vlm" / "model.safetensors").stat().st_mtime_ns
    assert train_main(select) == 0
    assert (out / "candidates" / "vlm_00000002" / "vlm" / "model.safetensors").stat().st_mtime_ns == exported
    assert "resuming: 1 of 1 episodes already done" in capsys.readouterr().out
