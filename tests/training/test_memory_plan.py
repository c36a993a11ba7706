"""Memory planner: the OpenVLA-OFT note's figures, LoRA counts vs peft, real-model counting, activations,
recommendations and the CLI."""

from __future__ import annotations

import dataclasses

import pytest

import toy_task
from wp_policy.config_io import ConfigError
from wp_policy.paths import config_dir
from wp_training.engine.memory_plan import (
    GIB,
    ActivationModel,
    LinearShape,
    StackSpec,
    activation_model,
    budget_for_config,
    budget_from_model,
    budget_from_spec,
    gpu_usage,
    load_memory_spec,
    lora_params,
    main,
    max_batch,
    parse_size,
    recommend,
)
from wp_training.engine.model_setup import build_training_model, param_counts

OPENVLA = config_dir() / "memory" / "openvla_oft_7b_lora.yaml"


def test_reproduces_openvla_oft_note():
    """The OpenVLA-OFT 7B LoRA analysis (docs/training.md, memory planner): static 15.63 + 1.59 + 6.35 = 23.57 GiB;
    ~5.9 GiB per GPU with 4-GPU FSDP."""
    budget = budget_from_spec(load_memory_spec(OPENVLA))
    assert budget.total_params == 8_393_794_510 and budget.trainable_params == 852_557_326
    assert [round(x / GIB, 2) for x in (budget.weight_bytes, budget.grad_bytes, budget.optimizer_bytes)] == [
        15.63, 1.59, 6.35]
    assert round(budget.static_bytes / GIB, 2) == 23.57
    acts = activation_model(None, "bf16", 0, False)
    assert round(gpu_usage(budget, acts, 1, "ddp", 4, 0.0).static_bytes / GIB, 2) == 23.57
    assert round(gpu_usage(budget, acts, 1, "fsdp", 4, 0.0).static_bytes / GIB, 1) == 5.9
    # the note's conclusion: a 23.52 GiB RTX 4090 cannot even hold the static part under DDP
    assert max_batch(budget, acts, "ddp", 1, 23.52 * GIB, 0.0) == 0


def test_lora_count_from_shapes_matches_peft(toy_config):
    cfg = toy_config(lora={"enabled": True, "rank": 4})
    model_cfg, _ = toy_task.TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    model, _ = build_training_model(toy_task.TASK, cfg, model_cfg, load_pretrained=False)
    adapters = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    hidden, depth = model_cfg.hidden, model_cfg.depth
    shapes = (LinearShape(hidden, 2 * hidden, depth), LinearShape(2 * hidden, hidden, depth))
    assert lora_params(shapes, rank=4) == adapters


def test_budget_for_config_builds_the_real_model_on_meta(toy_config):
    cfg = toy_config(freeze=["embed"], precision="bf16")
    budget = budget_for_config(cfg, None, "<toy>")
    model_cfg, _ = toy_task.TASK.parse_configs(cfg.model, cfg.data, "<toy>")
    model, _ = build_training_model(toy_task.TASK, cfg, model_cfg, load_pretrained=False)
    counts = param_counts(model)
    assert (budget.total_params, budget.trainable_params) == (counts["total_params"], counts["trainable_params"])
    assert budget.weight_bytes == 2 * counts["total_params"]  # precision bf16: everything stored in bf16
    assert budget.optimizer_bytes == 2 * 2 * counts["trainable_params"]
    assert "meta device" in budget.source
    assert budget.largest_unit_bytes == 2 * sum(p.numel() for p in model.blocks[0].parameters())  # a layer > root
    fp32 = budget_from_model(build_training_model(toy_task.TASK, dataclasses.replace(cfg, precision="fp32"),
                                                  model_cfg, False)[0], "x")
    assert fp32.static_bytes == 2 * budget.static_bytes


