"""WaypointVLM: prefix-LM masking, CE on targets only, memorise-and-plan, cached == uncached decoding, padding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_fixtures import PROPRIO_DIM, images, random_example, saved_bytes, seeded, vlm_batch

from wp_policy import batch as B
from wp_policy.models import WaypointVLM, stack_prompts, vlm_config
from wp_policy.models.validation import ModelInputError


def test_prefix_lm_masking_by_perturbation(tiny_vlm, tiny_vlm_config, wp_tokenizer):
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, [random_example(np.random.default_rng(i)) for i in range(2)])
    ar = batch[B.AR_MASK][0]
    first_suffix = int(torch.nonzero(ar)[0])
    with torch.no_grad():
        base = tiny_vlm.logits(batch)
        for pos in (first_suffix, first_suffix + 5):  # "Action: " and a waypoint token
            changed = {**batch, B.TOKENS: batch[B.TOKENS].clone()}
            changed[B.TOKENS][:, pos] = 7
            out = tiny_vlm.logits(changed)
            assert torch.equal(out[0, :pos], base[0, :pos])  # nothing before a suffix token sees it
            assert not torch.allclose(out[0, pos:pos + 3], base[0, pos:pos + 3])
        changed = {**batch, B.TOKENS: batch[B.TOKENS].clone()}
        changed[B.TOKENS][:, first_suffix - 2] = 7  # a prefix token is seen by the whole (bidirectional) prefix
        out = tiny_vlm.logits(changed)
        assert (out[0, 1:first_suffix - 2] - base[0, 1:first_suffix - 2]).abs().amax(-1).min() > 0


def test_ce_only_on_loss_mask_targets(tiny_vlm, tiny_vlm_config, wp_tokenizer):
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, [random_example(np.random.default_rng(i)) for i in range(2)])
    loss, metrics = tiny_vlm(batch)
    with torch.no_grad():
        logits = tiny_vlm.logits(batch)[:, :-1]
    select = batch[B.LOSS_MASK][:, 1:]
    expected = F.cross_entropy(logits[select], batch[B.TOKENS][:, 1:][select])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["num_targets"].item() == select.sum().item() == 2 * 3 * (PROPRIO_DIM + 1)


def _prompts(tokenizer, examples):
    return stack_prompts([tokenizer.encode_prompt(ex[0], ex[1]) for ex in examples])


@pytest.mark.slow
def test_memorises_waypoints_and_plan_decodes_them_exactly(tiny_vlm_config, wp_tokenizer):
    rng = np.random.default_rng(0)
    examples = [random_example(rng, num_waypoints=2), random_example(rng, num_waypoints=4)]
    examples[1] = ("put the bowl on the plate and open the top drawer",) + examples[1][1:]  # longer prompt
    model = seeded(WaypointVLM, tiny_vlm_config).train()
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, examples)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss, metrics = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["accuracy"].item() == 1.0
    model.eval()
    plan = model.plan(batch[B.IMAGES], batch[B.IMAGE_MASKS], *_prompts(wp_tokenizer, examples))
    uncached = model.plan(batch[B.IMAGES], batch[B.IMAGE_MASKS], *_prompts(wp_tokenizer, examples), use_cache=False)
    assert torch.equal(plan.tokens, uncached.tokens)
    assert plan.num_valid.tolist() == [2, 4] and plan.stopped.tolist() == [True, True]
    for i, (_, _, proprio, durations) in enumerate(examples):
        k = len(durations)
        quantised = wp_tokenizer.bins.decode(wp_tokenizer.bins.encode(proprio))
        np.testing.assert_array_equal(plan.proprio[i, :k].numpy(), quantised.astype(np.float32))
        assert plan.durations[i, :k].tolist() == list(durations)
        assert not plan.proprio[i, k:].any() and not plan.durations[i, k:].any()
        expected_stream = wp_tokenizer.waypoint_tokens(proprio, durations)
        assert plan.tokens[i, : len(expected_stream)].tolist() == expected_stream
    assert plan.log_probs.shape == (2, 7, PROPRIO_DIM + 1) and (plan.log_probs[0, :2] > -0.5).all()


def test_cached_equals_uncached_and_padding_side_does_not_matter(tiny_vlm, tiny_vlm_config, wp_tokenizer):
    rng = np.random.default_rng(3)
    examples = [random_example(rng), ("open the drawer",) + random_example(rng)[1:]]
    imgs, masks = images(tiny_vlm_config, 2, seed=1, masks={tiny_vlm_config.image_keys[1]: [True, False]})
    tokens, mask, ar = _prompts(wp_tokenizer, examples)
    assert not mask.all()  # the two prompts differ in length
    kwargs = dict(num_waypoints=3, min_duration=1)
    cached = tiny_vlm.plan(imgs, masks, tokens, mask, ar, **kwargs)
    uncached = tiny_vlm.plan(imgs, masks, tokens, mask, ar, use_cache=False, **kwargs)
    assert torch.equal(cached.tokens, uncached.tokens)
    assert torch.allclose(cached.log_probs, uncached.log_probs, atol=1e-4)
    shift = int((~mask[1]).sum())  # left-pad the shorter prompt instead of right-padding it
    left = [torch.stack([t[0], torch.roll(t[1], shift)]) for t in (tokens, mask, ar)]
    assert torch.equal(tiny_vlm.plan(imgs, masks, *left, **kwargs).tokens, cached.tokens)
    for i in range(2):  # batching never changes a sample's plan (sample 0 alone has no padding at all)
        inputs = ({k: v[i:i + 1] for k, v in imgs.items()}, {k: v[i:i + 1] for k, v in masks.items()},
                  *_prompts(wp_tokenizer, examples[i:i + 1]))
        alone = tiny_vlm.plan(*inputs, **kwargs)
        assert torch.equal(alone.tokens[0], cached.tokens[i])
        reference = tiny_vlm.plan(*inputs, use_cache=False, **kwargs)
        assert torch.equal(reference.tokens, alone.tokens)
        assert torch.allclose(reference.log_probs, alone.log_probs, atol=1e-4)


def test_bf16_vlm_trains_and_plans(tiny_vlm_config, wp_tokenizer):
    model = seeded(WaypointVLM, vlm_config("tiny", proprio_dim=PROPRIO_DIM, dtype="bfloat16"))
    examples = [random_example(np.random.default_rng(0))]
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, examples)
    loss, _ = model.train()(batch)
    loss.backward()
    assert torch.isfinite(loss)
    plan = model.eval().plan(batch[B.IMAGES], batch[B.IMAGE_MASKS], *_prompts(wp_tokenizer, examples),
                             num_waypoints=2)
    assert plan.proprio.dtype == torch.float32 and plan.num_valid.item() >= 1


def test_hf_gradient_checkpointing_is_real(tiny_vlm_config, wp_tokenizer):
    plain = seeded(WaypointVLM, tiny_vlm_config).train()
    ckpt = seeded(WaypointVLM, vlm_config("tiny", proprio_dim=PROPRIO_DIM, gradient_checkpointing=True)).train()
    layers = ckpt.paligemma.model.language_model.layers
    assert all(layer.gradient_checkpointing for layer in layers)
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, [random_example(np.random.default_rng(0))])
    with torch.no_grad():
        hidden_plain = plain.text_hidden_states(batch)
    kept = {}
    for name, model in (("plain", plain), ("ckpt", ckpt)):
        kept[name] = saved_bytes(lambda m=model: m(batch)[0])
    assert kept["ckpt"] < kept["plain"]
    loss_p, loss_c = plain(batch)[0], ckpt(batch)[0]
    assert loss_p.item() == pytest.approx(loss_c.item(), rel=1e-6)
    loss_p.backward()
    loss_c.backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    assert hidden_plain.shape[1] == batch[B.TOKENS].shape[1]


def test_bin_label_sigma_soft_targets(tiny_vlm_config, wp_tokenizer):
    """sigma 0 is plain CE; a tiny sigma gives the same loss; a wider one is a cross-entropy against a Gaussian over
    the bins (computed here independently) and leaves the non-bin targets' CE unchanged."""
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, [random_example(np.random.default_rng(i)) for i in range(2)])
    losses = {}
    for sigma in (0.0, 1e-3, 3.0):
        model = seeded(WaypointVLM, dataclasses.replace(tiny_vlm_config, bin_label_sigma=sigma))
        losses[sigma] = model(batch)[0].item()
        if sigma == 3.0:
            with torch.no_grad():
                logp = torch.log_softmax(model.logits(batch)[:, :-1], -1)
    assert losses[1e-3] == pytest.approx(losses[0.0], rel=1e-6)
    select = batch[B.LOSS_MASK][:, 1:]
    logp, targets = logp[select], batch[B.TOKENS][:, 1:][select]
    layout = tiny_vlm_config.layout
    expected = []
    for lp, t in zip(logp, targets.tolist()):
        if layout.is_proprio(np.array([t]))[0]:
            centre = layout.bin_of(np.array([t]))[0]
            w = np.exp(-0.5 * ((np.arange(layout.num_bins) - centre) / 3.0) ** 2)
            w /= w.sum()
            expected.append(-(torch.as_tensor(w, dtype=torch.float32)
                              * lp[layout.proprio_token(np.arange(layout.num_bins))]).sum().item())
        else:
            expected.append(-lp[t].item())
    assert losses[3.0] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert losses[3.0] != pytest.approx(losses[0.0], rel=1e-4)
    with pytest.raises(ValueError, match="bin_label_sigma"):
        dataclasses.replace(tiny_vlm_config, bin_label_sigma=float("nan"))


