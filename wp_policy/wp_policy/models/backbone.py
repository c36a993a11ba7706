"""Builds the transformers 5.x PaliGemma (SigLIP + Gemma) that both models share, from our typed specs.

Only the module graph comes from transformers; weights come from our checkpoints (nothing is downloaded). The
image placeholder id is never used (images enter as embeddings), it is set to the last, reserved vocabulary id so a
tiny vocabulary stays valid.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig

from wp_policy.models.config import GemmaSpec, VisionSpec

ROPE_THETA = 10_000.0
RMS_EPS = 1e-6


def gemma_hf_config(spec: GemmaSpec, vocab_size: int) -> GemmaConfig:
    return GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.width,
        intermediate_size=spec.mlp_dim,
        num_hidden_layers=spec.depth,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        hidden_act="gelu_pytorch_tanh",
        rms_norm_eps=RMS_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        pad_token_id=0,
        # causal by default: prefix-LM masks come from token_type_ids / our masks; were a mask ever dropped, the
        # fallback must be causal (PaliGemma would otherwise default this to True: fully bidirectional)
        use_bidirectional_attention=False,
    )


def siglip_hf_config(spec: VisionSpec, projection_dim: int) -> SiglipVisionConfig:
    return SiglipVisionConfig(
        hidden_size=spec.width,
        intermediate_size=spec.mlp_dim,
        num_hidden_layers=spec.depth,
        num_attention_heads=spec.num_heads,
        patch_size=spec.patch_size,
        image_size=spec.image_size,
        projection_dim=projection_dim,
        vision_use_head=False,
    )


def paligemma_hf_config(vision: VisionSpec, llm: GemmaSpec, vocab_size: int) -> PaliGemmaConfig:
    return PaliGemmaConfig(
        vision_config=siglip_hf_config(vision, llm.width).to_dict(),
        text_config=gemma_hf_config(llm, vocab_size).to_dict(),
        image_token_index=vocab_size - 1,
        vocab_size=vocab_size,
        projection_dim=llm.width,
        hidden_size=llm.width,
    )


def build_paligemma(vision: VisionSpec, llm: GemmaSpec, vocab_size: int) -> PaliGemmaForConditionalGeneration:
    """Random-initialised PaliGemma with tied ``lm_head`` / ``embed_tokens``."""
    return PaliGemmaForConditionalGeneration(paligemma_hf_config(vision, llm, vocab_size))


def cast_parameters(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters only: buffers such as RoPE's ``inv_freq`` stay float32 (``module.to(bf16)`` would round them)."""
    for param in module.parameters():
        param.data = param.data.to(dtype)


def set_hf_checkpointing(model: PaliGemmaForConditionalGeneration, enabled: bool) -> None:
    """Real activation checkpointing of every SigLIP/Gemma layer (transformers' API; setting the attribute alone
    only disables the cache and saves no memory). Applies in train mode only, as transformers does."""
    if enabled:
        model.activation_checkpointing_enable({"use_reentrant": False})
    elif model.is_activation_checkpointing:
        model.activation_checkpointing_disable()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Create parameters directly in ``dtype`` (a bf16 Pi0.5 never materialises an fp32 copy)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
