"""WaypointActionExpert: masked loss, overfitting, seeded sampling with a reused prefix cache, bf16, checkpointing."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import ae_batch, randomize_adarms, saved_bytes, seeded, without_actions

from wp_policy import batch as B
from wp_policy.models import WaypointActionExpert, ae_config
from wp_policy.models import action_expert as ae_module
from wp_policy.models.validation import ModelInputError


def _loss(model, batch, seed=0):
    return model(batch, torch.Generator().manual_seed(seed))[0]


def test_loss_is_the_masked_flow_matching_mse(tiny_ae, tiny_ae_config):
    batch = ae_batch(tiny_ae_config, n=2, durations=[5, 32], real_dims=7)
    loss, metrics = tiny_ae(batch, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # replay the draws: noise first, then time
    actions = batch[B.ACTIONS]
    noise = torch.randn(actions.shape, generator=g)
    t = tiny_ae.sample_time(2, g)
    x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
    with torch.no_grad():
        v = tiny_ae.velocity(tiny_ae.encode_prefix(batch), x_t, t, batch[B.START_PROPRIO], batch[B.END_PROPRIO],
                             batch[B.DURATION])
    err = (v - (noise - actions)) ** 2
    expected = (err[0, :5, :7].sum() + err[1, :, :7].sum()) / ((5 + 32) * 7)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["valid_elements"].item() == (5 + 32) * 7 and metrics["loss"].item() == loss.item()
    assert err.mean().item() != pytest.approx(expected.item(), rel=1e-3)  # the masks do change the value


def test_a_sample_without_visible_images_ignores_their_pixels(tiny_ae, tiny_ae_config):
    """Training with image dropout hides every view of a sample: its loss must then come from prompt and proprio
    alone, whatever the pixels, while the other samples of the batch still read theirs."""
    randomize_adarms(tiny_ae)
    batch = ae_batch(tiny_ae_config, n=2)
    for key in batch[B.IMAGE_MASKS]:
        batch[B.IMAGE_MASKS][key] = torch.tensor([False, True])
    other = {**batch, B.IMAGES: {k: torch.rand_like(v) * 2 - 1 for k, v in batch[B.IMAGES].items()}}
    with torch.no_grad():
        a = tiny_ae.sample_actions(without_actions(batch), torch.Generator().manual_seed(0))
        b = tiny_ae.sample_actions(without_actions(other), torch.Generator().manual_seed(0))
    assert torch.isfinite(a).all() and torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    loss = tiny_ae(batch, torch.Generator().manual_seed(0))[0]
    assert torch.isfinite(loss)


def test_every_trainable_parameter_gets_a_gradient(tiny_ae_config):
    model = seeded(WaypointActionExpert, tiny_ae_config).train()
    model(ae_batch(tiny_ae_config, n=2))[0].backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert not no_grad and frozen == set(model.unused_parameter_names())
    assert "paligemma.model.language_model.norm.weight" in frozen
    assert "paligemma.model.language_model.layers.1.self_attn.k_proj.weight" not in frozen


def test_time_follows_beta_1p5_1(tiny_ae):
    t = tiny_ae.sample_time(20000, torch.Generator().manual_seed(0))
    assert 0.001 <= t.min() and t.max() <= 1.0
    # Beta(1.5, 1) * 0.999 + 0.001: mean 0.6 * 0.999 + 0.001, P(T < 0.5) ~= 0.5 ** 1.5
    assert t.mean().item() == pytest.approx(0.6 * 0.999 + 0.001, abs=0.01)
    assert (t < 0.5).float().mean().item() == pytest.approx(((0.5 - 0.001) / 0.999) ** 1.5, abs=0.01)


def test_overfits_one_fixed_batch():
    """Same observations, actions, noise and time every step: the loss must fall >= 10x (gradients reach every part
    that matters: prefix K/V, expert, conditioning, projections)."""
    cfg = ae_config("tiny")
    model = seeded(WaypointActionExpert, cfg).train()
    batch = ae_batch(cfg, n=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = _loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] * 10 <= losses[0], losses


def test_sampling_is_seeded_and_reuses_one_prefix_pass(tiny_ae, tiny_ae_config, monkeypatch):
    randomize_adarms(tiny_ae)
    batch = without_actions(ae_batch(tiny_ae_config, n=2))
    calls = []
    real_prefix = ae_module.prefix_pass
    monkeypatch.setattr(ae_module, "prefix_pass", lambda *a, **k: calls.append(1) or real_prefix(*a, **k))
    a = tiny_ae.sample_actions(batch, torch.Generator().manual_seed(7))
    assert len(calls) == 1  # 10 Euler steps, one prefix pass
    b = tiny_ae.sample_actions(batch, torch.Generator().manual_seed(7))
    c = tiny_ae.sample_actions(batch, torch.Generator().manual_seed(8))
    assert a.dtype == torch.float32 and a.shape == (2, 32, 32)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with torch.no_grad():  # reference: Euler from the same noise, re-encoding the prefix at every step
        x = torch.randn(a.shape, generator=torch.Generator().manual_seed(7))
        for i in range(10):
            t = torch.full((2,), 1.0 - i / 10)
            v = tiny_ae.velocity(tiny_ae.encode_prefix(batch), x, t, batch[B.START_PROPRIO], batch[B.END_PROPRIO],
                                 batch[B.DURATION])
            x = x - 0.1 * v
    assert torch.allclose(a, x, atol=1e-6)
    assert not torch.allclose(tiny_ae.sample_actions(batch, torch.Generator().manual_seed(7), num_steps=3), a)
    other = {**batch, B.END_PROPRIO: -batch[B.END_PROPRIO], B.DURATION: batch[B.DURATION] // 2}
    cache = tiny_ae.encode_prefix(batch)  # one observation, two waypoint pairs
    for pair, expected in ((batch, a), (other, tiny_ae.sample_actions(other, torch.Generator().manual_seed(7)))):
        chunk = tiny_ae.denoise(cache, pair[B.START_PROPRIO], pair[B.END_PROPRIO], pair[B.DURATION],
                                torch.Generator().manual_seed(7))
        assert torch.equal(chunk, expected)


def test_noise_scale_is_the_sampling_temperature(tiny_ae, tiny_ae_config):
    randomize_adarms(tiny_ae)
    batch = without_actions(ae_batch(tiny_ae_config, n=2))
    sample = lambda seed, scale: tiny_ae.sample_actions(batch, torch.Generator().manual_seed(seed),  # noqa: E731
                                                        noise_scale=scale)
    assert torch.equal(sample(7, 1.0), tiny_ae.sample_actions(batch, torch.Generator().manual_seed(7)))
    assert torch.equal(sample(7, 0.0), sample(8, 0.0))  # no noise: one chunk whatever the seed
    assert not torch.allclose(sample(7, 0.5), sample(8, 0.5))
    spread = {s: torch.stack([sample(seed, s) for seed in range(6)]).std(0).mean().item() for s in (0.25, 1.0)}
    assert spread[0.25] < spread[1.0]
    with torch.no_grad():  # the same Euler integration, started from the scaled noise
        x = 0.5 * torch.randn((2, 32, 32), generator=torch.Generator().manual_seed(7))
        for i in range(10):
            t = torch.full((2,), 1.0 - i / 10)
            x = x - 0.1 * tiny_ae.velocity(tiny_ae.encode_prefix(batch), x, t, batch[B.START_PROPRIO],
                                           batch[B.END_PROPRIO], batch[B.DURATION])
    assert torch.allclose(sample(7, 0.5), x, atol=1e-6)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ModelInputError, match="noise_scale must be a finite number >= 0"):
            sample(7, bad)


def test_bf16_weights_with_fp32_inputs_and_masks(tiny_ae_config):
    model = seeded(WaypointActionExpert, ae_config("tiny", dtype="bfloat16")).train()
    ref = seeded(WaypointActionExpert, tiny_ae_config).train()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.paligemma.model.language_model.rotary_emb.inv_freq.dtype == torch.float32
    batch = ae_batch(tiny_ae_config, n=2)  # float32 images/proprio, bool masks
    loss, _ = model(batch, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - _loss(ref, batch).item()) < 0.05 * _loss(ref, batch).item()
    chunk = model.eval().sample_actions(without_actions(batch), torch.Generator().manual_seed(0))
    assert chunk.dtype == torch.float32 and torch.isfinite(chunk).all()


def test_gradient_checkpointing_is_real_and_exact(tiny_ae_config):
    plain = seeded(WaypointActionExpert, tiny_ae_config).train()
    ckpt = seeded(WaypointActionExpert, ae_config("tiny", gradient_checkpointing=True)).train()
    batch = ae_batch(tiny_ae_config, n=2)
    assert ckpt.paligemma.is_activation_checkpointing and not plain.paligemma.is_activation_checkpointing
    # whole step: strictly less kept for backward (the image input of the patch conv dominates at tiny sizes)
    assert saved_bytes(lambda: _loss(ckpt, batch)) < saved_bytes(lambda: _loss(plain, batch))
    # the expert pass alone: only layer boundaries are kept
    with torch.no_grad():
        cache = plain.encode_prefix(batch)
    x = torch.randn(2, 32, 32)
    args = (cache, x, torch.full((2,), 0.5), batch[B.START_PROPRIO], batch[B.END_PROPRIO], batch[B.DURATION])
    saved_plain, saved_ckpt = saved_bytes(lambda: plain.velocity(*args)), saved_bytes(lambda: ckpt.velocity(*args))
    assert saved_ckpt < 0.5 * saved_plain, (saved_ckpt, saved_plain)
    for m in (plain, ckpt):
        _loss(m, batch).backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    ckpt.set_gradient_checkpointing(False)
    assert not ckpt.paligemma.is_activation_checkpointing
