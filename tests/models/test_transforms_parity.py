"""Training and deployment build the same model inputs (one implementation: ``wp_policy.transforms``).

The same RLDS frames and proprio go through the training tasks' datasets and ``collate`` (augmentation off, as at
inference) and through ``WaypointPolicy``'s input preparation (``fill_inputs`` / ``plan_inputs``); images, image
masks, proprio and prompt tokens must be equal bit for bit, for the AE and the VLM. Two policies: tiny random-weight
models that also read a view LIBERO lacks (``right_wrist_0_rgb``: zeros, mask False) at 224 px (upsampling), and the
shipped ``lift_demo`` policy at 64 / 96 px (downsampling). Frames are 48 x 64 textured JPEGs, so resize-with-pad
scales and pads. The runtime's AE prompt is unpadded; the training batch's right padding is masked out, and the AE
samples the same actions from either batch.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import wp_policy
from wp_policy import batch as B
from wp_policy.models import WaypointActionExpert, WaypointVLM, ae_config, save_pretrained, vlm_config
from wp_policy.models.config import DEFAULT_IMAGE_KEYS
from wp_policy.obs_sync import ObsSet
from wp_policy.robot_config import load_robot_config
from wp_policy.runtime.policy import WaypointPolicy, load_policy_config
from wp_training.data.rlds_reader import decode_image
from wp_training.data.rlds_writer import write_rlds
from wp_training.tasks.interface import DataShard, get_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training_data"))

from rlds_fixtures import libero_episodes  # noqa: E402

SHIPPED = Path(wp_policy.__file__).parent / "assets" / "policies" / "lift_demo" / "policy.yaml"
FRAME = (48, 64)  # stored camera frames (H, W): neither square nor any model size
PAIRS = 6  # AE pairs / VLM steps compared per policy (each also runs the tiny models once)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """A LIBERO-layout RLDS with textured JPEG frames, its waypoints, filtered RLDS and stats."""
    from wp_training.data.extract import ExtractConfig, run_extraction
    from wp_training.data.stats import run_stats

    tmp = tmp_path_factory.mktemp("parity")
    robot = load_robot_config("libero")
    rng = np.random.default_rng(0)
    episodes = libero_episodes(2, 30, seed=1)
    for ep in episodes:
        n = len(ep["action"])
        ramp = np.linspace(0, 160, FRAME[1])[None, None, :, None]  # a gradient under the noise: real structure
        for cam in robot.cameras:
            noise = rng.integers(0, 96, (n, *FRAME, 3))
            ep["observation"][cam.rlds_key] = (noise + ramp).astype(np.uint8)
    rlds = write_rlds(tmp / "rlds", episodes, robot, "parity", image_size=FRAME, image_encoding="jpeg")
    result = run_extraction(ExtractConfig(source_dir=str(rlds), out_dir=str(tmp / "wp"), robot="libero",
                                          keys=("state",), threshold=0.005, workers=0), show_progress=False)
    stats, _ = run_stats(rlds, robot, tmp / "wp" / "dataset_statistics.json", show_progress=False)
    return {"rlds": rlds, "index": result.index_path, "filtered": result.filtered_dir, "stats": stats}


@pytest.fixture(scope="module", params=["tiny_three_views", "tiny_relative_ae", "shipped_lift_demo"])
def policy(request, data, sp_model_path, tmp_path_factory) -> WaypointPolicy:
    if request.param == "shipped_lift_demo":
        return WaypointPolicy.from_config(load_policy_config(SHIPPED))
    out = tmp_path_factory.mktemp("tiny_policy")
    torch.manual_seed(0)
    relative = tuple(range(6)) if request.param == "tiny_relative_ae" else ()  # the pose dims, as the demo AE
    save_pretrained(WaypointVLM(vlm_config("tiny", proprio_dim=8, image_keys=DEFAULT_IMAGE_KEYS)), out / "vlm")
    save_pretrained(WaypointActionExpert(ae_config("tiny", image_keys=DEFAULT_IMAGE_KEYS, relative_dims=relative)),
                    out / "ae")
    path = out / "policy.yaml"
    path.write_text(yaml.safe_dump({"robot": "libero", "vlm_checkpoint": "vlm", "ae_checkpoint": "ae", "device": "cpu",
                                    "stats_path": str(data["stats"]), "tokenizer_path": str(sp_model_path)}))
    return WaypointPolicy.from_config(load_policy_config(path))


def _training_dataset(mode: str, policy: WaypointPolicy, data: dict):
    """The dataset a training run of ``mode`` builds for this policy's model sizes, stats and tokenizer."""
    model = policy.ae if mode == "ae" else policy.vlm
    cfg = model.config
    section = {"preset": "tiny", "image_keys": list(cfg.image_keys), "vocab_size": cfg.vocab_size,
               "vision": dataclasses.asdict(cfg.vision)}
    common = {"robot": "libero", "stats_path": policy.config.stats_path, "tokenizer_path": policy.config.tokenizer_path}
    if mode == "ae":
        section["relative_dims"] = list(cfg.relative_dims)  # read back from the saved checkpoint
        data_section = {**common, "rlds_dir": str(data["rlds"]), "waypoint_indices": str(data["index"])}
    else:
        section.update(num_waypoints=policy.config.num_waypoints,
                       proprio_tokens="uncoupled" if cfg.waypoint_dims else "all")
        data_section = {**common, "rlds_dir": str(data["filtered"]), "stride": 1,
                        "max_token_len": policy.config.max_token_len}
    task = get_task(mode)
    model_cfg, data_cfg = task.parse_configs(section, data_section, "<parity test>")
    assert not data_cfg.augment.enabled  # augmentation is training-only: off for the comparison
    return task, task.build_dataset(model_cfg, data_cfg, DataShard(0, 1, 0, 0))


