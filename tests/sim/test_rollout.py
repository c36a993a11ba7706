"""The direct episode loop (wp_policy.sim.rollout): stamps, the sim -> ObsSet conversion, records, videos, and real
robosuite Lift episodes driven by a tiny random policy (rendered in spawned children, see conftest.py)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from wp_policy.obs_sync import ObsSet
from wp_policy.sim.base import SimObservation
from wp_policy.sim.protocol import video_filename
from wp_policy.sim.recording import END_HOLD_FRAMES, PlanRecord, frame_shape
from wp_policy.sim.rollout import (
    EpisodeResult,
    EpisodeSpec,
    PolicyActor,
    run_episode,
    sim_obs_to_obsset,
    step_stamp_ns,
    write_video,
)

STEPS = 8  # policy steps per test episode
IMAGE = 64  # render size for the sim tests: small and even (H.264 needs even sizes)
VIDEO = 64  # pixels per view in the test videos (rollout_worker's default)


@pytest.fixture(scope="module")
def policy_yaml(tmp_path_factory, sp_model_path):
    from policy_files import write_sim_policy

    return write_sim_policy(tmp_path_factory.mktemp("sim_policy"), sp_model_path, num_waypoints=3, num_flow_steps=2)


def _sim_obs(size=IMAGE, seed=0, views=("primary", "wrist")):
    rng = np.random.default_rng(seed)
    images = {v: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for v in views}
    return SimObservation(images, rng.normal(size=8).astype(np.float32), "pick up the red cube")


def _decode(path: Path) -> np.ndarray:
    """Every frame of an MP4, decoded with imageio's ffmpeg reader: uint8 [T, H, W, 3]."""
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return np.stack(list(reader.iter_data()))


# ---- stamps and observation conversion -------------------------------------------------------------------------
def test_step_stamps_are_whole_control_periods_and_never_zero():
    assert step_stamp_ns(0, 20.0) == 50_000_000
    assert step_stamp_ns(10, 20.0) == 550_000_000
    assert [step_stamp_ns(k, 15.0) for k in range(3)] == [66_666_667, 133_333_334, 200_000_001]
    assert step_stamp_ns(1_000_000, 20.0) == (1_000_000 + 1) * 50_000_000  # exact integers, no float drift
    with pytest.raises(ValueError, match="step must be >= 0"):
        step_stamp_ns(-1, 20.0)
    with pytest.raises(ValueError, match="control_hz must be positive"):
        step_stamp_ns(0, 0.0)


def test_sim_obs_becomes_the_obsset_the_aggregator_would_publish(libero_config):
    from wp_policy.image_proc import resize_with_pad

    obs = _sim_obs(size=256)
    out = sim_obs_to_obsset(obs, libero_config, 123)
    assert isinstance(out, ObsSet) and out.stamp_ns == 123
    assert set(out.images) == {"primary", "wrist"}
    for view in ("primary", "wrist"):
        assert out.images[view].shape == (224, 224, 3)  # the robot config's model resolution
        np.testing.assert_array_equal(out.images[view], resize_with_pad(obs.images[view], 224, 224))
    assert out.proprio.dtype == np.float64
    np.testing.assert_array_equal(out.proprio, obs.state.astype(np.float64))


def test_sim_obs_without_a_camera_the_robot_needs_is_refused(libero_config):
    with pytest.raises(ValueError, match=r"lacks camera view\(s\) \['wrist'\].*is the env rendering"):
        sim_obs_to_obsset(_sim_obs(views=("primary",)), libero_config, 1)


# ---- records ---------------------------------------------------------------------------------------------------
def test_episode_spec_rejects_bad_values():
    for kwargs, msg in (({"trial": -1}, "trial must be >= 0"), ({"max_steps": 0}, "max_steps must be positive"),
                        ({"num_wait_steps": -2}, "num_wait_steps must be >= 0"),
                        ({"init_state": -1}, "init_state must be a row index")):
        with pytest.raises(ValueError, match=msg):
            EpisodeSpec(**{"task": "Lift", "trial": 0, **kwargs})
    assert EpisodeSpec("put the bowl on the plate", 3).key == "put_the_bowl_on_the_plate_t3"


