"""wp-train CLI: --help, training through main(), export, and clear exits for misuse."""

from __future__ import annotations

import pytest
import yaml

import toy_task
from wp_training.engine.metrics_log import read_jsonl
from wp_training.train_cli import main

from .conftest import TOY_MODE, toy_config_dict


def _config(tmp_path, **extra):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(toy_config_dict(tmp_path / "run", **extra)))
    return path


@pytest.mark.parametrize("argv", [["--help"], ["plan-memory", "--help"], ["export", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage: wp-train" in capsys.readouterr().out


def test_train_with_overrides_then_export(tmp_path, capsys):
    path = _config(tmp_path)
    assert main(["--mode", TOY_MODE, "--config", str(path), "num_steps=4", "log.every_steps=1"]) == 0
    steps, _ = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert "inference model in" in capsys.readouterr().out
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000004"
    out = tmp_path / "exported"
    assert main(["export", "--config", str(path), "--checkpoint", str(ckpt), "--out", str(out), "num_steps=4"]) == 0
    assert toy_task.ToyModel.from_pretrained(out).state_dict().keys() == toy_task.ToyModel(
        toy_task.ToyModelConfig(hidden=16)).state_dict().keys()
    stored = tmp_path / "exported_from_stored_config"  # no --config: the run's config stored in the checkpoint
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(stored)]) == 0
    assert (stored / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    assert "not a training checkpoint (no trainer.json)" in capsys.readouterr().err


def test_misuse_exits_with_a_message(tmp_path, capsys):
    path = _config(tmp_path)
    assert main(["--mode", "vlm", "--config", str(path)]) == 2
    assert "config is for 'toy_task:TASK' but --mode 'vlm'" in capsys.readouterr().err
    assert main(["--mode", TOY_MODE, "--config", str(path), "batch_size=0"]) == 2
    assert "batch_size must be > 0" in capsys.readouterr().err
    assert main(["--mode", TOY_MODE, "--config", str(path), "--resume"]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err
    missing = _config(tmp_path, mode="wp_training.not_installed_task:TASK")
    assert main(["--mode", "wp_training.not_installed_task:TASK", "--config", str(missing)]) == 1
    assert "cannot import wp_training.not_installed_task" in capsys.readouterr().err
    assert main(["plan-memory", "--config", str(path), "--gpu-mem", "24"]) == 2
