"""Presets: pi05 builds on the meta device (no memory) with the published sizes; configs validate themselves."""

from __future__ import annotations

import pytest
import torch

from wp_policy.config_io import ConfigError, from_dict, to_dict
from wp_policy.models import AEConfig, WaypointActionExpert, WaypointVLM, ae_config, vlm_config
from wp_policy.models.config import GEMMA_2B, GemmaSpec, VisionSpec

# Published sizes: PaliGemma-3B 2.92B parameters (HF model card, google/paligemma-3b-pt-224); Gemma 2B non-embedding
# 1,981,884,416 (Gemma tech report, Table 2); openpi gemma_300m "311M params" (openpi gemma.py get_config).
PALIGEMMA_3B = 2.92e9
GEMMA_2B_NON_EMBEDDING = 1_981_884_416
GEMMA_300M = 311e6


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_pi05_sizes_on_meta_device():
    with torch.device("meta"):
        ae = WaypointActionExpert(ae_config("pi05"))
        vlm = WaypointVLM(vlm_config("pi05", proprio_dim=14))
    assert next(ae.parameters()).is_meta and ae.dtype == torch.bfloat16
    lm = ae.paligemma.model.language_model
    assert count(ae.paligemma) == pytest.approx(PALIGEMMA_3B, rel=0.01)
    assert count(vlm.paligemma) == count(ae.paligemma)
    assert count(lm) - lm.embed_tokens.weight.numel() == pytest.approx(GEMMA_2B_NON_EMBEDDING, rel=0.01)
    adaptive = sum(p.numel() for n, p in ae.expert.named_parameters() if ".dense." in n or n.startswith("norm."))
    assert count(ae.expert) - adaptive == pytest.approx(GEMMA_300M, rel=0.01)  # AdaRMSNorm replaces plain norms
    assert ae.paligemma.config.vision_config.num_hidden_layers == 27
    assert ae.paligemma.config.text_config.num_image_tokens == 256
    assert tuple(ae.time_mlp_in.weight.shape) == (1024, 2048)


def test_tiny_presets_are_small_and_layout_fits():
    ae, vlm = ae_config("tiny"), vlm_config("tiny", proprio_dim=14)
    assert ae.vision.tokens_per_image == 16 and ae.dtype == vlm.dtype == "float32"
    assert vlm.layout.first_reserved == 604  # above a 400-id SentencePiece vocabulary
    assert count(WaypointActionExpert(ae)) < 1_000_000


def test_config_yaml_round_trip_and_validation():
    cfg = ae_config("pi05", image_keys=("base_0_rgb", "left_wrist_0_rgb"))
    assert from_dict(AEConfig, to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown model preset 'big'"):
        ae_config("big")
    with pytest.raises(ValueError, match=r"joint attention needs the same heads"):
        ae_config("tiny", expert=GemmaSpec(32, 2, 64, num_heads=4, num_kv_heads=1, head_dim=16))
    with pytest.raises(ValueError, match=r"expert depth 18 must equal the llm depth 2"):
        ae_config("tiny", expert=GemmaSpec(32, 18, 64, 2, 1, 16))
    relative = ae_config("tiny", relative_dims=(0, 1, 2))
    assert from_dict(AEConfig, to_dict(relative)).relative_dims == (0, 1, 2)
    with pytest.raises(ValueError, match=r"relative_dims must be unique proprio dims in 0..31, got \[0, 0\]"):
        ae_config("tiny", relative_dims=(0, 0))
    with pytest.raises(ValueError, match=r"relative_dims must be unique proprio dims in 0..31, got \[32\]"):
        ae_config("tiny", relative_dims=(32,))
    with pytest.raises(ValueError, match=r"vocab_size 300 is too small"):
        vlm_config("tiny", vocab_size=300)
    with pytest.raises(ValueError, match=r"image_size 224 is not a multiple of patch_size 15"):
        VisionSpec(32, 1, 64, 2, patch_size=15)
    with pytest.raises(ValueError, match=r"num_heads 8 is not a multiple of num_kv_heads 3"):
        GemmaSpec(64, 1, 64, 8, 3, 8)
    with pytest.raises(ValueError, match=r"proprio_dim must be positive, got 0"):
        vlm_config("tiny", proprio_dim=0)
    bad = to_dict(cfg)
    bad["llm"]["width"] = -1
    with pytest.raises(ConfigError, match=r"llm: width must be positive, got -1"):
        from_dict(AEConfig, bad, source="model_config.yaml")
    assert GEMMA_2B.width == 2048