def test_episode_result_round_trips_through_json_exactly(tmp_path):
    rng = np.random.default_rng(1)
    plans = (PlanRecord(0, rng.normal(size=(3, 8)), (2, 2, 1)), PlanRecord(5, rng.normal(size=(2, 8)), (4, 0)))
    result = EpisodeResult(task="Lift", trial=2, seed=9, success=False, steps=5, termination="stopped",
                           actions=rng.normal(size=(5, 7)), plan_latency_s=(0.1, 1 / 3), fill_latency_s=(2e-3,),
                           video="/x/rollout_Lift_t2_failure.mp4", replan_mode="lookahead", num_plans=2,
                           episode_s=1.25, proprio=rng.normal(size=(6, 8)), plans=plans)
    back = EpisodeResult.load(result.save(tmp_path / "ep.json"))
    arrays = ("actions", "proprio", "plans")
    for key in ("actions", "proprio"):
        np.testing.assert_array_equal(getattr(back, key), getattr(result, key))
        assert getattr(back, key).dtype == np.float64
    assert [p.to_json() for p in back.plans] == [p.to_json() for p in plans]
    assert back.plans[1].proprio.dtype == np.float64 and back.plans[1].is_stop is False
    assert {k: v for k, v in vars(back).items() if k not in arrays} == \
        {k: v for k, v in vars(result).items() if k not in arrays}
    empty = EpisodeResult("Lift", 0, None, False, 0, "stopped", np.zeros((0, 7)))
    assert EpisodeResult.from_json(empty.to_json()).actions.shape == (0, 7)
    old = {k: v for k, v in result.to_json().items() if k not in ("proprio", "plans")}  # written before they existed
    assert EpisodeResult.from_json(old).plans == () and EpisodeResult.from_json(old).proprio.size == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_write_video_encodes_frames_that_decode_back(tmp_path):
    frames = [np.full((IMAGE, IMAGE, 3), 20 * i, dtype=np.uint8) for i in range(6)]
    path = write_video(frames, tmp_path / "sub" / video_filename("Lift", 0, True))
    decoded = _decode(path)
    assert decoded.shape == (6, IMAGE, IMAGE, 3)
    assert np.abs(decoded.astype(int).mean(axis=(1, 2, 3)) - [20 * i for i in range(6)]).max() < 3
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    with pytest.raises(ValueError, match="frame 1 must be uint8"):
        write_video([frames[0], frames[0][:32]], tmp_path / "bad.mp4")


def test_run_episode_rejects_bad_arguments_before_touching_the_sim(policy_yaml):
    from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
    from wp_policy.sim.robosuite_env import RobosuiteEnv

    policy = WaypointPolicy.from_config(load_policy_config(policy_yaml))
    env = RobosuiteEnv(("Lift",))  # builds no scene until the first reset
    with pytest.raises(ValueError, match="has no fixed init states; use seed instead"):
        run_episode(env, EpisodeSpec("Lift", 0, init_state=0), PolicyActor(policy))
    with pytest.raises(KeyError, match="unknown task 'Open'"):
        run_episode(env, EpisodeSpec("Open", 0, seed=1), PolicyActor(policy))
    assert env._envs == {}  # nothing was simulated


