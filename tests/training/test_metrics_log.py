"""Metrics: jsonl + TensorBoard always, wandb optional, and resume drops records past the checkpoint."""

from __future__ import annotations

import logging
import sys

from wp_training.engine.metrics_log import MetricsLogger, read_jsonl
from wp_training.engine.train_config import LogSettings


def test_jsonl_and_tensorboard(tmp_path):
    logger = MetricsLogger(tmp_path, LogSettings(), {"seed": 1}, enabled=True, resume_step=None)
    logger.summary({"total_params": 10})
    for step in (1, 2, 3):
        logger.log(step, {"train/loss": 1.0 / step, "train/grad_norm": float("nan")})
    logger.close()
    steps, summaries = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3] and steps[1]["train/loss"] == 0.5
    assert steps[0]["train/grad_norm"] == "nan"  # strict JSON: non-finite values are written as strings
    assert summaries == [{"summary": {"total_params": 10}}]
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    logger = MetricsLogger(tmp_path, LogSettings(), {}, enabled=True, resume_step=None)
    for step in range(1, 6):
        logger.log(step, {"train/loss": float(step)})
    logger.close()
    resumed = MetricsLogger(tmp_path, LogSettings(), {}, enabled=True, resume_step=3)
    resumed.log(4, {"train/loss": 40.0})
    resumed.close()
    steps, _ = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["train/loss"]) for r in steps] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_wandb_configured_but_missing_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails like an uninstalled package
    with caplog.at_level(logging.WARNING):
        logger = MetricsLogger(tmp_path, LogSettings(wandb_project="waypoint_vla"), {}, enabled=True, resume_step=None)
    logger.log(1, {"train/loss": 1.0})
    logger.close()
    assert "wandb is not installed" in caplog.text
    assert read_jsonl(tmp_path / "metrics.jsonl")[0][0]["train/loss"] == 1.0


def test_non_main_ranks_write_nothing(tmp_path):
    logger = MetricsLogger(tmp_path / "rank1", LogSettings(), {}, enabled=False, resume_step=None)
    logger.log(1, {"train/loss": 1.0})
    logger.close()
    assert not (tmp_path / "rank1").exists()
