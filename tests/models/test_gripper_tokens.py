"""One token per gripper: coupled proprio dims get no waypoint token and are rebuilt from their source, so a plan's
two LIBERO fingers always mirror each other; the original layout (a token per finger) stays the default."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wp_policy.config_io import ConfigError
from wp_policy.models import WaypointVLM, load_model_config, save_pretrained, vlm_config
from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import CoupledDim, VectorSpec
from wp_policy.runtime.policy import PolicyConfig, WaypointPolicy
from wp_policy.tokenizer import TextTokenizer, TokenLayout, WaypointTokenizer

FREE = (0, 1, 2, 3, 4, 5, 6)  # LIBERO without the right finger (dim 7 = -dim 6)


def tokenizer(sp_model_path, dims=()):
    return WaypointTokenizer(TextTokenizer(sp_model_path), TokenLayout(1024), 8, 7, 256, waypoint_dims=dims)


def test_robot_coupling_and_its_checks(libero_config):
    spec = libero_config.proprio
    assert spec.free_dims == FREE and spec.coupled == (CoupledDim(7, 6, -1.0),)
    x = np.array([[0.1, 0, 0, 0, 0, 0, 0.03, 5.0]])
    np.testing.assert_array_equal(spec.fill_coupled(x, {7})[0, 6:], [0.03, -0.03])
    np.testing.assert_array_equal(spec.fill_coupled(x, set()), x)  # tokenised dims are never overwritten
    spec.check_token_dims(FREE, "vlm")
    with pytest.raises(ValueError, match=r"leave out dim 5 \(eef_az\), which no coupling of this robot rebuilds"):
        spec.check_token_dims((0, 1, 2, 3, 4, 6), "vlm")
    base = dict(dim=2, indices=(0, 1), norm_mask=(True, True), names=("a", "b"))
    for coupled, msg in (({"dim": 1, "source": 1}, "its own source"), ({"dim": 2, "source": 0}, "out of range"),
                         ({"dim": 1, "source": 0, "scale": 0.0}, "non-zero")):
        with pytest.raises(ValueError, match=msg):
            VectorSpec(**base, coupled=(CoupledDim(**coupled),))


def test_uncoupled_tokens_round_trip(sp_model_path, libero_config):
    old, new = tokenizer(sp_model_path), tokenizer(sp_model_path, FREE)
    assert (old.tokens_per_waypoint, new.tokens_per_waypoint) == (11, 10)
    rng = np.random.default_rng(0)
    proprio, durations = rng.uniform(-1, 1, (3, 8)), np.array([5, 9, 0])
    seq = new.encode_training("lift the cube", proprio[0], proprio, durations)
    postfix = seq.tokens[seq.input_mask & (seq.ar_mask == 1)]
    got_p, got_d = new.decode_waypoints(postfix[len(new.action_tokens):])
    assert got_p.shape == (3, 7) and got_d.tolist() == [5, 9, 0]
    assert np.abs(got_p - proprio[:, :7]).max() <= 1 / 256 + 1e-9
    assert seq.loss_mask.sum() == 3 * 8  # 7 proprio tokens + 1 duration per waypoint
    # the original layout is unchanged: 8 proprio tokens per block, the same ids as before
    ids = old.waypoint_tokens(proprio, durations)
    assert ids[1:9] == old.layout.proprio_token(old.bins.encode(proprio[0])).tolist()
    with pytest.raises(ValueError, match="waypoint_dims must be increasing"):
        tokenizer(sp_model_path, (3, 1))


def _policy(tmp_path, sp_model_path, libero_config, dims, seed=0):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from policy_files import sim_stats, write_tiny_policy

    files = write_tiny_policy(tmp_path, libero_config, sp_model_path, seed, stats=sim_stats(libero_config))
    if dims:
        torch.manual_seed(seed)
        keys = tuple(c.model_key for c in libero_config.cameras)
        save_pretrained(WaypointVLM(vlm_config("tiny", 8, image_keys=keys, waypoint_dims=dims)), files.vlm)
    return WaypointPolicy.from_config(PolicyConfig(robot="libero", vlm_checkpoint=str(files.vlm),
                                                   ae_checkpoint=str(files.ae), stats_path=str(files.stats),
                                                   tokenizer_path=str(files.tokenizer), num_waypoints=4))


def _obs(seed):
    rng = np.random.default_rng(seed)
    proprio = np.array([0.0, 0.1, 1.0, 3.0, 0.1, 0.0, 0.02, -0.02])
    return ObsSet(stamp_ns=10**18 + seed, proprio=proprio,
                  images={v: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for v in ("primary", "wrist")})


def test_uncoupled_planner_can_never_emit_disagreeing_fingers(tmp_path, sp_model_path, libero_config):
    policy = _policy(tmp_path, sp_model_path, libero_config, FREE)
    assert load_model_config(policy.config.vlm_checkpoint).waypoint_dims == FREE
    assert policy.tokenizer.waypoint_dims == FREE
    n = 0
    for seed in range(4):
        plan = policy.plan(_obs(seed), "lift the cube")
        for w in plan.waypoints:
            assert w.proprio.shape == (8,) and w.proprio[7] == -w.proprio[6]
            n += 1
    assert n >= 4
    # the decoded fingers go through the q99 inverse of dim 6, then the mirror
    result_fingers = {round(float(w.proprio[6]), 12) for w in plan.waypoints}
    assert all(abs(f) <= 0.046 for f in result_fingers)


def test_original_layout_plans_as_before(tmp_path, sp_model_path, libero_config):
    """A checkpoint without waypoint_dims keeps a token per finger: the plan is exactly the unnormalised bins."""
    policy = _policy(tmp_path, sp_model_path, libero_config, ())
    assert policy.vlm.config.waypoint_dims == () and policy.tokenizer.waypoint_dims == tuple(range(8))
    obs = _obs(0)
    plan = policy.plan(obs, "lift the cube")
    prompt = policy.tokenizer.encode_prompt("lift the cube", policy.normalized_proprio(obs.proprio))
    images, masks = policy.image_inputs(obs, policy.vlm.config.image_keys, policy.vlm.config.vision.image_size)
    result = policy.vlm.plan(images, masks, *(torch.from_numpy(np.asarray(a))[None]
                                              for a in (prompt.tokens, prompt.input_mask, prompt.ar_mask)),
                             num_waypoints=4, max_duration=32)
    for k, w in enumerate(plan.waypoints):
        np.testing.assert_array_equal(w.proprio, policy.physical_proprio(result.proprio[0, k].double().numpy()))


def test_a_layout_the_robot_cannot_rebuild_is_refused(tmp_path, sp_model_path, libero_config):
    with pytest.raises(ValueError, match="no coupling of this robot rebuilds"):
        _policy(tmp_path, sp_model_path, libero_config, (0, 1, 2, 3, 4, 6, 7))


def test_training_config_selects_the_layout(sp_model_path):
    from wp_training.tasks.vlm_task import make_task

    task = make_task()
    data = {"robot": "libero", "tokenizer_path": str(sp_model_path), "rlds_dir": "x", "stats_path": "y"}
    model, _ = task.parse_configs({"preset": "tiny", "proprio_tokens": "uncoupled"}, data, "cfg")
    assert model.waypoint_dims == FREE and model.model_config().waypoint_width == 7
    model, _ = task.parse_configs({"preset": "tiny"}, data, "cfg")
    assert model.waypoint_dims == () and model.model_config().waypoint_width == 8
    with pytest.raises(ConfigError, match="robot galaxea_r1_lite declares no coupled proprio dims"):
        task.parse_configs({"preset": "tiny", "proprio_tokens": "uncoupled"},
                           {**data, "robot": "r1lite"}, "cfg")
    with pytest.raises(ConfigError, match="leave waypoint_dims empty"):
        task.parse_configs({"preset": "tiny", "waypoint_dims": [0, 1]}, data, "cfg")
    with pytest.raises(ValueError, match="waypoint_dims must be increasing"):
        dataclasses.replace(vlm_config("tiny", 8), waypoint_dims=(0, 8))
