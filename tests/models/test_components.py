"""AdaRMSNorm, sinusoidal embeddings and the condition MLP against their formulas (docs/models.md)."""

from __future__ import annotations

import math

import torch

from wp_policy.models.adarms import AdaRMSNorm, gated_residual
from wp_policy.models.embeddings import sinusoidal_embedding


def test_adarms_formula_and_zero_init():
    torch.manual_seed(0)
    norm = AdaRMSNorm(dim=6, cond_dim=4)
    x, cond = torch.randn(2, 3, 6), torch.randn(2, 4)
    y, gate = norm(x, cond)
    xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(y, xn, atol=1e-6) and torch.equal(gate, torch.zeros(2, 1, 6))  # zero-init: plain norm
    assert torch.equal(gated_residual(x, y, gate), x)  # ... and a closed gate: the branch adds nothing
    with torch.no_grad():
        norm.dense.weight.normal_()
        norm.dense.bias.normal_()
    y, gate = norm(x, cond)
    scale, shift, g = (cond @ norm.dense.weight.T + norm.dense.bias)[:, None].chunk(3, dim=-1)
    assert torch.allclose(y, xn * (1 + scale) + shift, atol=1e-5) and torch.allclose(gate, g, atol=1e-6)


def test_adarms_bf16_keeps_input_dtype():
    norm = AdaRMSNorm(8, 8).to(torch.bfloat16)
    y, gate = norm(torch.randn(1, 2, 8, dtype=torch.bfloat16), torch.randn(1, 8))
    assert y.dtype == gate.dtype == torch.bfloat16


def test_sinusoidal_embedding_matches_pi0_formula():
    t = torch.tensor([0.0, 0.3, 1.0])
    emb = sinusoidal_embedding(t, 8)
    assert emb.dtype == torch.float64 and emb.shape == (3, 8)
    for i, ti in enumerate(t.tolist()):
        for k in range(4):
            period = 4e-3 * (4.0 / 4e-3) ** (k / 3)
            assert math.isclose(emb[i, k].item(), math.sin(2 * math.pi / period * ti), abs_tol=1e-12)
            assert math.isclose(emb[i, 4 + k].item(), math.cos(2 * math.pi / period * ti), abs_tol=1e-12)


def test_condition_uses_time_and_duration(tiny_ae):
    t = torch.tensor([0.2, 0.2, 0.9])
    d = torch.tensor([5, 20, 5])
    with torch.no_grad():
        c = tiny_ae.condition(t, d)
    assert c.shape == (3, tiny_ae.config.expert.width)
    assert not torch.allclose(c[0], c[1]) and not torch.allclose(c[0], c[2])
    assert tiny_ae.time_mlp_in.in_features == 2 * tiny_ae.config.expert.width
