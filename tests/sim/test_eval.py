"""wp-eval (wp_policy.sim.eval_cli): configs, episode planning, resume, results files, and real Lift runs through
the command line (episodes render in wp-eval's spawned workers, never in the pytest process)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from wp_policy.config_io import ConfigError, load_config
from wp_policy.sim.eval_cli import (
    EvalConfig,
    build_parser,
    check_resume,
    cli_overrides,
    episode_specs,
    load_eval_config,
    main,
    write_chart,
)
from wp_policy.sim.episodes import format_table, summarize
from wp_policy.sim.libero_env import libero_missing
from wp_policy.sim.recording import END_HOLD_FRAMES, frame_shape
from wp_policy.sim.rollout import EpisodeResult

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "eval"
VIDEO = 128  # pixels per view in the test videos


@pytest.fixture(scope="module")
def policy_yaml(tmp_path_factory, sp_model_path):
    from policy_files import write_sim_policy

    return write_sim_policy(tmp_path_factory.mktemp("eval_policy"), sp_model_path, num_waypoints=3, num_flow_steps=2)


def _eval_yaml(tmp_path: Path, policy_yaml: Path, **fields) -> Path:
    data = {"env": {"env": "robosuite:Lift", "image_size": 64}, "policy_config": str(policy_yaml),
            "trials_per_task": 2, "seed": 11, "num_wait_steps": 2, "max_steps": 8, "torch_threads": 1,
            "video_size": VIDEO, "output_dir": str(tmp_path / "out"), **fields}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---- configs ---------------------------------------------------------------------------------------------------
def test_shipped_configs_follow_the_protocol(capsys, monkeypatch, tmp_path):
    lift = load_config(EvalConfig, CONFIGS / "eval_lift.yaml")
    assert (lift.env.env, lift.trials_per_task, lift.seed, lift.num_wait_steps) == ("robosuite:Lift", 50, 7, 10)
    assert lift.policy_config.endswith("wp_policy/assets/policies/lift_demo/policy.yaml")
    assert [(s.seed, s.max_steps) for s in episode_specs(lift)][:2] == [(7, 100), (8, 100)]  # Lift's budget
    assert len(episode_specs(lift)) == 50

    libero, policy = load_eval_config(CONFIGS / "eval_libero.yaml")
    assert (libero.env.env, libero.trials_per_task, policy.robot) == ("libero:libero_spatial", 50, "libero")
    assert Path(policy.vlm_checkpoint).is_absolute()  # resolved against the config's folder
    if not libero_missing():  # the suite's 10 tasks x 50 init states, its budget; the placeholder checkpoints
        specs = episode_specs(libero)
        assert len(specs) == 500 and [(s.init_state, s.seed, s.max_steps) for s in specs[:2]] == [(0, None, 220),
                                                                                                   (1, None, 220)]
        assert main(["--config", str(CONFIGS / "eval_libero.yaml"), "--no-progress"]) == 2
        assert "vlm_checkpoint" in capsys.readouterr().err
    spatial, policy = load_eval_config(CONFIGS / "eval_libero_spatial_demo.yaml")  # the shipped LIBERO policy
    assert (spatial.env.env, spatial.env.image_size, spatial.trials_per_task) == ("libero:libero_spatial", 128, 5)
    assert policy.vlm_checkpoint.endswith("assets/policies/libero_spatial_demo/vlm")
    if not libero_missing():  # init states 0..4 of every task, disjoint from its demonstrations' 25..49
        specs = episode_specs(spatial)
        assert len(specs) == 50 and {s.init_state for s in specs} == set(range(5))
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))  # a machine without LIBERO's config and assets
    assert main(["--config", str(CONFIGS / "eval_libero.yaml"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "SimUnavailableError" in err and "make setup" in err  # names what is missing (package or config)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trials_per_task": 0}, "trials_per_task must be >= 1"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"max_steps": -5}, "max_steps must be >= 0"),
        ({"replan": {"mode": "sometimes"}}, r"replan: replan mode must be one of \['after_last', 'lookahead'\]"),
        ({"replan": {"pairs_per_plan": -1}}, "replan: pairs_per_plan must be >= 0"),
        ({"replan": {"plan_lead_s": -0.1}}, r"replan: plan_lead_s must be a number of seconds >= 0, got -0\.1"),
        ({"replan_mode": "lookahead"}, r"eval\.yaml: replan_mode: moved to replan\.mode"),
        ({"pairs_per_plan": 2}, r"eval\.yaml: pairs_per_plan: moved to replan\.pairs_per_plan"),
        ({"lead_ticks": 4}, r"eval\.yaml: lead_ticks: replaced by replan\.plan_lead_s, in seconds"),
        ({"seeds": [1, 2, 3]}, "seeds has 3 values but trials_per_task is 2"),
        ({"max_steps_per_task": {"Lift": 0}}, "max_steps_per_task values must be positive"),
        ({"env": {"env": "robosuite:Open"}}, r"unknown robosuite target\(s\) \['Open'\]"),
        ({"policy": {"robot": "libero", "vlm_checkpoint": "v", "stats_path": "s", "tokenizer_path": "t"}},
         "give exactly one of policy_config"),
        ({"policy_config": "nowhere.yaml"}, "policy config file .*nowhere.yaml not found"),
        ({"trials": 3}, r"unknown key\(s\) \['trials'\]"),
        ({"workers": "two"}, "workers: expected an integer"),
        ({"video_size": 63}, r"video_size must be an even number of pixels in 64\.\.2048, got 63"),
        ({"video_size": 32}, r"video_size must be an even number of pixels in 64\.\.2048, got 32"),
    ],
)
def test_bad_config_values_fail_clearly(tmp_path, policy_yaml, fields, message):
    with pytest.raises(ConfigError, match=message):
        load_eval_config(_eval_yaml(tmp_path, policy_yaml, **fields))


def test_policy_option_replaces_the_configs_policy(tmp_path, policy_yaml, monkeypatch):
    """``wp-eval --policy p.yaml`` = ``--set policy_config=<p.yaml from here>``, also over an inline policy."""
    from wp_policy.policy_config import load_policy_config

    inline = {"robot": "libero", "vlm_checkpoint": "v", "stats_path": "s", "tokenizer_path": "t"}
    config_path = _eval_yaml(tmp_path, policy_yaml, policy_config="", policy=inline)
    monkeypatch.chdir(policy_yaml.parent)
    args = build_parser().parse_args(["--config", str(config_path), "--policy", policy_yaml.name, "--set", "seed=3"])
    config, policy = load_eval_config(config_path, cli_overrides(args))
    assert (config.policy_config, config.policy, config.seed) == (str(policy_yaml.resolve()), None, 3)
    assert policy == load_policy_config(policy_yaml) and (policy.num_waypoints, policy.num_flow_steps) == (3, 2)


def test_episode_plan_checks_tasks_and_applies_budgets_and_seeds(tmp_path, policy_yaml):
    config, _ = load_eval_config(_eval_yaml(tmp_path, policy_yaml, env={"env": "robosuite:Lift,Stack"},
                                            seeds=[5, 9], max_steps_per_task={"Stack": 30}))
    specs = episode_specs(config)
    assert [(s.task, s.trial, s.seed, s.init_state, s.max_steps, s.num_wait_steps) for s in specs] == [
        ("Lift", 0, 5, None, 8, 2), ("Lift", 1, 9, None, 8, 2), ("Stack", 0, 5, None, 30, 2),
        ("Stack", 1, 9, None, 30, 2)]
    bad, _ = load_eval_config(_eval_yaml(tmp_path, policy_yaml, tasks=["Lift", "Door"]))
    with pytest.raises(ConfigError, match=r"unknown task\(s\) \['Door'\] for env 'robosuite:Lift'"):
        episode_specs(bad)


def test_missing_policy_files_are_named_before_any_worker_starts(tmp_path, policy_yaml, capsys):
    data = yaml.safe_load(policy_yaml.read_text())
    data["ae_checkpoint"] = str(tmp_path / "no_ae")
    broken = tmp_path / "broken_policy.yaml"
    broken.write_text(yaml.safe_dump(data))
    assert main(["--config", str(_eval_yaml(tmp_path, broken)), "--no-progress"]) == 2
    assert f"ae_checkpoint {tmp_path / 'no_ae'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out" / "episodes").exists()


def test_resume_refuses_an_output_dir_of_another_evaluation(tmp_path, policy_yaml, capsys):
    config, policy = load_eval_config(_eval_yaml(tmp_path, policy_yaml))
    check_resume(Path(config.output_dir), config, policy, overwrite=False)
    changed = _eval_yaml(tmp_path, policy_yaml, max_steps=9, replan={"mode": "lookahead"})
    assert main(["--config", str(changed), "--no-progress"]) == 2
    assert "changed: ['eval.max_steps', 'eval.replan']" in capsys.readouterr().err
    # more trials or workers are fine: they do not change what an episode does
    more, policy = load_eval_config(_eval_yaml(tmp_path, policy_yaml, trials_per_task=4, workers=2))
    check_resume(Path(more.output_dir), more, policy, overwrite=False)


# ---- results ---------------------------------------------------------------------------------------------------
def _result(task, trial, success, steps, plan=(0.1,), fill=(0.01, 0.03), term=None):
    term = term or ("success" if success else "max_steps")
    return EpisodeResult(task, trial, trial, success, steps, term, np.zeros((steps, 7)), plan, fill)


def test_summary_table_and_chart(tmp_path):
    results = [_result("Lift", 0, True, 40), _result("Lift", 1, False, 100), _result("Lift", 2, True, 50),
               _result("Lift", 3, False, 0, term="stopped"), _result("Stack", 0, False, 220, plan=(0.3,))]
    summary = summarize(results, ["Lift", "Stack"])
    assert summary["per_task"]["Lift"] == {"episodes": 4, "successes": 2, "success_rate": 0.5,
                                           "mean_steps": pytest.approx(190 / 4),
                                           "terminations": {"success": 2, "stopped": 1, "max_steps": 1}}
    assert summary["per_task"]["Stack"]["terminations"] == {"success": 0, "stopped": 0, "max_steps": 1}
    assert summary["overall"]["success_rate"] == 0.4
    assert summary["overall"]["task_mean_success_rate"] == pytest.approx(0.25)
    assert summary["terminations"] == {"success": 2, "stopped": 1, "max_steps": 2}
    assert summary["latency"]["plan"]["count"] == 5 and summary["latency"]["plan"]["max_s"] == 0.3
    assert summary["latency"]["fill"]["mean_s"] == pytest.approx(0.02)
    table = format_table(summary)
    assert "plan latency: mean 140.0 ms" in table
    # one column per termination reason: a policy that stops at step 0 shows as "stopped", not only as 0 steps
    lines = table.splitlines()
    assert lines[0].endswith("| episodes that ended in") and lines[1].split("|")[1].split() == [
        "success", "stopped", "max_steps"]
    rows = {line.split()[0]: line.split("|") for line in lines if "|" in line and line.split()[0] != "task"}
    assert rows["Lift"][0].split()[1:] == ["4", "2", "50.0%", "47.5"] and rows["Lift"][1].split() == ["2", "1", "1"]
    assert rows["Stack"][1].split() == ["0", "0", "1"] and rows["overall"][1].split() == ["2", "1", "2"]
    assert rows["overall"][0].split()[1:] == ["5", "2", "40.0%"]

    import matplotlib.image

    png = write_chart(summary, tmp_path / "chart.png", "test")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 50 and image.std() > 0.01


@pytest.mark.slow
def test_a_checkpoint_failing_to_load_in_a_worker_is_one_line_naming_the_file(tmp_path, policy_yaml, capsys):
    """Policy files that exist but do not load fail inside the worker: a known configuration error, reported in
    one line naming the file (exit 2), never as a traceback, and nothing is written."""
    corrupt = tmp_path / "corrupt"
    shutil.copytree(policy_yaml.parent, corrupt)
    (corrupt / "ae" / "model.safetensors").write_bytes(b"not a safetensors file")
    data = {k: str(v).replace(str(policy_yaml.parent), str(corrupt)) if isinstance(v, str) else v
            for k, v in yaml.safe_load(policy_yaml.read_text()).items()}
    (corrupt / "policy.yaml").write_text(yaml.safe_dump(data))
    config = _eval_yaml(tmp_path, corrupt / "policy.yaml", trials_per_task=1)
    assert main(["--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"wp-eval: error: ae_checkpoint: {corrupt / 'ae' / 'model.safetensors'}: unreadable safetensors file" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "out" / "episodes").glob("*.json"))


def test_only_known_errors_are_one_line_anything_else_keeps_its_traceback(tmp_path, policy_yaml, monkeypatch,
                                                                          capsys):
    import wp_policy.sim.eval_cli as eval_cli

    config = _eval_yaml(tmp_path, policy_yaml)

    def bug_in_an_episode(*args, **kwargs):
        try:
            raise ValueError("a bug deep in the rollout")
        except ValueError as exc:
            raise eval_cli.EpisodeError("episode Lift_t0 failed: ValueError: a bug deep in the rollout") from exc

    monkeypatch.setattr(eval_cli, "evaluate", bug_in_an_episode)
    assert main(["--config", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "raise ValueError(\"a bug deep in the rollout\")" in err

    def bare_bug(*args, **kwargs):
        raise ValueError("not a configuration problem")

    monkeypatch.setattr(eval_cli, "evaluate", bare_bug)
    with pytest.raises(ValueError, match="not a configuration problem"):  # propagates, with its traceback
        main(["--config", str(config), "--no-progress"])


@pytest.mark.slow
def test_workers_end_with_a_killed_parent(tmp_path, policy_yaml):
    """SIGKILL of wp-eval (no chance to clean up) still ends its workers at once, mid-episode."""
    import os
    import signal
    import time

    import psutil

    config = _eval_yaml(tmp_path, policy_yaml, trials_per_task=2, workers=2, max_steps=10000)
    proc = subprocess.Popen([sys.executable, "-m", "wp_policy.sim.eval_cli", "--config", str(config),
                             "--no-progress"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while len(parent.children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [c for c in parent.children() if "spawn" in " ".join(c.cmdline())]
    assert len(workers) == 2, parent.children()
    time.sleep(3.0)  # inside their first episode (env built, policy loaded or loading)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived their killed parent: {alive}"


# ---- real runs through the command line ------------------------------------------------------------------------
def _wp_eval(config: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "wp_policy.sim.eval_cli", "--config", str(config), "--no-progress",
                           *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, f"wp-eval failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.sim
def test_wp_eval_runs_resumes_and_reproduces(tmp_path, policy_yaml):
    import imageio.v2 as imageio
    import matplotlib.image

    config = _eval_yaml(tmp_path, policy_yaml)
    out = tmp_path / "out"
    first = _wp_eval(config, "--workers", "2")
    assert "overall" in first.stdout and "Lift" in first.stdout

    episodes = sorted((out / "episodes").glob("*.json"))
    assert [p.name for p in episodes] == ["Lift_t0.json", "Lift_t1.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["episodes"] == 2 and results["env"] == "robosuite:Lift"
    assert [(e["task"], e["trial"], e["seed"], e["steps"]) for e in results["episodes"]] == [
        ("Lift", 0, 11, 8), ("Lift", 1, 12, 8)]
    assert results["per_task"]["Lift"]["success_rate"] == results["overall"]["success_rate"]
    assert results["latency"]["plan"]["count"] >= 2 and results["latency"]["fill"]["count"] >= 2
    for record in results["episodes"]:
        video = Path(record["video"])
        assert video.parent == out / "videos" and video.name.startswith(f"rollout_Lift_t{record['trial']}_")
        with imageio.get_reader(video, format="FFMPEG") as reader:
            frames = np.stack(list(reader.iter_data()))
        assert frames.shape == (record["steps"] + END_HOLD_FRAMES, *frame_shape(VIDEO), 3)
    assert matplotlib.image.imread(out / "success_rate.png").ndim == 3
    assert not {"actions", "proprio", "plans"} & set(results["episodes"][0])  # per-step arrays: episode files only

    # wp-eval plot draws an episode from its file, or from results.json (which points at the file)
    assert main(["plot", str(out / "episodes" / "Lift_t0.json")]) == 0
    assert (out / "episodes" / "Lift_t0.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(out / "results.json"), "--episode", "Lift_t1"]) == 0
    assert (out / "plots" / "Lift_t1.png").is_file()

    # resume after an interruption, in a copy that lost trial 1: trials 1 and 2 run (in one worker instead of two),
    # trial 0 is not touched, and the re-run trial 1 executes exactly the actions of the first run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    (resumed / "episodes" / "Lift_t1.json").unlink()
    t0_stamp = (resumed / "episodes" / "Lift_t0.json").stat().st_mtime_ns
    second = _wp_eval(config, "--set", "trials_per_task=3", "--workers", "1", "--output-dir", str(resumed))
    assert "resuming: 1 of 3 episodes already done" in second.stdout
    assert (resumed / "episodes" / "Lift_t0.json").stat().st_mtime_ns == t0_stamp
    assert json.loads((resumed / "results.json").read_text())["overall"]["episodes"] == 3
    a = EpisodeResult.load(out / "episodes" / "Lift_t1.json")
    b = EpisodeResult.load(resumed / "episodes" / "Lift_t1.json")
    np.testing.assert_array_equal(a.actions, b.actions)
    assert (a.success, a.steps, a.termination, a.seed) == (b.success, b.steps, b.termination, b.seed)
