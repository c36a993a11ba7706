"""WaypointActionExpert: fills the action chunk between two waypoints by flow matching (docs/models.md).

Prefix (PaliGemma): image tokens of every view + the prompt tokens, bidirectional (ar 0).
Suffix (expert): ``[start, end, a_1 .. a_T]`` where start/end go through one shared ``proprio_encoder`` and the noisy
actions through ``action_in_proj``; every suffix token starts a causal block (ar 1), which gives the attention pattern:
prefix sees prefix; start sees prefix + start; end sees prefix + start + end; a_i sees all of those and a_<=i.
Condition ``c = silu(time_mlp_out(silu(time_mlp_in(cat(time_emb, dur_emb)))))`` drives every AdaRMSNorm of the
expert (the outer silu is Pi0.5's, which the pretrained ``time_mlp_out`` and norm weights expect).

Flow matching: ``t ~ Beta(1.5, 1) * 0.999 + 0.001``, ``x_t = t * noise + (1 - t) * actions``, target
``noise - actions``; sampling integrates ``dx = v dt`` from t = 1 to 0 in ``num_steps`` Euler steps, running the
prefix once into a :class:`PrefixCache` and only the expert per step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from wp_policy import batch as B
from wp_policy.models import masks
from wp_policy.models.backbone import build_paligemma, cast_parameters, default_dtype, set_hf_checkpointing
from wp_policy.models.config import AEConfig, torch_dtype
from wp_policy.models.embeddings import embed_images, embed_text, sinusoidal_embedding
from wp_policy.models.joint_attention import ExpertTower, PrefixCache, expert_pass, prefix_pass
from wp_policy.models.validation import ModelInputError, check_tensor, check_tokens, check_views, require

TIME_BETA_ALPHA = 1.5  # t ~ Beta(1.5, 1), sampled as u ** (1 / 1.5)
TIME_MIN = 0.001
NUM_PROPRIO_TOKENS = 2  # [start, end]
OBS_KEYS = (B.IMAGE_MASKS, B.TOKENS, B.INPUT_MASK)  # + IMAGES or VISION_FEATURES (check_views)
COND_KEYS = (B.START_PROPRIO, B.END_PROPRIO, B.DURATION)
TRAIN_KEYS = (B.ACTIONS, B.STEP_MASK, B.DIM_MASK)


class WaypointActionExpert(nn.Module):
    """Pi0.5 (PaliGemma + Gemma expert) with two proprio tokens and duration conditioning; see the module doc.

    Parameter names follow openpi after :func:`wp_policy.models.checkpoint.neutral_name`: ``paligemma.*``
    (transformers 5.x), ``expert.layers.N.*`` / ``expert.norm.dense.*``, ``action_in_proj``, ``action_out_proj``,
    ``time_mlp_in``, ``time_mlp_out`` and the new ``proprio_encoder``.
    """

    def __init__(self, config: AEConfig):
        super().__init__()
        self.config = config
        width, dtype = config.expert.width, torch_dtype(config.dtype)
        with default_dtype(dtype):
            self.paligemma = build_paligemma(config.vision, config.llm, config.vocab_size)
            self.expert = ExpertTower(config)
            self.proprio_encoder = nn.Linear(config.proprio_dim, width)  # shared by the start and end tokens
            self.action_in_proj = nn.Linear(config.action_dim, width)
            self.action_out_proj = nn.Linear(width, config.action_dim)
            self.time_mlp_in = nn.Linear(2 * width, width)  # cat(time_emb, dur_emb): 2*width -> width
            self.time_mlp_out = nn.Linear(width, width)
        cast_parameters(self, dtype)
        unused = set(self.unused_parameter_names())
        for name, param in self.named_parameters():
            if name in unused:
                param.requires_grad_(False)
        self.set_gradient_checkpointing(config.gradient_checkpointing)

    def unused_parameter_names(self) -> list[str]:
        """Parameters the AE never reads: the language model's final norm and, in its last layer, everything but
        the K/V projections (the expert reads only that layer's K/V). Frozen at construction, so every trainable
        parameter gets a gradient (DDP needs no ``find_unused_parameters``)."""
        last = f"paligemma.model.language_model.layers.{self.config.llm.depth - 1}."
        used = tuple(last + m for m in ("self_attn.k_proj.", "self_attn.v_proj.", "input_layernorm."))
        return [n for n, _ in self.named_parameters(remove_duplicate=False)
                if n == "paligemma.model.language_model.norm.weight" or (n.startswith(last) and not n.startswith(used))]

    @property
    def _checkpointing(self) -> bool:
        return self.checkpointing and self.training

    @property
    def dtype(self) -> torch.dtype:
        return self.action_in_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.action_in_proj.weight.device

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward: per expert/prefix layer here, per SigLIP layer via transformers."""
        self.checkpointing = enabled
        set_hf_checkpointing(self.paligemma, enabled)

    # ---- inputs -------------------------------------------------------------------------------------------------
    def check_batch(self, batch: Mapping, training: bool) -> int:
        """Validate the AE batch (the contract in ``wp_policy.batch``); returns the batch size."""
        cfg = self.config
        require(batch, OBS_KEYS + COND_KEYS + (TRAIN_KEYS if training else ()))
        n = check_views(batch, cfg.image_keys, cfg.vision)
        check_tokens(batch[B.TOKENS], batch[B.INPUT_MASK], n, cfg.vocab_size)
        for key in (B.START_PROPRIO, B.END_PROPRIO):
            check_tensor(key, batch[key], (n, cfg.proprio_dim), floating=True)
        check_tensor(B.DURATION, batch[B.DURATION], (n,), floating=False)
        if bool(((batch[B.DURATION] < 0) | (batch[B.DURATION] > cfg.duration_scale)).any()):
            raise ModelInputError(f"{B.DURATION} must lie in [0, {cfg.duration_scale:g}], "
                                  f"got {batch[B.DURATION].tolist()}")
        if training:
            check_tensor(B.ACTIONS, batch[B.ACTIONS], (n, cfg.horizon, cfg.action_dim), floating=True)
            check_tensor(B.STEP_MASK, batch[B.STEP_MASK], (n, cfg.horizon), floating=False)
            check_tensor(B.DIM_MASK, batch[B.DIM_MASK], (n, cfg.action_dim), floating=False)
        return n

    # ---- building blocks ----------------------------------------------------------------------------------------
    def suffix_ar(self, batch_size: int) -> torch.Tensor:
        """int [B, 2 + T]: every suffix token opens a causal block (start, end, each action)."""
        n = NUM_PROPRIO_TOKENS + self.config.horizon
        return torch.ones(batch_size, n, dtype=torch.long, device=self.device)

    def joint_attention_mask(self, prefix_valid: torch.Tensor) -> torch.Tensor:
        """bool [B, Np + Ns, Np + Ns] over ``[prefix, start, end, actions]`` (rows = queries)."""
        b = prefix_valid.shape[0]
        suffix_ar = self.suffix_ar(b)
        valid = torch.cat([prefix_valid, torch.ones_like(suffix_ar, dtype=torch.bool)], dim=1)
        ar = torch.cat([torch.zeros_like(prefix_valid, dtype=torch.long), suffix_ar], dim=1)
        return masks.attention_mask(valid, ar)

    def encode_prefix(self, batch: Mapping) -> PrefixCache:
        """Images (or their vision features) + prompt -> per-layer K/V of the PaliGemma tower. Run once per
        observation."""
        pg = self.paligemma
        img, img_valid = embed_images(pg, batch, self.config.image_keys)
        tokens = batch[B.TOKENS].to(self.device)
        embeds = torch.cat([img, embed_text(pg, tokens)], dim=1)
        valid = torch.cat([img_valid.to(self.device), batch[B.INPUT_MASK].to(self.device).bool()], dim=1)
        mask = masks.attention_mask(valid, torch.zeros_like(valid, dtype=torch.long))
        return prefix_pass(pg.model.language_model, embeds, valid, mask, masks.positions(valid), self._checkpointing)

    def condition(self, time: torch.Tensor, duration: torch.Tensor) -> torch.Tensor:
        """``time`` float [B] in (0, 1], ``duration`` int [B] -> AdaRMSNorm condition [B, W_exp]."""
        width = self.config.expert.width
        t_emb = sinusoidal_embedding(time, width)
        d_emb = sinusoidal_embedding(duration.to(time.device) / self.config.duration_scale, width)
        x = F.silu(self.time_mlp_in(torch.cat([t_emb, d_emb], dim=1).to(self.dtype)))
        return F.silu(self.time_mlp_out(x))

    def velocity(self, cache: PrefixCache, x_t: torch.Tensor, time: torch.Tensor, start: torch.Tensor,
                 end: torch.Tensor, duration: torch.Tensor) -> torch.Tensor:
        """One expert pass: noisy chunk ``x_t`` float [B, T, A] at ``time`` [B] -> velocity float32 [B, T, A]."""
        dtype, dev = self.dtype, self.device
        proprio = self.proprio_encoder(torch.stack([start, end], dim=1).to(dev, dtype))  # [B, 2, W]
        suffix = torch.cat([proprio, self.action_in_proj(x_t.to(dev, dtype))], dim=1)  # [B, 2 + T, W]
        n_suffix = suffix.shape[1]
        mask = self.joint_attention_mask(cache.valid)[:, -n_suffix:]
        pos = masks.positions(torch.ones(suffix.shape[:2], dtype=torch.bool, device=dev), cache.next_position)
        cond = self.condition(time.to(dev), duration)
        h = expert_pass(self.expert, self.paligemma.model.language_model, suffix, cond, cache, mask, pos,
                        self._checkpointing)
        return self.action_out_proj(h[:, NUM_PROPRIO_TOKENS:]).float()

    # ---- training -----------------------------------------------------------------------------------------------
    def sample_time(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """float32 [n] ~ Beta(1.5, 1) * 0.999 + 0.001 (inverse CDF of Beta(a, 1) is u ** (1 / a))."""
        dev = generator.device if generator is not None else self.device
        u = torch.rand(n, generator=generator, device=dev, dtype=torch.float32)
        return (u ** (1.0 / TIME_BETA_ALPHA) * (1 - TIME_MIN) + TIME_MIN).to(self.device)

    def forward(self, batch: Mapping, generator: torch.Generator | None = None):
        """Masked flow-matching MSE on one AE batch -> (scalar loss, metrics of detached scalars).

        ``generator`` (optional) draws noise and time, for reproducible training steps.
        """
        n = self.check_batch(batch, training=True)
        dev = self.device
        actions = batch[B.ACTIONS].to(dev, torch.float32)
        gdev = generator.device if generator is not None else dev
        noise = torch.randn(actions.shape, generator=generator, device=gdev, dtype=torch.float32).to(dev)
        time = self.sample_time(n, generator)
        x_t = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
        cache = self.encode_prefix(batch)
        v_t = self.velocity(cache, x_t, time, batch[B.START_PROPRIO], batch[B.END_PROPRIO], batch[B.DURATION])
        weight = batch[B.STEP_MASK].to(dev).float()[:, :, None] * batch[B.DIM_MASK].to(dev).float()[:, None, :]
        count = weight.sum()
        loss = ((v_t - (noise - actions)) ** 2 * weight).sum() / count.clamp_min(1.0)
        metrics = {"loss": loss.detach(), "valid_elements": count.detach(),
                   "mean_time": time.mean().detach(), "valid_fraction": count.detach() / weight.numel()}
        return loss, metrics

    # ---- inference ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_actions(self, batch: Mapping, generator: torch.Generator, num_steps: int | None = None,
                       noise_scale: float = 1.0) -> torch.Tensor:
        """Denoise one chunk per sample -> float32 [B, T, A] (normalised model actions; run the first d steps).

        ``batch`` holds the observation keys and START_PROPRIO / END_PROPRIO / DURATION (no actions); the initial
        noise comes from ``generator`` only, so the same seed gives the same chunk. ``noise_scale`` (see
        :meth:`denoise`) multiplies that noise.
        """
        self.check_batch(batch, training=False)
        return self.denoise(self.encode_prefix(batch), batch[B.START_PROPRIO], batch[B.END_PROPRIO],
                            batch[B.DURATION], generator, num_steps, noise_scale)

    @torch.no_grad()
    def denoise(self, cache: PrefixCache, start: torch.Tensor, end: torch.Tensor, duration: torch.Tensor,
                generator: torch.Generator, num_steps: int | None = None, noise_scale: float = 1.0) -> torch.Tensor:
        """Euler integration from noise (t = 1) to actions (t = 0) against an existing prefix ``cache`` (inputs
        [B, P], [B, P], [B] for the cache's B) -> float32 [B, T, A]. Lets a caller fill several waypoint pairs of
        one observation from a single :meth:`encode_prefix`.

        ``noise_scale`` is the sampling temperature: the standard deviation of the starting noise (1: the training
        distribution; below 1 the chunk moves toward the flow's most likely actions, so a small, uncertain expert
        places the arm more precisely; 0: one deterministic chunk per input)."""
        if not isinstance(generator, torch.Generator):
            raise ModelInputError(f"denoising needs a torch.Generator for its noise, got {type(generator).__name__}")
        steps = self.config.num_sampling_steps if num_steps is None else num_steps
        if steps < 1:
            raise ModelInputError(f"num_steps must be >= 1, got {steps}")
        if not (math.isfinite(noise_scale) and noise_scale >= 0):
            raise ModelInputError(f"noise_scale must be a finite number >= 0, got {noise_scale}")
        n = cache.valid.shape[0]
        for key, value in ((B.START_PROPRIO, start), (B.END_PROPRIO, end)):
            check_tensor(key, value, (n, self.config.proprio_dim), floating=True)
        check_tensor(B.DURATION, duration, (n,), floating=False)
        shape = (n, self.config.horizon, self.config.action_dim)
        x = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32).to(self.device)
        x = x * noise_scale
        dt = -1.0 / steps
        for i in range(steps):
            time = torch.full((n,), 1.0 + i * dt, dtype=torch.float32, device=self.device)
            x = x + dt * self.velocity(cache, x, time, start, end, duration)
        return x