def _samples(task, dataset):
    """(episode, raw sample, training batch of one) in episode order, through the dataset's finalize and the
    task's collate."""
    for index, episode in dataset.reader.episodes(observation_keys=dataset.observation_keys,
                                                  step_keys=dataset.step_keys):
        for raw in dataset.episode_samples(index, episode, dataset.episode_rng(0, index)):
            yield episode, raw, task.collate([dataset.finalize({**raw, "epoch": 0})])


def _observation(robot, episode: dict, step: int, stamp_ns: int) -> ObsSet:
    """What the runtime receives at ``step``: each camera's decoded frame under its view name, physical proprio."""
    images = {c.view: decode_image(episode["observation"][c.rlds_key][step]) for c in robot.cameras}
    return ObsSet(stamp_ns=stamp_ns, images=images, proprio=robot.select_proprio(episode["observation"]["state"][step]))


def _instruction(episode: dict) -> str:
    text = episode["language_instruction"]
    return text.decode() if isinstance(text, bytes) else str(text)


def _assert_same_images(train: dict, runtime: dict, keys) -> None:
    assert list(train[B.IMAGES]) == list(runtime[B.IMAGES]) == list(keys)
    for key in keys:
        assert train[B.IMAGES][key].dtype == runtime[B.IMAGES][key].dtype == torch.float32
        assert torch.equal(train[B.IMAGES][key], runtime[B.IMAGES][key]), key
        assert torch.equal(train[B.IMAGE_MASKS][key], runtime[B.IMAGE_MASKS][key]), key


def _assert_prompt_is_prefix(train: dict, runtime: dict) -> int:
    """The runtime's prompt equals the training sequence's first tokens; the rest of the training row is either
    padding (AE) or the planner's target postfix (VLM). Returns the prompt length."""
    n = runtime[B.TOKENS].shape[1]
    assert runtime[B.TOKENS].dtype == train[B.TOKENS].dtype == torch.int64
    assert torch.equal(train[B.TOKENS][:, :n], runtime[B.TOKENS])
    assert bool(runtime[B.INPUT_MASK].all()) and bool(train[B.INPUT_MASK][:, :n].all())
    return n


def test_ae_inputs_equal_in_training_and_deployment(policy, data):
    keys = policy.ae.config.image_keys
    compared = 0
    for episode, raw, train in _samples(*_training_dataset("ae", policy, data)):
        a, d = raw["step"], len(raw["actions"])
        start = _observation(policy.robot, episode, a, stamp_ns=1_000 + a)
        end = _observation(policy.robot, episode, a + d, stamp_ns=0).proprio
        runtime = policy.fill_inputs(start, _instruction(episode), start.proprio, end, d)
        _assert_same_images(train, runtime, keys)
        for key in (B.START_PROPRIO, B.END_PROPRIO, B.DURATION):
            assert train[key].dtype == runtime[key].dtype and torch.equal(train[key], runtime[key]), key
        for d in policy.ae.config.relative_dims:  # the pose is read relative to the start: end - start, start 0
            assert train[B.START_PROPRIO][0, d] == 0.0
            assert train[B.END_PROPRIO][0, d] == pytest.approx(float(np.clip(raw["end"][d] - raw["start"][d], -1, 1)),
                                                               abs=1e-6)
        n = _assert_prompt_is_prefix(train, runtime)
        assert not bool(train[B.INPUT_MASK][:, n:].any())  # training pads the prompt; the model ignores padding
        padded = {k: train[k] for k in runtime}
        chunks = [policy.ae.sample_actions(b, generator=torch.Generator().manual_seed(a), num_steps=2)
                  for b in (padded, runtime)]
        torch.testing.assert_close(chunks[0], chunks[1], rtol=1e-5, atol=1e-5)
        compared += 1
        if compared == PAIRS:
            break
    assert compared == PAIRS
    if len(keys) > len(policy.robot.cameras):  # the tiny policy: the view LIBERO lacks is masked on both sides
        assert not bool(runtime[B.IMAGE_MASKS]["right_wrist_0_rgb"].any())


def test_vlm_inputs_equal_in_training_and_deployment(policy, data):
    compared = 0
    for episode, raw, train in _samples(*_training_dataset("vlm", policy, data)):
        obs = _observation(policy.robot, episode, raw["step"], stamp_ns=1)
        runtime = policy.plan_inputs(obs, _instruction(episode))
        _assert_same_images(train, runtime, policy.vlm.config.image_keys)
        n = _assert_prompt_is_prefix(train, runtime)
        assert torch.equal(train[B.AR_MASK][:, :n], runtime[B.AR_MASK])
        assert not bool(train[B.LOSS_MASK][:, :n].any())  # no target inside the prompt
        compared += 1
        if compared == PAIRS:
            break
    assert compared == PAIRS


def test_inference_never_imports_training_code():
    """Augmentation and every other training module stay out of the deployment path."""
    code = ("import sys, wp_policy.runtime.policy, wp_policy.transforms; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('wp_training', 'rclpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