def test_target_tokens_are_the_targets_and_tokens_the_input(tiny_vlm_config, wp_tokenizer):
    """With TARGET_TOKENS the model reads TOKENS (noisy earlier waypoints) and is scored against TARGET_TOKENS."""
    batch = vlm_batch(tiny_vlm_config, wp_tokenizer, [random_example(np.random.default_rng(i)) for i in range(2)])
    model = seeded(WaypointVLM, tiny_vlm_config)
    layout = tiny_vlm_config.layout
    read = batch[B.TOKENS].clone()
    bins = torch.as_tensor(layout.is_proprio(read.numpy())) & batch[B.LOSS_MASK].bool()
    read[bins] = torch.as_tensor(layout.proprio_token(np.zeros(int(bins.sum()), np.int64)))  # every bin read as 0
    noisy = {**batch, B.TOKENS: read, B.TARGET_TOKENS: batch[B.TOKENS]}
    with torch.no_grad():
        loss = model(noisy)[0].item()
        logp = torch.log_softmax(model.logits({**batch, B.TOKENS: read})[:, :-1], -1)
    select = batch[B.LOSS_MASK][:, 1:]
    targets = batch[B.TOKENS][:, 1:][select]
    assert loss == pytest.approx(-logp[select].gather(1, targets[:, None]).mean().item(), rel=1e-5)
    assert loss != pytest.approx(model(batch)[0].item(), rel=1e-4)  # what it reads matters
    with pytest.raises(ModelInputError, match=B.TARGET_TOKENS):
        model({**noisy, B.TARGET_TOKENS: batch[B.TOKENS][:, :-1]})
