"""Attention structure: big_vision masks, the AE's joint pattern (docs/models.md) and its functional effect."""

from __future__ import annotations

import torch
from model_fixtures import ae_batch, randomize_adarms, without_actions

from wp_policy import batch as B
from wp_policy.models import masks


def test_big_vision_mask_and_positions():
    valid = torch.tensor([[True, True, False, True, True, True]])
    ar = torch.tensor([[0, 0, 0, 1, 1, 0]])
    m = masks.attention_mask(valid, ar)[0]
    expected = torch.tensor([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 1, 0, 1, 1, 1],
        [1, 1, 0, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(m, expected)
    assert masks.positions(valid).tolist() == [[0, 1, 1, 2, 3, 4]]
    assert masks.positions(valid, torch.tensor([5])).tolist() == [[5, 6, 6, 7, 8, 9]]


def test_additive_bias_is_in_query_dtype_and_finite():
    m = torch.tensor([[[True, False], [False, False]]])
    for dtype in (torch.float32, torch.bfloat16):
        bias = masks.additive_bias(m, dtype)
        assert bias.dtype == dtype and bias.shape == (1, 1, 2, 2)
        assert torch.isfinite(bias).all() and bias[0, 0, 0, 0] == 0 and bias[0, 0, 0, 1] < -1e30


def _category(i: int, n_prefix: int) -> tuple[str, int]:
    if i < n_prefix:
        return "vlm", 0
    if i == n_prefix:
        return "start", 0
    if i == n_prefix + 1:
        return "end", 0
    return "action", i - n_prefix - 2


def _design_table(q: tuple[str, int], k: tuple[str, int]) -> bool:
    """VLM sees VLM; start sees VLM+start; end sees VLM+start+end; action i sees those and actions <= i."""
    visible = {"vlm": {"vlm"}, "start": {"vlm", "start"}, "end": {"vlm", "start", "end"},
               "action": {"vlm", "start", "end"}}[q[0]]
    return k[0] in visible or (q[0] == "action" and k[0] == "action" and k[1] <= q[1])


def test_ae_attention_pattern_matches_design_table(tiny_ae, tiny_ae_config):
    batch = ae_batch(tiny_ae_config, n=2)
    batch[B.IMAGE_MASKS][tiny_ae_config.image_keys[1]][1] = False  # sample 1 misses its wrist view
    cache = tiny_ae.encode_prefix(batch)
    mask = tiny_ae.joint_attention_mask(cache.valid)
    n_prefix = cache.length
    n = n_prefix + 2 + tiny_ae_config.horizon
    assert mask.shape == (2, n, n)
    suffix_valid = torch.ones(2, n - n_prefix, dtype=torch.bool)
    valid = torch.cat([cache.valid, suffix_valid], dim=1)
    assert not cache.valid[0, -3:].any() and not cache.valid[1, 16:32].any()  # padded prompt, missing view
    for b in range(2):
        for qi in range(n):
            for ki in range(n):
                want = bool(valid[b, qi] and valid[b, ki]) and _design_table(_category(qi, n_prefix),
                                                                             _category(ki, n_prefix))
                assert bool(mask[b, qi, ki]) == want, (b, qi, ki)


def test_actions_are_causal_and_padding_is_invisible(tiny_ae, tiny_ae_config):
    randomize_adarms(tiny_ae)
    batch = without_actions(ae_batch(tiny_ae_config, n=2))
    cache = tiny_ae.encode_prefix(batch)
    x = torch.randn(2, tiny_ae_config.horizon, tiny_ae_config.action_dim, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 0.5)
    args = (batch[B.START_PROPRIO], batch[B.END_PROPRIO], batch[B.DURATION])
    with torch.no_grad():
        v = tiny_ae.velocity(cache, x, t, *args)
        j = 10
        x2 = x.clone()
        x2[:, j] += 1.0
        v2 = tiny_ae.velocity(cache, x2, t, *args)
        assert torch.equal(v[:, :j], v2[:, :j])  # earlier actions never see a later one
        assert (v[:, j:] - v2[:, j:]).abs().amax(dim=-1).min() > 0  # action j and every later one do
        end = batch[B.END_PROPRIO].clone()
        end[:, 0] += 0.5
        v3 = tiny_ae.velocity(cache, x, t, batch[B.START_PROPRIO], end, batch[B.DURATION])
        assert (v3 - v).abs().amax(dim=-1).min() > 0  # every action sees the end waypoint
        padded = dict(batch)
        padded[B.TOKENS] = batch[B.TOKENS].clone()
        padded[B.TOKENS][0, -1] = 7  # position masked out by INPUT_MASK
        padded[B.IMAGE_MASKS] = {**batch[B.IMAGE_MASKS], tiny_ae_config.image_keys[1]: torch.tensor([True, False])}
        cache_a = tiny_ae.encode_prefix(padded)
        padded[B.IMAGES] = {**batch[B.IMAGES], tiny_ae_config.image_keys[1]: batch[B.IMAGES][
            tiny_ae_config.image_keys[1]] * torch.tensor([1.0, -0.5])[:, None, None, None]}
        cache_b = tiny_ae.encode_prefix(padded)
        assert torch.equal(tiny_ae.velocity(cache_a, x, t, *args), tiny_ae.velocity(cache_b, x, t, *args))
        assert torch.allclose(tiny_ae.velocity(tiny_ae.encode_prefix(padded), x, t, *args)[0], v[0], atol=1e-5)


def test_prefix_cache_matches_transformers_gemma(tiny_ae, tiny_ae_config):
    """Parity: our layer loop's K/V equal those transformers' GemmaModel caches for the same inputs and mask."""
    from transformers import DynamicCache

    from wp_policy.models.embeddings import embed_images, embed_text

    batch = ae_batch(tiny_ae_config, n=2)
    cache = tiny_ae.encode_prefix(batch)
    pg = tiny_ae.paligemma
    img, img_valid = embed_images(pg, batch, tiny_ae_config.image_keys)
    embeds = torch.cat([img, embed_text(pg, batch[B.TOKENS])], dim=1)
    valid = torch.cat([img_valid, batch[B.INPUT_MASK]], dim=1)
    mask = masks.attention_mask(valid, torch.zeros_like(valid, dtype=torch.long))
    mask |= torch.eye(mask.shape[1], dtype=torch.bool)  # keep padding rows finite for transformers' bool mask
    hf_cache = DynamicCache(config=pg.config.get_text_config())
    with torch.no_grad():
        pg.model.language_model(inputs_embeds=embeds, attention_mask=mask[:, None], position_ids=masks.positions(valid),
                                past_key_values=hf_cache, use_cache=True)
    for i, layer in enumerate(hf_cache.layers):
        keep = valid[:, None, :, None]  # padding rows differ by construction (they attend to nothing here)
        assert torch.allclose(layer.keys * keep, cache.keys[i] * keep, atol=1e-5), i
        assert torch.allclose(layer.values * keep, cache.values[i] * keep, atol=1e-5), i