# ---- real episodes ---------------------------------------------------------------------------------------------
def _rollouts(policy_yaml, *runs: tuple[list[dict], Path]) -> list[list[EpisodeResult]]:
    """Each run's jobs in a fresh spawned process of its own, the runs side by side."""
    from rollout_worker import rollouts

    with ProcessPoolExecutor(len(runs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(rollouts, str(policy_yaml), "Lift", IMAGE, jobs, str(video_dir))
                   for jobs, video_dir in runs]
        return [[EpisodeResult.from_json(r) for r in f.result(timeout=600)] for f in futures]


@pytest.mark.slow
@pytest.mark.sim
def test_lift_episodes_are_reproducible_and_recorded(policy_yaml, tmp_path):
    """Same seed -> identical actions in another process and after other episodes; video + stop handling."""
    a = dict(task="Lift", trial=0, seed=3, max_steps=STEPS, num_wait_steps=2)
    b = dict(a, trial=1, seed=4)
    (ra, ra_look, stopped), (rb, ra_again, ra_init) = _rollouts(
        policy_yaml,
        ([dict(a, mode="after_last"), dict(a, mode="lookahead"), dict(a, trial=2, mode="after_last", stop_policy=True)],
         tmp_path / "first"),
        ([dict(b, mode="after_last"), dict(a, mode="after_last"),
          dict(a, trial=3, seed=None, init_state=0, mode="after_last")], tmp_path / "second"))
    np.testing.assert_array_equal(ra_again.actions, ra.actions)  # another process, after another episode
    # init state row 0 was saved from a seed-3 reset: the LIBERO-style start gives the same episode
    assert (ra_init.init_state, ra_init.seed) == (0, None)
    np.testing.assert_array_equal(ra_init.actions, ra.actions)
    assert (ra.success, ra.steps, ra.termination) == (ra_again.success, ra_again.steps, ra_again.termination)
    np.testing.assert_array_equal(_decode(Path(ra_again.video)), _decode(Path(ra.video)))  # same scene, frames
    assert not np.array_equal(_decode(Path(rb.video))[0], _decode(Path(ra.video))[0])  # seed 4: another scene

    for r in (ra, rb, ra_look):  # a random policy does not lift the cube in a few steps: the budget ends it
        assert (r.termination, r.steps, r.success) == ("max_steps", STEPS, False)
        assert r.actions.shape == (STEPS, 7) and np.all(np.abs(r.actions) <= 1.0)
        assert r.num_plans >= 1 and len(r.plan_latency_s) == r.num_plans and len(r.fill_latency_s) >= 1
        assert set(np.unique(r.actions[:, 6])) <= {-1.0, 1.0}  # LIBERO gripper: binary open/close
    assert ra_look.replan_mode == "lookahead"

    # a predicted stop after the first waypoint ends the episode once that pair ran, as a failure
    assert stopped.termination == "stopped" and not stopped.success and stopped.num_plans == 1
    assert stopped.steps == 3 and stopped.actions.shape == (3, 7)

    # what wp-eval plot draws: the proprio of every observation (the final one included) and every plan
    for r in (ra, rb, ra_look):
        assert r.proprio.shape == (STEPS + 1, 8) and len(r.plans) == r.num_plans and r.plans[0].step == 0
        assert [p.step for p in r.plans] == sorted(p.step for p in r.plans)
        assert all(p.proprio.shape == (len(p.durations), 8) for p in r.plans)
    assert stopped.proprio.shape == (4, 8) and [p.durations for p in stopped.plans] == [(3, 0)]
    np.testing.assert_array_equal(ra_again.proprio, ra.proprio)

    # one frame per policy step + the final observation, held END_HOLD_FRAMES frames; both views side by side
    video = Path(ra.video)
    assert video.name == "rollout_Lift_t0_failure.mp4" and video.parent == tmp_path / "first"
    frames = _decode(video)
    assert frames.shape == (STEPS + END_HOLD_FRAMES, *frame_shape(VIDEO), 3)
    views = frames[:, frame_shape(VIDEO)[0] - VIDEO:]
    assert views[:, :, :VIDEO].std() > 5 and views[:, :, VIDEO:].std() > 5  # two rendered scenes, not blank
    assert Path(stopped.video).name == "rollout_Lift_t2_failure.mp4"
    assert _decode(Path(stopped.video)).shape[0] == stopped.steps + END_HOLD_FRAMES
