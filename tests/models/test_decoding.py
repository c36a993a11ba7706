"""Constrained decoding always yields a structurally valid plan, whatever the weights and inputs."""

from __future__ import annotations

import numpy as np
import torch
from model_fixtures import PROPRIO_DIM, images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wp_policy.models import WaypointVLM, stack_prompts, vlm_config
from wp_policy.models.decoding import constrained_decode
from wp_policy.tokenizer import TokenLayout

CFG = vlm_config("tiny", proprio_dim=PROPRIO_DIM)


@st.composite
def plan_case(draw):
    return dict(
        seed=draw(st.integers(0, 2**16)),
        lengths=draw(st.lists(st.integers(1, 12), min_size=1, max_size=3)),
        num_waypoints=draw(st.integers(1, 4)),
        min_duration=draw(st.integers(0, 2)),
        max_duration=draw(st.sampled_from([None, 3, 33])),
        logit_scale=draw(st.sampled_from([1.0, 30.0])),
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=plan_case())
def test_plans_are_structurally_valid_for_random_models(case, wp_tokenizer):
    torch.manual_seed(case["seed"])
    model = WaypointVLM(CFG).eval()
    with torch.no_grad():  # sharper random logits make the argmax move around more
        model.paligemma.lm_head.weight.mul_(case["logit_scale"])
    rng = np.random.default_rng(case["seed"])
    prompts = [wp_tokenizer.encode_prompt("x" * n, rng.uniform(-1, 1, PROPRIO_DIM)) for n in case["lengths"]]
    n = len(prompts)
    imgs, masks = images(CFG, n, seed=case["seed"], masks={CFG.image_keys[0]: rng.random(n) < 0.7})
    m = case["num_waypoints"]
    plan = model.plan(imgs, masks, *stack_prompts(prompts), num_waypoints=m, min_duration=case["min_duration"],
                      max_duration=case["max_duration"])
    hi = 33 if case["max_duration"] is None else case["max_duration"]
    assert plan.proprio.shape == (n, m, PROPRIO_DIM) and plan.tokens.shape == (n, m * (PROPRIO_DIM + 3))
    for i in range(n):
        k = int(plan.num_valid[i])
        assert 1 <= k <= m
        proprio, durations = wp_tokenizer.decode_waypoints(plan.tokens[i].numpy())  # raises on any bad structure
        assert len(durations) == k
        np.testing.assert_allclose(plan.proprio[i, :k].numpy(), proprio, atol=1e-7)
        assert plan.durations[i, :k].tolist() == durations.tolist()
        assert all(case["min_duration"] <= d <= hi for d in durations)
        assert bool(plan.stopped[i]) == (durations[-1] == 0)
        assert 0 not in durations[:-1].tolist() and (k == m or durations[-1] == 0)
        assert np.all(np.abs(proprio) < 1.0)
        assert (plan.log_probs[i, :k] <= 0).all() and not plan.log_probs[i, k:].any()


def test_decoder_forces_structure_against_an_adversarial_model():
    """A 'model' that always prefers <wp> (a forbidden choice at free positions) still yields valid blocks, and the
    stop rule ends each sample at its first d = 0."""
    layout = TokenLayout(1024)
    calls = []

    def feed(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.clone())
        logp = torch.full((2, 1024), -50.0)
        logp[:, layout.wp_token] = 0.0
        step = len(calls)
        logp[0, layout.duration_token(0)] = -1.0  # sample 0 stops at its first duration
        logp[1, layout.duration_token(min(step, 33))] = -1.0
        logp[:, layout.proprio_token(np.array([step % 256]))] = -2.0
        return torch.log_softmax(logp, -1)

    plan = constrained_decode(feed, layout, 2, proprio_dim=2, num_waypoints=3, device="cpu")
    assert plan.num_valid.tolist() == [1, 3] and plan.stopped.tolist() == [True, False]
    assert calls[0].tolist() == [[layout.wp_token]] * 2
    assert calls[2].tolist() == [[layout.proprio_token(np.array([2]))[0], layout.dur_token]] * 2
    assert plan.durations[1].tolist() == [3, 6, 9]
