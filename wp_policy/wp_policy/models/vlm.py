"""WaypointVLM: the PaliGemma planner (transformers ``PaliGemmaForConditionalGeneration``); docs/models.md.

Sequence: ``[image tokens of every view] [prompt + waypoint tokens]``. Prefix-LM masking comes from transformers'
``token_type_ids`` (0 = bidirectional prefix: images and the ar-0 prompt; 1 = causal postfix: "Action: ", the
waypoint blocks, "|", EOS and padding); padding and missing views are removed through the 2D attention mask and
RoPE positions count valid tokens only (``cumsum(valid) - 1``), so left- and right-padded sequences see identical
positions. The CE loss is taken only where LOSS_MASK marks a target (proprio and duration tokens of real waypoints),
and the LM head runs only on those positions (a full-vocabulary logit tensor over 256 x 257152 would dominate
memory). ``plan`` decodes with :func:`wp_policy.models.decoding.constrained_decode`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from wp_policy import batch as B
from wp_policy.models import masks
from wp_policy.models.backbone import build_paligemma, cast_parameters, default_dtype, set_hf_checkpointing
from wp_policy.models.config import VLMConfig, torch_dtype
from wp_policy.models.decoding import PlanResult, constrained_decode
from wp_policy.models.embeddings import embed_images, embed_text
from wp_policy.models.validation import (
    ModelInputError,
    check_prefix_then_postfix,
    check_tensor,
    check_tokens,
    check_views,
    require,
)
from wp_policy.tokenizer import TokenizedSequence


def left_align(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Move each row's real tokens (``mask`` True) to the right end, keeping their order -> (mask, *tensors)."""
    order = torch.argsort(mask.int(), dim=1, stable=True)
    return tuple(t.gather(1, order) for t in (mask, *tensors))


def stack_prompts(prompts: Sequence[TokenizedSequence], pad_id: int = 0):
    """``WaypointTokenizer.encode_prompt`` outputs of any lengths -> right-padded (tokens int64 [B, L],
    mask bool [B, L], ar_mask int64 [B, L]) for :meth:`WaypointVLM.plan`."""
    if not prompts:
        raise ModelInputError("stack_prompts needs at least one prompt")
    length = max(p.length for p in prompts)
    tokens = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    ar = torch.ones(len(prompts), length, dtype=torch.long)
    for i, p in enumerate(prompts):
        n = p.length
        tokens[i, :n] = torch.as_tensor(p.tokens[:n])
        mask[i, :n] = torch.as_tensor(p.input_mask[:n])
        ar[i, :n] = torch.as_tensor(p.ar_mask[:n])
    return tokens, mask, ar


