"""WaypointPolicy against real (tiny, random-weight) models: the declared transform order, determinism, bad inputs."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from wp_policy import batch as B
from wp_policy.obs_sync import ObsSet
from wp_policy.ros.bag_synth import joint_motion
from wp_policy.runtime import Plan, WaypointRunner
from wp_policy.runtime.replan import AfterLast, Lookahead
from wp_policy.runtime.policy import (PolicyConfig, PolicySettingError, WaypointPolicy, fill_seed,
                                      load_policy_config, resolve_device)

INSTRUCTION = "pick up the cup"


def make_obs(robot, stamp_ns: int = 1_700_000_000_000_000_000, seed: int = 0, size: int = 224) -> ObsSet:
    """Random views and a proprio on the synthetic motion the stats were fitted to (inside q01..q99)."""
    rng = np.random.default_rng(seed)
    images = {v: rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for v in robot.camera_views}
    proprio = joint_motion(robot, np.array([1.0 + 0.37 * seed]), seed=3)[0][0]
    return ObsSet(stamp_ns=stamp_ns, images=images, proprio=proprio)


def test_plan_is_the_vlm_output_in_physical_units(policy):
    obs = make_obs(policy.robot)
    plan = policy.plan(obs, INSTRUCTION)
    assert isinstance(plan, Plan) and plan.stamp_ns == obs.stamp_ns and len(plan.waypoints) == 3
    assert all(0 <= w.duration <= B.HORIZON for w in plan.waypoints)
    # the same prompt and images straight through the model, then the declared inverse transforms
    vlm = policy.vlm
    prompt = policy.tokenizer.encode_prompt(INSTRUCTION, policy.normalized_proprio(obs.proprio))
    images, masks = policy.image_inputs(obs, vlm.config.image_keys, vlm.config.vision.image_size)
    tokens, mask, ar = (torch.from_numpy(np.asarray(a))[None]
                        for a in (prompt.tokens, prompt.input_mask, prompt.ar_mask))
    result = vlm.plan(images, masks, tokens, mask, ar, num_waypoints=3, max_duration=B.HORIZON)
    for k, w in enumerate(plan.waypoints):
        normalized = result.proprio[0, k].double().numpy()
        expected = policy.robot.proprio_to_physical(policy.proprio_norm.unnormalize(normalized))
        np.testing.assert_array_equal(w.proprio, expected)
        assert w.duration == int(result.durations[0, k])
    assert _same_plan(policy.plan(obs, INSTRUCTION), plan)  # greedy decoding: deterministic


def _same_plan(a: Plan, b: Plan) -> bool:
    return a.stamp_ns == b.stamp_ns and all(
        x.duration == y.duration and np.array_equal(x.proprio, y.proprio) for x, y in zip(a.waypoints, b.waypoints))


def test_fill_is_the_ae_chunk_in_execution_space(policy):
    robot = policy.robot
    obs = make_obs(robot)
    start, end = obs.proprio, make_obs(robot, seed=3).proprio
    actions = policy.fill(obs, INSTRUCTION, start, end, 5)
    assert actions.shape == (5, robot.action.dim) and actions.dtype == np.float64
    grippers = actions[:, list(robot.action.gripper_dims)]
    assert np.all((grippers >= 0) & (grippers <= 100))  # stroke in mm
    # reference: the model called directly with the same batch and seed, then clip -> unnormalise -> execution
    ae = policy.ae
    images, masks = policy.image_inputs(obs, ae.config.image_keys, ae.config.vision.image_size)
    prompt = policy.tokenizer.prompt_tokens(INSTRUCTION, policy.normalized_proprio(start))
    pad = lambda x: torch.nn.functional.pad(torch.tensor(x, dtype=torch.float32), (0, 32 - x.size))[None]  # noqa: E731
    batch = {B.IMAGES: images, B.IMAGE_MASKS: masks, B.TOKENS: torch.tensor([prompt]),
             B.INPUT_MASK: torch.ones(1, len(prompt), dtype=torch.bool),
             B.START_PROPRIO: pad(policy.normalized_proprio(start)), B.END_PROPRIO: pad(policy.normalized_proprio(end)),
             B.DURATION: torch.tensor([5])}
    gen = torch.Generator().manual_seed(fill_seed(0, obs.stamp_ns, end))
    chunk = ae.sample_actions(batch, generator=gen, num_steps=10)[0, :5, : robot.action.dim].double().numpy()
    expected = robot.action_to_execution(policy.action_norm.unnormalize(np.clip(chunk, -1, 1)))
    np.testing.assert_array_equal(actions, expected)


def test_fill_noise_comes_from_the_observation_stamp_and_the_pair(policy):
    obs = make_obs(policy.robot)
    start, end = obs.proprio, make_obs(policy.robot, seed=3).proprio
    first = policy.fill(obs, INSTRUCTION, start, end, 4)
    np.testing.assert_array_equal(first, policy.fill(obs, INSTRUCTION, start, end, 4))  # any process, same chunk
    later = replace(obs, stamp_ns=obs.stamp_ns + 1)
    assert not np.array_equal(first, policy.fill(later, INSTRUCTION, start, end, 4))
    assert fill_seed(0, obs.stamp_ns, end) != fill_seed(0, obs.stamp_ns, start)


def test_proprio_round_trips_through_model_space(policy):
    p = make_obs(policy.robot).proprio
    back = policy.physical_proprio(policy.normalized_proprio(p))
    np.testing.assert_allclose(back, p, atol=1e-5)  # exact up to the eps in q99 normalisation


def test_direct_loop_runs_both_replan_modes(policy):
    """The direct (no-ROS) loop: plan when the runner asks, fill synchronously, one action per tick."""
    fill = lambda o, s, e, d: policy.fill(o, INSTRUCTION, s, e, d)  # noqa: E731
    for strategy in (AfterLast(), Lookahead(lead_ticks=4)):
        runner = WaypointRunner(fill, strategy)
        actions = []
        for t in range(12):
            obs = make_obs(policy.robot, stamp_ns=1_000_000 * (t + 1), seed=t)
            if runner.needs_plan:
                runner.request_plan()
                runner.load_plan(policy.plan(obs, INSTRUCTION))
            action = runner.step(obs)
            if runner.wants_early_plan:
                runner.request_plan()
                runner.load_plan(policy.plan(obs, INSTRUCTION))
            actions.append(action)
        assert all(a is not None and a.shape == (policy.robot.action.dim,) for a in actions), mode


def test_bad_inputs_name_the_problem(policy, policy_config):
    robot = policy.robot
    obs = make_obs(robot)
    bad = replace(obs, proprio=np.where(np.arange(robot.proprio.dim) == 2, np.nan, obs.proprio))
    with pytest.raises(ValueError, match=r"proprio .*NaN or inf in dims \[2\]"):
        policy.plan(bad, INSTRUCTION)
    with pytest.raises(ValueError, match="expected last dim 14"):
        policy.fill(obs, INSTRUCTION, obs.proprio[:5], obs.proprio, 3)
    with pytest.raises(ValueError, match="no image for view 'head'"):
        policy.plan(replace(obs, images={k: v for k, v in obs.images.items() if k != "head"}), INSTRUCTION)
    for duration in (0, B.HORIZON + 1):
        with pytest.raises(ValueError, match="duration must be in 1..32"):
            policy.fill(obs, INSTRUCTION, obs.proprio, obs.proprio, duration)
    planner_only = WaypointPolicy.from_config(replace(policy_config, ae_checkpoint=""))
    with pytest.raises(RuntimeError, match="without an AE checkpoint"):
        planner_only.fill(obs, INSTRUCTION, obs.proprio, obs.proprio, 3)


def test_bad_configs_and_files_fail_clearly(policy_config, tmp_path):
    with pytest.raises(ValueError, match="at least one of vlm_checkpoint and ae_checkpoint"):
        replace(policy_config, vlm_checkpoint="", ae_checkpoint="")
    with pytest.raises(ValueError, match="device must be"):
        replace(policy_config, device="gpu")
    with pytest.raises(ValueError, match="tokenizer_path must be set"):
        replace(policy_config, tokenizer_path="")
    with pytest.raises(PolicySettingError, match="^vlm_checkpoint: checkpoint weights not found") as missing:
        WaypointPolicy.from_config(replace(policy_config, vlm_checkpoint=str(tmp_path / "missing")))
    assert missing.value.field == "vlm_checkpoint"  # the setting to change, for the nodes' one-line message
    with pytest.raises(PolicySettingError, match="^stats_path: .*statistics file not found"):
        WaypointPolicy.from_config(replace(policy_config, stats_path=str(tmp_path / "none.json")))
    with pytest.raises(PolicySettingError, match="^tokenizer_path: SentencePiece model not found"):
        WaypointPolicy.from_config(replace(policy_config, tokenizer_path=str(tmp_path / "none.model")))
    with pytest.raises(PolicySettingError,
                       match=r"^robot: unknown robot config 'no_such_robot': give a robot YAML path \(.yaml\) or one of"):
        WaypointPolicy.from_config(replace(policy_config, robot="no_such_robot"))
    with pytest.raises(ValueError, match="plans 14-D waypoints but robot libero has 8 proprio dims"):
        WaypointPolicy.from_config(replace(policy_config, robot="libero", ae_checkpoint=""))


def test_device_auto_falls_back_to_the_cpu_with_a_warning_and_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, warning = resolve_device("auto")
    assert device == "cpu" and warning.startswith("device auto: ") and "running on the CPU" in warning
    assert resolve_device("cpu") == ("cpu", "")
    with pytest.raises(PolicySettingError, match="^device: 'cuda' requested but .*; use auto .* or cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'cuda1'"):
        resolve_device("cuda1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == ("cuda", "") and resolve_device("cuda:0") == ("cuda:0", "")
    with pytest.raises(PolicySettingError, match="'cuda:1' requested but only 1 CUDA device"):
        resolve_device("cuda:1")


def test_a_loaded_policy_names_its_resolved_device(policy_config):
    loaded = WaypointPolicy.from_config(replace(policy_config, device="auto", ae_checkpoint=""))
    assert loaded.config.device in ("cpu", "cuda") and str(loaded.device) == loaded.config.device
    assert bool(loaded.device_warning) is (loaded.config.device == "cpu")


def test_policy_config_file_resolves_relative_paths(policy_files, tmp_path):
    cfg = tmp_path / "policy.yaml"
    cfg.write_text(f"robot: r1lite\nvlm_checkpoint: vlm\nstats_path: {policy_files.stats}\n"
                   f"tokenizer_path: {policy_files.tokenizer}\nnum_waypoints: 2\n")
    loaded = load_policy_config(cfg)
    assert loaded == PolicyConfig(robot="r1lite", vlm_checkpoint=str(tmp_path / "vlm"),
                                  stats_path=str(policy_files.stats), tokenizer_path=str(policy_files.tokenizer),
                                  num_waypoints=2)


def test_runtime_imports_without_rclpy():
    """The runtime is the ROS-free core the direct sim loop uses: importing it must not pull in rclpy."""
    import subprocess
    import sys

    code = ("import sys, wp_policy.runtime.policy, wp_policy.runtime.runner, wp_policy.runtime.plan\n"
            "print(sorted(m for m in sys.modules if m.startswith('rclpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mismatches_fail_at_load_time_with_one_line_naming_the_file(policy_config, policy_files, r1lite_config,
                                                                    tmp_path):
    """Every mismatch that would otherwise fail on each plan or fill (or crash with an AttributeError) is a
    ConfigError when the policy loads."""
    from wp_policy.config_io import ConfigError
    from wp_policy.models import WaypointActionExpert, ae_config, save_pretrained

    keys = tuple(c.model_key for c in r1lite_config.cameras)
    short = save_pretrained(WaypointActionExpert(ae_config("tiny", image_keys=keys, horizon=16)), tmp_path / "ae16")
    with pytest.raises(ConfigError, match=r"ae16: the AE fills 16-step chunks.*needs horizon >= 32"):
        WaypointPolicy.from_config(replace(policy_config, ae_checkpoint=str(short)))
    wide = save_pretrained(WaypointActionExpert(ae_config("tiny", image_keys=keys, relative_dims=(0, 20))),
                           tmp_path / "ae_rel")
    with pytest.raises(ConfigError, match=r"ae_rel: the AE reads proprio dims \[0, 20\] relative to the start, but "
                                          r"robot galaxea_r1_lite has 14 proprio dims"):
        WaypointPolicy.from_config(replace(policy_config, ae_checkpoint=str(wide)))
    with pytest.raises(ConfigError, match=r"vlm: holds a VLM planner checkpoint, but this path must name an Action"):
        WaypointPolicy.from_config(replace(policy_config, ae_checkpoint=str(policy_files.vlm)))
    with pytest.raises(ConfigError, match=r"ae: holds an Action Expert checkpoint, but this path must name a VLM"):
        WaypointPolicy.from_config(replace(policy_config, vlm_checkpoint=str(policy_files.ae)))
    broken = tmp_path / "broken"
    shutil.copytree(policy_files.ae, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated copy
    with pytest.raises(ConfigError, match=r"broken/model.safetensors: unreadable safetensors file"):
        WaypointPolicy.from_config(replace(policy_config, ae_checkpoint=str(broken)))


def test_a_gripper_reading_slightly_out_of_range_is_clipped_and_counted_far_out_is_a_clear_fault(policy):
    """A 100.4 mm stroke on a 0-100 mm gripper used to make every plan fail (binning refused it), forever."""
    from wp_policy.runtime.policy import ProprioOutOfRange

    robot = policy.robot
    obs = make_obs(robot)
    left = robot.proprio.names.index(robot.action.names[robot.action.gripper_dims[0]])
    slightly = obs.proprio.copy()
    slightly[left] = 100.4
    before = policy.proprio_clipped
    plan = policy.plan(ObsSet(obs.stamp_ns, obs.images, slightly), INSTRUCTION)
    assert len(plan.waypoints) == 3 and policy.proprio_clipped == before + 1
    assert np.all(np.abs(policy.normalized_proprio(slightly)) <= 1.0)
    far = obs.proprio.copy()
    far[left] = 160.0  # centimetres reported as millimetres, or a broken sensor
    with pytest.raises(ProprioOutOfRange, match=r"proprio far outside its range: .*= 160 .*check the feedback"):
        policy.plan(ObsSet(obs.stamp_ns, obs.images, far), INSTRUCTION)