def test_falls_back_to_the_spec_when_the_mode_is_not_installed(toy_config):
    cfg = toy_config(mode="wp_training.not_installed_task:TASK", lora={"enabled": True, "rank": 32},
                     freeze=["vision"])
    spec = load_memory_spec(config_dir() / "memory" / "pi05_ae.yaml")
    budget = budget_for_config(cfg, spec, "<toy>")
    assert budget.source == "spec pi05-waypoint-ae"
    gemma = next(c for c in spec.components if c.name == "gemma_2b")
    heads = next(c for c in spec.components if c.name == "heads")
    assert lora_params(gemma.lora_linears, 32) == 32 * 18 * (2 * 4096 + 2 * 2304 + 2 * 18432 + 18432)
    expected = heads.params + sum(lora_params(c.lora_linears, 32) for c in spec.components if c.group != "vision")
    assert budget.trainable_params == expected
    with pytest.raises(ConfigError, match="memory.spec"):
        budget_for_config(cfg, None, "<toy>")


def test_pi05_spec_totals():
    ae = budget_from_spec(load_memory_spec(config_dir() / "memory" / "pi05_ae.yaml"))
    vlm = budget_from_spec(load_memory_spec(config_dir() / "memory" / "pi05_vlm.yaml"))
    assert ae.total_params == 3_354_516_240 and vlm.total_params == 2_923_335_408
    assert ae.static_bytes == 8 * ae.total_params  # the original recipe: bf16 weights, grads and AdamW states


def _stack(**kw) -> StackSpec:
    base = dict(name="s", layers=4, hidden=8, attn_dim=8, kv_dim=4, mlp=16, fixed_tokens=10)
    return StackSpec(**{**base, **kw})


def test_activation_arithmetic():
    stack = _stack()
    acts = ActivationModel((stack,), image_views=0, act_bytes=2, residual_bytes=4, logits_bytes_per_element=12,
                           checkpointing=False)
    per_token_layer = 2 * 8 * 4 + 2 * (2 * 8 + 2 * 8 + 2 * 4 + 4 * 16)
    assert acts.per_sample_bytes() == 4 * 10 * per_token_layer
    ckpt = dataclasses.replace(acts, checkpointing=True)
    assert ckpt.per_sample_bytes() == 4 * 10 * 8 * 4 + 10 * per_token_layer
    never = ActivationModel((_stack(checkpointable=False),), 0, 2, 4, 12, True)
    assert never.per_sample_bytes() == acts.per_sample_bytes()
    views = ActivationModel((_stack(tokens_per_view=5, logits_vocab=100, logits_tokens=3),), 2, 2, 4, 12, False)
    assert views.per_sample_bytes() == 4 * 20 * per_token_layer + 3 * 100 * 12


def test_recommendation_prefers_fewest_accumulation_steps():
    budget = budget_from_spec(load_memory_spec(OPENVLA))
    acts = ActivationModel((_stack(),), 0, 2, 2, 12, False)
    per_sample = acts.per_sample_bytes()
    fixed = gpu_usage(budget, acts, 0, "fsdp", 4, 0.0).total_bytes
    usable = fixed + 3.5 * per_sample  # room for 3 samples per GPU
    rec = recommend(budget, acts, "fsdp", 4, usable, 0.0, target_global=24)
    assert (rec.batch_size, rec.grad_accum, rec.global_batch) == (3, 2, 24)
    assert rec.total_bytes <= usable
    assert recommend(budget, acts, "ddp", 4, usable, 0.0, 24) is None


def test_parse_size():
    assert parse_size("24GiB") == 24 * GIB and parse_size("80 GB") == 80e9 and parse_size("512mib") == 512 * 2**20
    with pytest.raises(ConfigError, match="--gpu-mem"):
        parse_size("24")


def test_cli_prints_the_plan(capsys):
    assert main(["--spec", str(OPENVLA), "--gpu-mem", "23.52GiB", "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert "= 23.57 GiB" in out and "5.89" in out and "with DDP: does not fit" in out
    config = config_dir() / "train" / "waypoint_vlm_libero.yaml"
    assert main(["--config", str(config), "--gpu-mem", "97.9GB", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "recommended for global batch 24 with DDP: batch_size=" in out and "activations (batch 12)" in out
    with pytest.raises(ConfigError, match="--gpus"):
        main(["--spec", str(OPENVLA), "--gpu-mem", "24GiB", "--gpus", "0"])

