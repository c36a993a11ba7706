"""Training metrics to ``metrics.jsonl`` and TensorBoard (always) and wandb (when a project is configured).

Only the main rank writes. On ``--resume`` the jsonl lines and TensorBoard events past the resumed step (logged
after the last checkpoint by the run that died) are dropped, so every step appears once.

TensorBoard runs on its built-in TF stub: without it, ``torch.utils.tensorboard`` imports all of TensorFlow
(~5 s and ~1 GB per process) just to write scalars. ``tensorboard.compat.notf`` is TensorBoard's own switch for
that (the marker module of its ``no_tensorflow`` build); the datasets may still import TensorFlow themselves.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import types
from pathlib import Path
from typing import Any, Mapping

from wp_training.engine.train_config import LogSettings

log = logging.getLogger(__name__)

JSONL_NAME = "metrics.jsonl"
TB_DIR = "tb"


def _summary_writer(log_dir: Path, purge_step: int | None):
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir), purge_step=purge_step)


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (atomically rewritten)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        if line.strip() and json.loads(line).get("step", -1) <= last_step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the record readable by strict parsers
    return value


class MetricsLogger:
    """``log(step, {"train/loss": ...})`` fans out to jsonl, TensorBoard and (optionally) wandb."""

    def __init__(self, run_dir: Path, settings: LogSettings, config: Mapping, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = run_dir / JSONL_NAME
        if resume_step is not None:
            _truncate_jsonl(self.jsonl_path, resume_step)
        self._jsonl = self.jsonl_path.open("a")
        self._tb = _summary_writer(run_dir / TB_DIR, None if resume_step is None else resume_step + 1)
        if settings.wandb_project:
            self._wandb = self._start_wandb(run_dir, settings, config, resume_step is not None)

    @staticmethod
    def _start_wandb(run_dir: Path, settings: LogSettings, config: Mapping, resume: bool):
        try:
            import wandb
        except ImportError:
            log.warning("log.wandb_project=%r but wandb is not installed: logging to jsonl + TensorBoard only",
                        settings.wandb_project)
            return None
        return wandb.init(project=settings.wandb_project, name=settings.wandb_run_name or None, dir=str(run_dir),
                          config=dict(config), resume="allow" if resume else None)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _jsonable(float(v)) for k, v in metrics.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for key, value in metrics.items():
            self._tb.add_scalar(key, float(value), step)
        if self._wandb is not None:
            self._wandb.log(dict(metrics), step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        """Run-level facts (parameter counts, global batch): one jsonl record and wandb summary."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"summary": {k: _jsonable(v) for k, v in values.items()}}) + "\n")
        self._jsonl.flush()
        if self._wandb is not None:
            self._wandb.summary.update(dict(values))

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    """(step records, summary records) of a metrics.jsonl file."""
    steps, summaries = [], []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            (summaries if "summary" in record else steps).append(record)
    return steps, summaries
