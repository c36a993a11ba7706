"""PaliGemma + Gemma action expert sharing attention (Pi0/Pi0.5 "joint attention"), with a reusable prefix cache.

Per layer each tower computes its own Q/K/V with its own weights; keys/values of both are concatenated for one
attention over the joint sequence (RoPE on the joint positions); each tower applies its own o_proj and MLP. The
expert's norms are adaptive (:class:`AdaRMSNorm`) with gated residuals.

Because prefix tokens never attend to suffix tokens (ar flags, see :mod:`masks`), the joint layer stack splits
exactly into two passes: :func:`prefix_pass` runs the PaliGemma tower alone and keeps every
layer's post-RoPE K/V (:class:`PrefixCache`); :func:`expert_pass` runs the expert, each layer
attending to ``cat(cached K/V, own K/V)`` without writing to the cache. Training uses the same two passes (with
gradients through the cache), so training and inference share one code path; flow-matching inference runs the
prefix once and the expert once per Euler step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.models.gemma.modeling_gemma import (
    GemmaAttention,
    GemmaMLP,
    GemmaModel,
    apply_rotary_pos_emb,
    repeat_kv,
)

from wp_policy.models.adarms import AdaRMSNorm, gated_residual
from wp_policy.models.backbone import gemma_hf_config
from wp_policy.models.config import AEConfig
from wp_policy.models.masks import additive_bias


@dataclass
class PrefixCache:
    """Per-layer post-RoPE keys/values of the prefix, ``[B, KV_heads, Np, head_dim]`` each, plus its validity."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor  # bool [B, Np]

    @property
    def length(self) -> int:
        return self.valid.shape[1]

    @property
    def next_position(self) -> torch.Tensor:
        """int64 [B]: RoPE position of the first token after the prefix (the number of valid prefix tokens)."""
        return self.valid.sum(dim=1)


class ExpertLayer(nn.Module):
    """A Gemma decoder layer whose two norms are adaptive (conditioned on the flow time + duration)."""

    def __init__(self, hf_config, layer_idx: int, cond_dim: int):
        super().__init__()
        self.self_attn = GemmaAttention(hf_config, layer_idx)
        self.mlp = GemmaMLP(hf_config)
        self.input_layernorm = AdaRMSNorm(hf_config.hidden_size, cond_dim, hf_config.rms_norm_eps)
        self.post_attention_layernorm = AdaRMSNorm(hf_config.hidden_size, cond_dim, hf_config.rms_norm_eps)


class ExpertTower(nn.Module):
    """The action expert: ``depth`` adaptive-norm Gemma layers and an adaptive final norm (no embedding, no head)."""

    def __init__(self, cfg: AEConfig):
        super().__init__()
        hf = gemma_hf_config(cfg.expert, cfg.vocab_size)
        width = cfg.expert.width
        self.layers = nn.ModuleList(ExpertLayer(hf, i, cond_dim=width) for i in range(cfg.expert.depth))
        self.norm = AdaRMSNorm(width, width, hf.rms_norm_eps)


def project_qkv(attn: GemmaAttention, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """``x`` [B, N, W] -> q [B, H, N, hd], k and v [B, KV, N, hd], RoPE applied to q and k."""
    shape = (*x.shape[:-1], -1, attn.head_dim)
    q = attn.q_proj(x).view(shape).transpose(1, 2)
    k = attn.k_proj(x).view(shape).transpose(1, 2)
    v = attn.v_proj(x).view(shape).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q, k, v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scaling: float) -> torch.Tensor:
    """Grouped-query attention; ``bias`` [B, 1, Nq, Nk] additive (:func:`masks.additive_bias`) -> [B, Nq, H * hd].
    K/V heads are repeated explicitly so every SDPA backend (not only those with ``enable_gqa``) can run it."""
    groups = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=bias,
                                         scale=scaling)
    return out.transpose(1, 2).flatten(2)


def _prefix_layer(layer, h, bias, cos, sin, need_output: bool):
    x = layer.input_layernorm(h)
    q, k, v = project_qkv(layer.self_attn, x, cos, sin)
    if not need_output:  # the last layer's output is never read: only its K/V are
        return h, k, v
    h = h + layer.self_attn.o_proj(attend(q, k, v, bias, layer.self_attn.scaling))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, k, v


def _expert_layer(layer: ExpertLayer, h, cond, past_k, past_v, bias, cos, sin):
    x, gate = layer.input_layernorm(h, cond)
    q, k, v = project_qkv(layer.self_attn, x, cos, sin)
    k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    h = gated_residual(h, layer.self_attn.o_proj(attend(q, k, v, bias, layer.self_attn.scaling)), gate)
    x, gate = layer.post_attention_layernorm(h, cond)
    return gated_residual(h, layer.mlp(x), gate)


def _run(fn, checkpointing: bool, *args):
    if checkpointing and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def prefix_pass(language_model: GemmaModel, embeds: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor,
                positions: torch.Tensor, checkpointing: bool = False) -> PrefixCache:
    """PaliGemma tower alone: ``embeds`` [B, Np, W_llm], ``valid`` bool [B, Np], ``mask`` bool [B, Np, Np],
    ``positions`` [B, Np] -> every layer's K/V. ``checkpointing`` recomputes each layer in backward."""
    cos, sin = language_model.rotary_emb(embeds, positions)
    bias = additive_bias(mask, embeds.dtype)
    keys, values, h = [], [], embeds
    last = len(language_model.layers) - 1
    for i, layer in enumerate(language_model.layers):
        fn = functools.partial(_prefix_layer, layer, need_output=i < last)
        h, k, v = _run(fn, checkpointing, h, bias, cos, sin)
        keys.append(k)
        values.append(v)
    return PrefixCache(keys, values, valid)


def expert_pass(expert: ExpertTower, language_model: GemmaModel, embeds: torch.Tensor, cond: torch.Tensor,
                cache: PrefixCache, mask: torch.Tensor, positions: torch.Tensor,
                checkpointing: bool = False) -> torch.Tensor:
    """Expert tower against a prefix cache: suffix ``embeds`` [B, Ns, W_exp], ``cond`` [B, W_exp], ``mask`` bool
    [B, Ns, Np + Ns], ``positions`` [B, Ns] -> final-normed hidden states [B, Ns, W_exp]. The cache is read, never
    extended. RoPE comes from the language model (both towers share head_dim and theta)."""
    cos, sin = language_model.rotary_emb(embeds, positions)
    bias = additive_bias(mask, embeds.dtype)
    h = embeds
    for layer, k, v in zip(expert.layers, cache.keys, cache.values):
        h = _run(_expert_layer, checkpointing, layer, h, cond, k, v, bias, cos, sin)
    return expert.norm(h, cond)[0]
