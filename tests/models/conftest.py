"""Fixtures for the model tests; the builders live in ``model_fixtures`` (importable by name from the tests)."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import PROPRIO_DIM, seeded

from wp_policy.models import WaypointActionExpert, WaypointVLM, ae_config, vlm_config
from wp_policy.tokenizer import TextTokenizer, TokenLayout, WaypointTokenizer


@pytest.fixture(scope="session")
def wp_tokenizer(sp_model_path):
    return WaypointTokenizer(TextTokenizer(sp_model_path), TokenLayout(1024), proprio_dim=PROPRIO_DIM,
                             max_token_len=160)


@pytest.fixture
def tiny_ae_config():
    return ae_config("tiny")


@pytest.fixture
def tiny_vlm_config():
    return vlm_config("tiny", proprio_dim=PROPRIO_DIM)


@pytest.fixture
def tiny_ae(tiny_ae_config):
    return seeded(WaypointActionExpert, tiny_ae_config).eval()


@pytest.fixture
def tiny_vlm(tiny_vlm_config):
    return seeded(WaypointVLM, tiny_vlm_config).eval()


@pytest.fixture(autouse=True, scope="package")
def _single_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core runner oversubscription makes each
    step ~10x slower; restore the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
