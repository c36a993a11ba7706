"""The whole chain at small scale, with the same recipe that builds the shipped policy: scripted demos in simulation
-> waypoint extraction -> stats -> tokenizer -> AE and VLM training -> export -> one episode through the ROS graph.

It runs ``scripts/train_demo_policy.sh`` (2 demos at 64 px, a few training steps) and then ``wp_policy.demo`` on the
exported policy, so a change that breaks any hand-off between the commands (RLDS layout, waypoint indices, stats
keys, checkpoint format, policy.yaml, graph parameters) fails here even when each part's own tests pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.sim, pytest.mark.ros]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "scripts" / "train_demo_policy.sh"


def _run(cmd: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    return proc


def test_demos_to_trained_policy_to_an_episode_through_the_graph(tmp_path):
    work, out = tmp_path / "work", tmp_path / "policy"
    env = {**os.environ, "WORK": str(work), "OUT": str(out), "EPISODES": "2", "IMAGE_SIZE": "64",
           "POST_SUCCESS_STEPS": "3", "COLLECT_WORKERS": "1", "PY": sys.executable,
           "AE_ARGS": "num_steps=4 optim.warmup_steps=1 checkpoint.every_steps=2 log.every_steps=1 batch_size=4 min_global_batch=4",
           "VLM_ARGS": "num_steps=4 optim.warmup_steps=1 checkpoint.every_steps=2 log.every_steps=1 batch_size=4 min_global_batch=4"
                       " data.history_noise=0.1"}
    _run(["bash", str(RECIPE), "collect", "waypoints", "stats", "tokenizer", "train", "export"], env, 900)

    indices = json.loads((work / "waypoints" / "waypoint_indices.json").read_text())
    assert indices, "extraction wrote no waypoints"
    other = subprocess.run(["bash", str(RECIPE), "waypoints"], env={**env, "WAYPOINT_THRESHOLD": "0.02"}, cwd=REPO,
                           capture_output=True, text=True, timeout=60)  # a stage marker records its settings
    assert other.returncode == 2 and "threshold=0.02" in other.stderr, other.stderr
    for name in ("policy.yaml", "stats.json", "tokenizer.model", "ae/model.safetensors", "vlm/model.safetensors"):
        assert (out / name).is_file(), f"export is missing {name}"

    demo_out = tmp_path / "demo"
    _run([sys.executable, "-m", "wp_policy.demo", "--policy", str(out / "policy.yaml"), "--episodes", "1",
          "--output-dir", str(demo_out), "--set", "image_size=64", "--set", "max_steps=6", "--no-progress"],
         {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}, 600)
    results = json.loads((demo_out / "results.json").read_text())
    (episode,) = results["episodes"]
    assert 1 <= episode["steps"] <= 6 and len(episode["actions"]) == episode["steps"]
    assert list(Path(demo_out / "videos").glob("rollout_Lift_t0_*.mp4")), "no episode video"
