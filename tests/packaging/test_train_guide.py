"""The "Train your own policy" guide works as written: its quick-pass block (docs/train-your-own.md) runs end to
end in bash, with only its size variables made smaller and the episodes shortened, from scripted demonstrations to
a policy file that wp-eval and the simulated ROS graph (wp-demo) both run."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from ros_domains import spare_domain

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "train-your-own.md"
MARKER = "<!-- quick-pass"
SIZES = "W={work} EPISODES=2 AE_STEPS=3 VLM_STEPS=3 WARMUP=1 EVAL_EPISODES=1"
SHORT_EPISODES = "--set max_steps=6"  # policy steps per episode: enough to plan, fill and move


def quick_pass_block() -> str:
    text = GUIDE.read_text()
    after = text[text.index(MARKER):]
    match = re.search(r"```bash\n(.*?)```", after, re.S)
    assert match, f"no bash block after {MARKER} in {GUIDE}"
    return match.group(1)


def test_the_block_sets_its_sizes_on_its_first_command_line():
    first = next(line for line in quick_pass_block().splitlines() if line and not line.startswith("#"))
    assert re.fullmatch(r"W=\S+ EPISODES=\d+ AE_STEPS=\d+ VLM_STEPS=\d+ WARMUP=\d+ EVAL_EPISODES=\d+", first), first


@pytest.mark.slow
def test_the_quick_pass_trains_a_policy_that_runs_in_wp_eval_and_on_the_graph(tmp_path):
    work = tmp_path / "run"
    lines = quick_pass_block().splitlines()
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    lines[first] = SIZES.format(work=work)
    script = "\n".join(lines)
    script = script.replace("--set trials_per_task=$EVAL_EPISODES", f"--set trials_per_task=$EVAL_EPISODES {SHORT_EPISODES}")
    script = script.replace("--episodes 1 ", f"--episodes 1 {SHORT_EPISODES} ")
    assert script.count(SHORT_EPISODES) == 2, "the guide's wp-eval / wp-demo lines changed: update this test"
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(spare_domain())}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for path in ("policy.yaml", "vlm/final_model/model.safetensors", "ae/final_model/model.safetensors",
                 "stats.json", "tokenizer.model", "lift_t0.png", "waypoints/waypoint_indices.json"):
        assert (work / path).is_file(), path
    results = json.loads((work / "eval" / "results.json").read_text())
    assert results["overall"]["episodes"] == 1, results["overall"]
    demo = json.loads((work / "demo" / "results.json").read_text())
    assert len(demo["episodes"]) == 1 and demo["episodes"][0]["steps"] > 0, demo
