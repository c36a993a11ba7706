"""Shared fixtures: a tiny SentencePiece model trained on the fly (nothing is downloaded) and robot configs."""

from __future__ import annotations

import pytest

from wp_policy.robot_config import load_robot_config


@pytest.fixture(scope="session")
def sp_model_path(tmp_path_factory):
    from wp_training.data.text_tokenizer import train_sentencepiece

    return train_sentencepiece(tmp_path_factory.mktemp("sp") / "tiny.model")


@pytest.fixture(scope="session")
def libero_config():
    return load_robot_config("libero")


@pytest.fixture(scope="session")
def r1lite_config():
    return load_robot_config("r1lite")


@pytest.fixture(scope="session")
def rclpy_context():
    """One default rclpy context for the whole session (rclpy allows a single init): every ROS test folder shares it.

    The ROS folders' conftests set ROS_DOMAIN_ID and localhost discovery at import, before this ever runs."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()