class WaypointVLM(nn.Module):
    """The planner: ``paligemma`` is transformers' ``PaliGemmaForConditionalGeneration`` (names ``paligemma.*``);
    see the module doc for masking, loss and decoding."""

    def __init__(self, config: VLMConfig):
        super().__init__()
        self.config = config
        dtype = torch_dtype(config.dtype)
        with default_dtype(dtype):
            self.paligemma = build_paligemma(config.vision, config.llm, config.vocab_size)
        cast_parameters(self, dtype)
        self.set_gradient_checkpointing(config.gradient_checkpointing)

    @property
    def dtype(self) -> torch.dtype:
        return self.paligemma.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.paligemma.lm_head.weight.device

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        set_hf_checkpointing(self.paligemma, enabled)

    # ---- shared pieces ------------------------------------------------------------------------------------------
    def _text_inputs(self, views: Mapping, tokens, input_mask, ar):
        """``views``: IMAGES or VISION_FEATURES, and IMAGE_MASKS -> embeds [B, N, D], 2D mask bool [B, N],
        token_type_ids [B, N], positions [B, N], image tokens Ni."""
        dev = self.device
        img, img_valid = embed_images(self.paligemma, views, self.config.image_keys)
        tokens, input_mask, ar = tokens.to(dev), input_mask.to(dev).bool(), ar.to(dev).long()
        embeds = torch.cat([img, embed_text(self.paligemma, tokens)], dim=1)
        valid = torch.cat([img_valid.to(dev), input_mask], dim=1)
        types = torch.cat([torch.zeros_like(img_valid, dtype=torch.long), torch.where(input_mask, ar, 1)], dim=1)
        return embeds, valid, types, masks.positions(valid), img.shape[1]

    def text_hidden_states(self, batch: Mapping) -> torch.Tensor:
        """Final hidden states at the text positions of a VLM batch -> [B, L, D]."""
        embeds, valid, types, pos, n_img = self._text_inputs(batch, batch[B.TOKENS], batch[B.INPUT_MASK],
                                                             batch[B.AR_MASK])
        out = self.paligemma.model(inputs_embeds=embeds, attention_mask=valid, position_ids=pos, token_type_ids=types,
                                   use_cache=False)
        return out.last_hidden_state[:, n_img:]

    def logits(self, batch: Mapping) -> torch.Tensor:
        """Full next-token logits at every text position -> float32 [B, L, V] (analysis/tests; training uses
        :meth:`forward`, which projects only the target positions)."""
        self.check_batch(batch, training=False)
        return self.paligemma.lm_head(self.text_hidden_states(batch)).float()

    def check_batch(self, batch: Mapping, training: bool = True) -> int:
        keys = B.VLM_KEYS if training else (B.IMAGE_MASKS, B.TOKENS, B.INPUT_MASK, B.AR_MASK)
        require(batch, tuple(k for k in keys if k != B.IMAGES))  # IMAGES or VISION_FEATURES: check_views
        n = check_views(batch, self.config.image_keys, self.config.vision)
        check_tokens(batch[B.TOKENS], batch[B.INPUT_MASK], n, self.config.vocab_size)
        shape = tuple(batch[B.TOKENS].shape)
        check_tensor(B.AR_MASK, batch[B.AR_MASK], shape, floating=False)
        check_prefix_then_postfix(batch[B.AR_MASK], batch[B.INPUT_MASK])
        if training:
            check_tensor(B.LOSS_MASK, batch[B.LOSS_MASK], shape, floating=False)
            if B.TARGET_TOKENS in batch:
                check_tensor(B.TARGET_TOKENS, batch[B.TARGET_TOKENS], shape, floating=False)
                check_tokens(batch[B.TARGET_TOKENS], batch[B.INPUT_MASK], n, self.config.vocab_size,
                             names=(B.TARGET_TOKENS, B.INPUT_MASK))
            if not bool(batch[B.LOSS_MASK][:, 1:].bool().any()):
                raise ModelInputError(f"{B.LOSS_MASK} selects no target token (after the first position)")
        return n

    # ---- training -----------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping):
        """Next-token CE on LOSS_MASK targets -> (scalar loss, metrics of detached scalars).

        The targets come from TARGET_TOKENS when the batch has them (noisy earlier waypoints in TOKENS), else from
        TOKENS."""
        self.check_batch(batch, training=True)
        hidden = self.text_hidden_states(batch)[:, :-1]  # position i predicts token i + 1
        dev = hidden.device
        select = batch[B.LOSS_MASK].to(dev).bool()[:, 1:] & batch[B.INPUT_MASK].to(dev).bool()[:, 1:]
        targets = batch.get(B.TARGET_TOKENS, batch[B.TOKENS]).to(dev)[:, 1:][select]
        logits = self.paligemma.lm_head(hidden[select]).float()  # [K, V]
        loss = self.token_loss(logits, targets)
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach(),
                      "num_targets": torch.tensor(float(targets.numel()))}

    def token_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean CE of [K, V] logits against [K] target ids; proprio-bin targets become a Gaussian over the
        neighbouring bins when ``config.bin_label_sigma`` > 0 (see :class:`VLMConfig`)."""
        sigma = self.config.bin_label_sigma
        if sigma == 0:
            return F.cross_entropy(logits, targets)
        layout = self.config.layout
        logp = torch.log_softmax(logits, dim=-1)
        nll = -logp.gather(1, targets[:, None])[:, 0]
        is_bin = (targets <= layout.proprio_base) & (targets > layout.proprio_base - layout.num_bins)
        if bool(is_bin.any()):
            grid = torch.arange(layout.num_bins, device=targets.device)
            centre = (layout.proprio_base - targets[is_bin]).float()  # target bins
            weights = torch.softmax(-0.5 * ((grid[None, :] - centre[:, None]) / sigma) ** 2, dim=-1)
            bin_logp = logp[is_bin][:, layout.proprio_base - grid]  # [k, num_bins] in bin order
            nll = nll.masked_scatter(is_bin, -(weights * bin_logp).sum(dim=-1))
        return nll.mean()

    # ---- planning -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def plan(self, images: Mapping[str, torch.Tensor], image_masks: Mapping[str, torch.Tensor],
             prompt_tokens: torch.Tensor, prompt_mask: torch.Tensor, prompt_ar_mask: torch.Tensor,
             num_waypoints: int | None = None, *, use_cache: bool = True, min_duration: int = 0,
             max_duration: int | None = None) -> PlanResult:
        """Constrained greedy plan from ``WaypointTokenizer.encode_prompt`` outputs, padded to [B, L] on either side.

        ``prompt_ar_mask`` [B, L] is the prompt's ar flags (0 prefix, 1 for "Action: "), as in training.
        ``min_duration``/``max_duration`` restrict the duration tokens (``min_duration=1`` forbids stopping).
        """
        cfg = self.config
        views = {B.IMAGES: images, B.IMAGE_MASKS: image_masks}
        n = check_views(views, cfg.image_keys, cfg.vision)
        check_tokens(prompt_tokens, prompt_mask, n, cfg.vocab_size, names=("prompt_tokens", "prompt_mask"))
        check_tensor("prompt_ar_mask", prompt_ar_mask, tuple(prompt_tokens.shape), floating=False)
        check_prefix_then_postfix(prompt_ar_mask, prompt_mask, "prompt_ar_mask")
        mask, tokens, ar = left_align(prompt_mask.bool(), prompt_tokens, prompt_ar_mask.long())
        embeds, valid, types, pos, _ = self._text_inputs(views, tokens, mask, ar)
        feed = (self._cached_feed if use_cache else self._uncached_feed)(embeds, valid, types, pos)
        m = cfg.num_waypoints if num_waypoints is None else num_waypoints
        return constrained_decode(feed, cfg.layout, n, cfg.waypoint_width, m,
                                  self.device, min_duration, max_duration)

    def _cached_feed(self, embeds, valid, types, pos):
        """First call: prompt + new tokens fill a DynamicCache (prefix-LM mask); later calls append causally."""
        state = {"cache": None, "valid": valid, "next": pos[:, -1] + 1}

        def feed(new: torch.Tensor) -> torch.Tensor:
            k = new.shape[1]
            step = torch.arange(k, device=new.device)[None, :] + state["next"][:, None]
            new_emb = embed_text(self.paligemma, new)
            state["valid"] = torch.cat([state["valid"], torch.ones_like(new, dtype=torch.bool)], dim=1)
            kwargs = {}
            if state["cache"] is None:
                state["cache"] = DynamicCache(config=self.paligemma.config.get_text_config())
                new_emb = torch.cat([embeds, new_emb], dim=1)
                step = torch.cat([pos, step], dim=1)
                kwargs["token_type_ids"] = torch.cat([types, torch.ones_like(new)], dim=1)
            out = self.paligemma(inputs_embeds=new_emb, attention_mask=state["valid"], position_ids=step,
                                 past_key_values=state["cache"], use_cache=True, logits_to_keep=1, **kwargs)
            state["next"] = state["next"] + k
            return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

        return feed

    def _uncached_feed(self, embeds, valid, types, pos):
        """Reference decoder: re-runs the whole sequence for every new token (same masks and positions)."""
        generated: list[torch.Tensor] = []

        def feed(new: torch.Tensor) -> torch.Tensor:
            generated.append(new)
            gen = torch.cat(generated, dim=1)
            ones = torch.ones_like(gen, dtype=torch.bool)
            all_valid = torch.cat([valid, ones], dim=1)
            out = self.paligemma(inputs_embeds=torch.cat([embeds, embed_text(self.paligemma, gen)], dim=1),
                                 attention_mask=all_valid, position_ids=masks.positions(all_valid),
                                 token_type_ids=torch.cat([types, torch.ones_like(gen)], dim=1), use_cache=False,
                                 logits_to_keep=1)
            return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

        return feed
