"""Fixtures for the planner/filler tests: tiny random checkpoints + stats + tokenizer, built once per session.

Reuses the ROS test plumbing of ``tests/ros`` (listener, process helpers, synthetic bag settings): that folder is
put on ``sys.path`` here so this directory also runs on its own. Every test process gets its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ros"))

from ros_domains import isolate  # noqa: E402

isolate()


@pytest.fixture(scope="session")
def policy_files(tmp_path_factory, r1lite_config, sp_model_path):
    from policy_fixtures import write_tiny_policy

    return write_tiny_policy(tmp_path_factory.mktemp("policy"), r1lite_config, sp_model_path)


@pytest.fixture(scope="session")
def policy_config(policy_files):
    from wp_policy.runtime.policy import PolicyConfig

    return PolicyConfig(robot="r1lite", vlm_checkpoint=str(policy_files.vlm), ae_checkpoint=str(policy_files.ae),
                        stats_path=str(policy_files.stats), tokenizer_path=str(policy_files.tokenizer),
                        num_waypoints=3)


@pytest.fixture(scope="session")
def policy(policy_config):
    from wp_policy.runtime.policy import WaypointPolicy

    return WaypointPolicy.from_config(policy_config)


@pytest.fixture(autouse=True, scope="package")
def _single_thread():
    """Tiny models on a shared 2-core runner: intra-op threads only oversubscribe; restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

