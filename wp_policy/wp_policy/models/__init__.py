"""Waypoint models: the VLM planner and the Action Expert filler (ROS-free; torch + transformers 5.x).

Public API (stable; other packages import only these names):

Configs (``config.py``) -- frozen dataclasses, saved as YAML with every checkpoint:
  ae_config(preset="pi05", **overrides) -> AEConfig        presets: "tiny" (CPU tests), "pi05" (Pi0.5 sizes, bf16)
  vlm_config(preset="pi05", proprio_dim=8, **overrides) -> VLMConfig
      proprio_dim is the robot's real proprio width (LIBERO 8, R1 Lite 14): it fixes the waypoint block length.
      image_keys (camera model_keys, prefix order) must equal the keys of every IMAGES/IMAGE_MASKS dict.

Models (``nn.Module``; batches follow wp_policy.batch, images float32 [B, 3, H, W] in [-1, 1]):
  WaypointActionExpert(config)
    forward(batch, generator=None) -> (loss, metrics)             masked flow-matching MSE (STEP_MASK x DIM_MASK)
    sample_actions(batch, generator, num_steps=None) -> float32 [B, T=32, A=32]
        batch without ACTIONS; noise from ``generator`` only; prefix computed once, reused by every Euler step
    encode_prefix(batch) -> PrefixCache; denoise(cache, start, end, duration, generator, num_steps=None)
        (sample_actions = both; several pairs of one observation: encode once, denoise per pair)
    velocity(cache, x_t, time, start, end, duration) -> float32 [B, T, A] (one expert pass)
    unused_parameter_names(): frozen at construction (never read by the AE), so DDP needs no find_unused_parameters
  WaypointVLM(config)
    forward(batch) -> (loss, metrics)                             CE on LOSS_MASK targets, prefix-LM attention
    plan(images, image_masks, prompt_tokens [B, L], prompt_mask [B, L], prompt_ar_mask [B, L],
         num_waypoints=None, *, use_cache=True, min_duration=0, max_duration=None) -> PlanResult
        prompts from WaypointTokenizer.encode_prompt (tokens/input_mask/ar_mask), padded on either side;
        stack them with ``stack_prompts``. PlanResult: proprio [B, M, P] (normalised), durations [B, M],
        num_valid [B], stopped [B], log_probs [B, M, P + 1], tokens [B, M * (P + 3)] (CPU tensors).
    logits(batch) -> float32 [B, L, V]
  Both: set_gradient_checkpointing(bool) (also ``gradient_checkpointing`` in the config), check_batch(batch, training),
  .config, .dtype, .device. metrics are dicts of detached scalar tensors.
  Parameters are created in config.dtype; do not call ``model.to(torch.bfloat16)`` (it would round RoPE buffers):
  choose the dtype in the config (``ae_config("tiny", dtype="bfloat16")``) and use ``.to(device)`` only.

Checkpoints (``checkpoint.py``; safetensors only):
  save_pretrained(model, dir); from_pretrained(dir, device="cpu", **overrides) -> model (strict)
  load_pi05_base(model, path) -> LoadReport(loaded, skipped_shape_mismatch, missing, unexpected, mismatch_shapes)
  build_model(config), load_model_config(dir); errors: CheckpointError, ModelInputError (bad inputs).
"""

from wp_policy.models.action_expert import WaypointActionExpert
from wp_policy.models.checkpoint import (
    CheckpointError,
    LoadReport,
    build_model,
    from_pretrained,
    load_model_config,
    load_pi05_base,
    save_pretrained,
)
from wp_policy.models.config import PRESETS, AEConfig, GemmaSpec, VisionSpec, VLMConfig, ae_config, vlm_config
from wp_policy.models.decoding import PlanResult
from wp_policy.models.joint_attention import PrefixCache
from wp_policy.models.validation import ModelInputError
from wp_policy.models.vlm import WaypointVLM, stack_prompts

__all__ = [
    "AEConfig", "VLMConfig", "VisionSpec", "GemmaSpec", "PRESETS", "ae_config", "vlm_config",
    "WaypointActionExpert", "WaypointVLM", "PlanResult", "PrefixCache", "stack_prompts",
    "save_pretrained", "from_pretrained", "load_pi05_base", "load_model_config", "build_model", "LoadReport",
    "CheckpointError", "ModelInputError",
]
