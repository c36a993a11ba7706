"""Checkpoints: bit-exact round trips, strict config/weight matching, and the Pi0.5-base (openpi names) import."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml
from model_fixtures import PROPRIO_DIM, ae_batch, seeded, without_actions
from safetensors import safe_open
from safetensors.torch import save_file

from wp_policy.config_io import ConfigError
from wp_policy.models import (
    CheckpointError,
    WaypointActionExpert,
    WaypointVLM,
    ae_config,
    from_pretrained,
    load_pi05_base,
    save_pretrained,
    vlm_config,
)
from wp_policy.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, neutral_name

EMBED = "paligemma.model.language_model.embed_tokens.weight"


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("kind, dtype", [("ae", "float32"), ("vlm", "bfloat16")])
def test_save_load_round_trip_is_bit_exact(tmp_path, kind, dtype):
    if kind == "ae":
        model = seeded(WaypointActionExpert, ae_config("tiny", dtype=dtype), seed=3)
    else:
        model = seeded(WaypointVLM, vlm_config("tiny", proprio_dim=PROPRIO_DIM, dtype=dtype), seed=3)
    save_pretrained(model, tmp_path / "ckpt")
    loaded = from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    _assert_same_weights(model, loaded)
    assert loaded.paligemma.lm_head.weight is loaded.paligemma.model.language_model.embed_tokens.weight  # tied
    with safe_open(str(tmp_path / "ckpt" / WEIGHTS_FILE), "pt") as f:
        assert "paligemma.lm_head.weight" not in f.keys() and EMBED in f.keys()
    if kind == "ae":
        batch = without_actions(ae_batch(model.config, n=2))
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        assert torch.equal(model.eval().sample_actions(batch, g()), loaded.eval().sample_actions(batch, g()))


def test_config_weight_mismatch_and_missing_files_fail_clearly(tmp_path):
    model = seeded(WaypointActionExpert, ae_config("tiny"))
    ckpt = save_pretrained(model, tmp_path / "ckpt")
    data = yaml.safe_load((ckpt / CONFIG_FILE).read_text())
    data["expert"]["mlp_dim"] = 96
    (ckpt / CONFIG_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"shape mismatches .*expert\.layers\.0\.mlp\.down_proj\.weight"):
        from_pretrained(ckpt)
    data["expert"]["mlp_dim"] = 64
    data["kind"] = "waypoint_vlm"
    (ckpt / CONFIG_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['action_dim'"):
        from_pretrained(ckpt)
    data["kind"] = "waypoint_ae"
    data["dtype"] = "float64"
    (ckpt / CONFIG_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"model_config.yaml: dtype: 'float64' is not one of"):
        from_pretrained(ckpt)
    with pytest.raises(FileNotFoundError, match=r"checkpoint weights not found: .*nowhere/model.safetensors"):
        from_pretrained(tmp_path / "nowhere")
    (ckpt / CONFIG_FILE).unlink()
    with pytest.raises(ConfigError, match=r"model_config.yaml: config file not found"):
        from_pretrained(ckpt)
    vlm_dir = save_pretrained(seeded(WaypointVLM, vlm_config("tiny", proprio_dim=PROPRIO_DIM)), tmp_path / "vlm")
    (vlm_dir / CONFIG_FILE).write_text(model_config_text(model))  # an AE config over VLM weights
    with pytest.raises(CheckpointError, match=r"missing \['action_in_proj.bias'"):
        from_pretrained(vlm_dir)


def model_config_text(model) -> str:
    from wp_policy.config_io import to_dict

    return yaml.safe_dump(to_dict(model.config))


def _openpi_name(ours: str) -> str:
    """Our name -> openpi PyTorch / transformers 4.53 naming (openpi's key prefixes, docs/models.md Checkpoints)."""
    if ours.startswith("paligemma.model.vision_tower."):
        rest = ours[len("paligemma.model.vision_tower."):]
        return "paligemma_with_expert.paligemma.model.vision_tower.vision_model." + rest
    if ours.startswith("paligemma."):
        return "paligemma_with_expert." + ours
    if ours.startswith("expert."):
        return "paligemma_with_expert.gemma_expert.model." + ours[len("expert."):]
    return ours


def _write_openpi_file(path: Path, source: WaypointActionExpert) -> dict[str, torch.Tensor]:
    """A Pi0.5-base-like file at tiny dims: openpi names, time_mlp_in of the base shape [W, W], no proprio encoder,
    an explicit (tied) paligemma lm_head and the expert's unused lm_head."""
    width = source.config.expert.width
    tensors = {_openpi_name(k): v.clone() for k, v in source.state_dict().items()
               if not k.startswith("proprio_encoder")}
    tensors["time_mlp_in.weight"] = torch.randn(width, width)
    tensors["paligemma_with_expert.gemma_expert.lm_head.weight"] = torch.randn(source.config.vocab_size, width)
    save_file(tensors, str(path))
    return tensors


def test_pi05_base_import_reports_exact_sets(tmp_path, caplog):
    cfg = ae_config("tiny")
    source, target = seeded(WaypointActionExpert, cfg, seed=1), seeded(WaypointActionExpert, cfg, seed=2)
    path = tmp_path / "pi05_base" / WEIGHTS_FILE
    path.parent.mkdir()
    file_tensors = _write_openpi_file(path, source)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        report = load_pi05_base(target, path.parent)  # a directory holding model.safetensors
    assert "time_mlp_in.weight" in caplog.text and "(32, 32)" in caplog.text
    ours = set(target.state_dict()) - {"paligemma.lm_head.weight"}  # tied alias of embed_tokens
    assert set(report.skipped_shape_mismatch) == {"time_mlp_in.weight"}
    assert report.mismatch_shapes["time_mlp_in.weight"] == ((32, 32), (32, 64))
    assert set(report.missing) == {"proprio_encoder.weight", "proprio_encoder.bias"}
    assert set(report.unexpected) == {"paligemma_with_expert.gemma_expert.lm_head.weight"}
    assert set(report.loaded) == ours - {"time_mlp_in.weight", "proprio_encoder.weight", "proprio_encoder.bias"}
    state = target.state_dict()
    for name in report.loaded:
        assert torch.equal(state[name], source.state_dict()[name]), name
    for name in ("time_mlp_in.weight", "proprio_encoder.weight"):
        assert torch.equal(state[name], before[name])  # kept their initialisation
    assert any(".vision_tower.vision_model." in k for k in file_tensors)


def test_pi05_base_into_vlm_accepts_both_prefixes(tmp_path):
    source = seeded(WaypointActionExpert, ae_config("tiny"), seed=1)
    openpi = tmp_path / "openpi.safetensors"
    _write_openpi_file(openpi, source)
    vlm = seeded(WaypointVLM, vlm_config("tiny", proprio_dim=PROPRIO_DIM), seed=2)
    report = load_pi05_base(vlm, openpi)
    assert set(report.loaded) == set(vlm.state_dict()) - {"paligemma.lm_head.weight"}
    assert not report.missing and not report.skipped_shape_mismatch
    assert all(not k.startswith("paligemma_with_expert.paligemma.") for k in report.unexpected)
    assert {neutral_name(k).split(".")[0] for k in report.unexpected} == {
        "expert", "action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out"}
    _assert_same_weights(vlm.paligemma, source.paligemma)
    # a VLM-style file: bare ``paligemma.*`` keys, transformers <= 4.51 layout
    legacy = {}
    for k, v in source.paligemma.state_dict().items():
        k = "paligemma." + k
        k = k.replace("paligemma.model.language_model.", "paligemma.language_model.model.")
        k = k.replace("paligemma.model.vision_tower.", "paligemma.vision_tower.vision_model.")
        k = k.replace("paligemma.model.multi_modal_projector.", "paligemma.multi_modal_projector.")
        k = k.replace("paligemma.lm_head.", "paligemma.language_model.lm_head.")
        legacy[k] = v.clone() + 1.0
    save_file(legacy, str(tmp_path / "legacy.safetensors"))
    report = load_pi05_base(vlm, tmp_path / "legacy.safetensors")
    assert not report.missing and not report.unexpected and not report.skipped_shape_mismatch
    assert torch.equal(vlm.paligemma.model.language_model.embed_tokens.weight,
                       source.paligemma.model.language_model.embed_tokens.weight + 1.0)


def test_missing_pi05_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Pi0.5 checkpoint not found"):
        load_pi05_base(seeded(WaypointVLM, vlm_config("tiny")), tmp_path / "absent.safetensors")


def test_no_pickle_loading_in_models():
    root = Path(__file__).resolve().parents[2] / "wp_policy" / "wp_policy" / "models"
    sources = "\n".join(p.read_text() for p in root.glob("*.py"))
    for banned in ("torch.load(", "import pickle", "pickle.load"):
        assert banned not in sources
