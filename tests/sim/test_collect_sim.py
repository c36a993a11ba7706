"""``wp-data collect-sim``: a real (tiny) collection written as LIBERO-layout RLDS and read back."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from wp_training.data.rlds_reader import RldsReader, read_rlds
from wp_training.sim_demos.attempt_cache import CACHE_DIR, AttemptCache
from wp_training.sim_demos.collect_sim import SUMMARY_FILE, CollectConfig, main


@pytest.mark.sim
@pytest.mark.slow
def test_collect_one_lift_demo_as_libero_rlds(tmp_path, capsys):
    assert main(["--task", "robosuite:Lift", "--episodes", "1", "--out", str(tmp_path), "--seed", "3"]) == 0
    reader = RldsReader(tmp_path / "sim_lift" / "1.0.0")
    assert reader.num_episodes == 1
    assert dict(reader.layout.image_shapes) == {"image": (256, 256, 3), "wrist_image": (256, 256, 3)}
    assert dict(reader.layout.state_dims) == {"state": 8} and reader.layout.action_dim == 7
    (ep,) = read_rlds(reader.dir)
    n = len(ep["action"])
    assert ep["language_instruction"] == "pick up the red cube" and ep["success"]
    assert ep["observation"]["image"].shape == (n, 256, 256, 3) and ep["observation"]["state"].shape == (n, 8)
    assert ep["file_path"] == "Lift_seed3"
    assert set(np.unique(ep["action"][:, 6]).tolist()) == {-1.0, 1.0}
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["tasks"]["Lift"]["successes"] == 1 and summary["tasks"]["Lift"]["steps_kept"] == n
    assert summary["attempts_reused"] == 0 and not (tmp_path / CACHE_DIR).exists()  # a finished run leaves no cache
    out = capsys.readouterr().out
    assert "expert success" in out and "1/1 (100%)" in out and summary["tasks"]["Lift"]["mean_steps"] == n


def test_collect_config_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="first_init_state applies to LIBERO"):
        CollectConfig(env="robosuite:Lift", episodes=1, out_dir=str(tmp_path), first_init_state=3)
    with pytest.raises(ValueError, match="task_ids must be distinct indices >= 0"):
        CollectConfig(env="libero:libero_object", episodes=1, out_dir=str(tmp_path), task_ids=(1, 1))
    libero = CollectConfig(env="libero:libero_object", episodes=1, out_dir=str(tmp_path), first_init_state=25)
    assert libero.job("some_task", 2) == ("some_task", libero.seed + 2, 27, False)
    assert libero.dataset_name == "sim_libero_object"
    with pytest.raises(ValueError, match="episodes must be positive"):
        CollectConfig(env="robosuite:Lift", episodes=0, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="max_attempts \\(1\\) must be >= episodes \\(2\\)"):
        CollectConfig(env="robosuite:Lift", episodes=2, out_dir=str(tmp_path), max_attempts=1)
    cfg = CollectConfig(env="robosuite:Lift,Stack", episodes=3, out_dir=str(tmp_path))
    assert cfg.targets == ("Lift", "Stack") and cfg.attempts_per_task == 16 and cfg.dataset_name == "sim_lift_stack"
    assert cfg.job("Stack", 4) == ("Stack", cfg.seed + 4, None, False)
    with pytest.raises(ValueError, match="missed_grasp_fraction must be in \\[0, 1\\]"):
        CollectConfig(env="robosuite:Lift", episodes=1, out_dir=str(tmp_path), missed_grasp_fraction=1.5)
    with pytest.raises(ValueError, match="missed-grasp starts exist for the stand-in"):
        CollectConfig(env="libero:libero_object", episodes=1, out_dir=str(tmp_path), missed_grasp_fraction=0.3)
    with pytest.raises(ValueError, match="push_rate must be in \\[0, 1\\]"):
        CollectConfig(env="robosuite:Lift", episodes=1, out_dir=str(tmp_path), push_rate=-0.1)
    assert CollectConfig(env="robosuite:Lift", episodes=1, out_dir=str(tmp_path), push_rate=0.1).cache_settings()[
        "push_rate"] == 0.1
    mixed = CollectConfig(env="robosuite:Lift", episodes=100, out_dir=str(tmp_path), missed_grasp_fraction=0.3)
    starts = [mixed.job("Lift", i)[3] for i in range(200)]
    assert 40 <= sum(starts) <= 80 and starts == [mixed.job("Lift", i)[3] for i in range(200)]  # ~30 %, seeded
    assert all(CollectConfig(env="robosuite:Lift", episodes=1, out_dir=str(tmp_path),
                             missed_grasp_fraction=1.0).job("Lift", i)[3] for i in range(20))
    with pytest.raises(SystemExit):
        main(["--task", "robosuite:Lift", "--episodes", "1", "--out", str(tmp_path), "--task-ids", "0,x"])
    assert "expected comma-separated integers, got '0,x'" in capsys.readouterr().err
    assert main(["--task", "robosuite:Door", "--episodes", "1", "--out", str(tmp_path)]) == 2
    assert "unknown robosuite target(s) ['Door']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "wp-data collect-sim" in capsys.readouterr().out


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _fake_collection(monkeypatch, submitted: list[int]):
    """Rollouts replaced by a rule (seeds divisible by 3 fail; frames carry the seed), the scheduling kept real."""
    import contextlib

    from wp_training.sim_demos import collect_sim
    from wp_training.sim_demos.scripted_expert import ExpertEpisode

    def fake_episode(job):
        task, seed, _, missed = job
        submitted.append(seed)
        n = 3
        frames = np.full((n, 4, 4, 3), seed % 256, np.uint8)
        return ExpertEpisode(task, seed, "pick up the red cube", seed % 3 != 0, {"primary": frames, "wrist": frames},
                             np.full((n, 8), seed, np.float32), np.zeros((n, 7), np.float32), 0, missed_grasp=missed,
                             pushed_steps=seed)

    monkeypatch.setattr(collect_sim, "_submitter", lambda cfg: contextlib.nullcontext(
        ((("Lift", cfg.attempts_per_task),), lambda job: _Done(fake_episode(job)))))
    return collect_sim


def test_kept_episodes_are_the_first_successes_for_any_worker_count(monkeypatch, tmp_path):
    """The scheduling alone keeps the same episodes for any number of workers."""
    from wp_policy.robot_config import load_robot_config

    submitted = []
    collect_sim = _fake_collection(monkeypatch, submitted)
    robot = load_robot_config("libero")
    kept = {}
    for workers in (1, 3):
        submitted.clear()
        cfg = CollectConfig(env="robosuite:Lift", episodes=4, out_dir=str(tmp_path / str(workers)), seed=0,
                            workers=workers)
        tally = {"Lift": collect_sim.TaskTally()}
        cache = AttemptCache(cfg.out_dir, cfg.cache_settings())
        kept[workers] = [ep["file_path"] for ep in collect_sim._kept_episodes(cfg, robot, tally, cache)]
        assert tally["Lift"].attempts == 6 and tally["Lift"].successes == 4
        assert len(submitted) <= 6 + workers  # never more than `workers` attempts beyond the last one needed
    assert kept[1] == kept[3] == ["Lift_seed1", "Lift_seed2", "Lift_seed4", "Lift_seed5"]


def test_an_interrupted_collection_resumes_from_its_attempt_cache(monkeypatch, tmp_path, capsys):
    """Attempts finished before an interruption are read back, not simulated again, and the resumed run keeps
    exactly the episodes (arrays included) of an uninterrupted one; other settings discard the cache."""
    from wp_policy.robot_config import load_robot_config

    submitted = []
    collect_sim = _fake_collection(monkeypatch, submitted)
    robot = load_robot_config("libero")
    cfg = CollectConfig(env="robosuite:Lift", episodes=4, out_dir=str(tmp_path), seed=0, workers=2,
                        missed_grasp_fraction=0.5)

    def run(config):
        tally = {"Lift": collect_sim.TaskTally()}
        cache = AttemptCache(config.out_dir, config.cache_settings())
        return list(collect_sim._kept_episodes(config, robot, tally, cache)), cache

    first = collect_sim._kept_episodes(cfg, robot, {"Lift": collect_sim.TaskTally()},
                                       AttemptCache(cfg.out_dir, cfg.cache_settings()))
    [next(first) for _ in range(2)]  # two kept, then the process "dies"
    first.close()
    interrupted = list(submitted)
    submitted.clear()
    resumed, cache = run(cfg)
    assert cache.reused >= 3 and not set(submitted) & set(interrupted[:3])  # finished attempts were not rerun
    assert "resuming, " in capsys.readouterr().out
    fresh, _ = run(dataclasses.replace(cfg, out_dir=str(tmp_path / "fresh")))
    assert [ep["file_path"] for ep in resumed] == [ep["file_path"] for ep in fresh]
    for a, b in zip(resumed, fresh):
        assert np.array_equal(a["observation"]["image"], b["observation"]["image"])
        assert np.array_equal(a["observation"]["state"], b["observation"]["state"])
    submitted.clear()
    _, other = run(dataclasses.replace(cfg, image_size=64))
    assert other.reused == 0 and len(submitted) >= 6
    assert "discarding the attempt cache" in capsys.readouterr().out


def test_a_task_short_of_its_episodes_is_an_error_unless_fewer_are_allowed(monkeypatch, tmp_path):
    """Seeds 0..4 of which 0 and 3 fail: 3 of 4 episodes. The default refuses (the dataset is still written, the
    attempt cache kept for a retry with more attempts); --allow-fewer keeps it and names the short task."""
    from wp_training.data.rlds_reader import read_rlds

    collect_sim = _fake_collection(monkeypatch, [])
    cfg = CollectConfig(env="robosuite:Lift", episodes=4, out_dir=str(tmp_path), seed=0, max_attempts=5,
                        image_size=4, overwrite=True)
    with pytest.raises(RuntimeError, match=r"only \[\('Lift', 3\)\] successes within \[5\] attempts.*--allow-fewer"):
        collect_sim.collect(cfg)
    assert AttemptCache(cfg.out_dir, cfg.cache_settings()).root.is_dir()
    summary = collect_sim.collect(dataclasses.replace(cfg, allow_fewer=True))
    assert summary["short_tasks"] == {"Lift": 3} and summary["tasks"]["Lift"]["successes"] == 3
    assert len(list(read_rlds(summary["dataset_dir"]))) == 3
    assert summary["attempts_reused"] == 5  # the second run read every attempt back from the cache
    assert summary["tasks"]["Lift"]["pushed_steps"] == 1 + 2 + 4  # the kept seeds' counts, read back from the cache
