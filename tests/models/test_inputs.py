"""Bad inputs fail with a message naming the problem."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import ae_batch, images, without_actions

from wp_policy import batch as B
from wp_policy.models import ModelInputError


def _with(batch, key, value):
    return {**batch, key: value}


def test_channels_last_images_are_rejected(tiny_ae, tiny_ae_config):
    batch = ae_batch(tiny_ae_config, n=2)
    key = tiny_ae_config.image_keys[0]
    images = {**batch[B.IMAGES], key: batch[B.IMAGES][key].permute(0, 2, 3, 1)}
    with pytest.raises(ModelInputError, match=r"channels-last .*permute"):
        tiny_ae(_with(batch, B.IMAGES, images))


@pytest.mark.parametrize("case, pattern", [
    ("proprio_dim", r"start_proprio has shape \(2, 8\), expected \[2, 32\]"),
    ("nan_proprio", r"end_proprio contains NaN"),
    ("nan_image", r"images\['base_0_rgb'\] contains NaN"),
    ("uint8_range", r"values span .* expected \[-1, 1\]"),
    ("missing_view", r"images keys .* do not match the model's image_keys"),
    ("token_range", r"tokens ids span .* outside the model vocabulary \[0, 1024\)"),
    ("actions_shape", r"actions has shape \(2, 32, 7\), expected \[2, 32, 32\]"),
    ("duration", r"duration must lie in \[0, 33\]"),
    ("missing_key", r"batch lacks key\(s\) \['step_mask'\]"),
])
def test_bad_ae_batches(tiny_ae, tiny_ae_config, case, pattern):
    batch = ae_batch(tiny_ae_config, n=2)
    key0 = tiny_ae_config.image_keys[0]
    if case == "proprio_dim":
        batch[B.START_PROPRIO] = batch[B.START_PROPRIO][:, :8]
    elif case == "nan_proprio":
        batch[B.END_PROPRIO][1, 3] = float("nan")
    elif case == "nan_image":
        batch[B.IMAGES][key0][0, 0, 0, 0] = float("nan")
    elif case == "uint8_range":
        batch[B.IMAGES][key0] = (batch[B.IMAGES][key0] + 1) * 127.5
    elif case == "missing_view":
        del batch[B.IMAGES][tiny_ae_config.image_keys[1]]
    elif case == "token_range":
        batch[B.TOKENS][0, 0] = 5000
    elif case == "actions_shape":
        batch[B.ACTIONS] = batch[B.ACTIONS][..., :7]
    elif case == "duration":
        batch[B.DURATION][0] = 40
    elif case == "missing_key":
        del batch[B.STEP_MASK]
    with pytest.raises(ModelInputError, match=pattern):
        tiny_ae(batch)


def test_sample_actions_needs_a_generator(tiny_ae, tiny_ae_config):
    batch = without_actions(ae_batch(tiny_ae_config, n=1))
    with pytest.raises(ModelInputError, match="torch.Generator"):
        tiny_ae.sample_actions(batch, generator=0)
    with pytest.raises(ModelInputError, match="num_steps must be >= 1"):
        tiny_ae.sample_actions(batch, torch.Generator(), num_steps=0)


def test_bad_plan_inputs(tiny_vlm, tiny_vlm_config):
    imgs, masks = images(tiny_vlm_config, 2)
    tokens = torch.randint(3, 400, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    ar = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ModelInputError, match=r"prompt_mask: every sample needs at least one real token"):
        tiny_vlm.plan(imgs, masks, tokens, torch.zeros_like(mask), ar)
    with pytest.raises(ModelInputError, match=r"prompt_ar_mask has shape \(2, 5\), expected \[2, 6\]"):
        tiny_vlm.plan(imgs, masks, tokens, mask, ar[:, :5])
    with pytest.raises(ModelInputError, match=r"prompt_ar_mask must be 0 \(prefix\) then 1 \(postfix\)"):
        tiny_vlm.plan(imgs, masks, tokens, mask, torch.tensor([[0, 1, 0, 1, 1, 1]] * 2))
    with pytest.raises(ValueError, match=r"min_duration \(5\) <= max_duration \(2\)"):
        tiny_vlm.plan(imgs, masks, tokens, mask, ar, min_duration=5, max_duration=2)
    bad = {**imgs, tiny_vlm_config.image_keys[0]: imgs[tiny_vlm_config.image_keys[0]][:, :, :100]}
    with pytest.raises(ModelInputError, match=r"expected \[B, 3, 224, 224\]"):
        tiny_vlm.plan(bad, masks, tokens, mask, ar)
