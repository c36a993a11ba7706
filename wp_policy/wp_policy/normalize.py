"""Normalisation statistics and the q99 / z-score normaliser shared by training, the sim loop and the nodes.

q99:      y = clip(2 (x - q01) / (q99 - q01 + eps) - 1, -1, 1);  constant dims (q01 == q99) -> 0;
          inverse x = 0.5 (y + 1) (q99 - q01) + q01.
z-score:  y = (x - mean) / (std + eps);  inverse x = y (std + eps) + mean.
Dims whose mask is False (grippers) pass through both directions untouched (docs/models.md, Numerical contracts).

Stats files use the original recipe's JSON layout ``{"action": {mean,std,min,max,q01,q99}, "proprio": {...},
"num_transitions", "num_trajectories"}``, either flat or nested under a dataset key; openpi's
``{"norm_stats": {"actions", "state"}}`` layout also loads. VLM and AE share one stats file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from wp_policy.config_io import ConfigError

EPS = 1e-6
STAT_FIELDS = ("mean", "std", "min", "max", "q01", "q99")
ACTION, PROPRIO = "action", "proprio"
_ALIASES = {ACTION: ("action", "actions"), PROPRIO: ("proprio", "state")}

NormMode = Literal["q99", "zscore"]


class StatsError(ConfigError):
    """A statistics file is missing, malformed or does not match the robot's dims."""


@dataclass(frozen=True)
class NormStats:
    """Per-dimension statistics of one vector (shape ``[D]`` each)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray

    def __post_init__(self):
        dims = {name: np.shape(getattr(self, name)) for name in STAT_FIELDS}
        if len(set(dims.values())) != 1 or len(next(iter(dims.values()))) != 1:
            raise StatsError(f"all statistics must be 1-D with the same length, got shapes {dims}")
        for name in STAT_FIELDS:
            if not np.all(np.isfinite(getattr(self, name))):
                raise StatsError(f"statistic {name!r} contains NaN or inf: {getattr(self, name).tolist()}")

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def from_dict(cls, data: dict, where: str = "stats") -> "NormStats":
        if not isinstance(data, dict):
            raise StatsError(f"{where}: expected a mapping of statistics, got {type(data).__name__}")
        missing = [f for f in STAT_FIELDS if f not in data]
        if missing:
            raise StatsError(f"{where}: missing statistic(s) {missing}; present: {sorted(data)}")
        try:
            arrays = {f: np.asarray(data[f], dtype=np.float64).reshape(-1) for f in STAT_FIELDS}
        except (TypeError, ValueError) as exc:
            raise StatsError(f"{where}: statistics must be lists of numbers ({exc})") from exc
        try:
            return cls(**arrays)
        except StatsError as exc:
            raise StatsError(f"{where}: {exc}") from None

    def to_dict(self) -> dict:
        return {f: getattr(self, f).tolist() for f in STAT_FIELDS}


def fit_stats(x: np.ndarray) -> NormStats:
    """Statistics of samples ``x [N, D]`` (N >= 1). q01/q99 are the 1st/99th percentiles (linear interpolation)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise StatsError(f"fit_stats expects a non-empty [N, D] array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        rows = np.unique(np.nonzero(~np.isfinite(x))[0])[:5].tolist()
        raise StatsError(f"fit_stats: data contains NaN or inf (first rows: {rows})")
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return NormStats(mean=x.mean(0), std=x.std(0), min=x.min(0), max=x.max(0), q01=q01, q99=q99)


@dataclass(frozen=True)
class DatasetStats:
    action: NormStats
    proprio: NormStats
    num_transitions: int = 0
    num_trajectories: int = 0

    def to_dict(self) -> dict:
        return {
            ACTION: self.action.to_dict(),
            PROPRIO: self.proprio.to_dict(),
            "num_transitions": int(self.num_transitions),
            "num_trajectories": int(self.num_trajectories),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def check_dims(self, action_dim: int, proprio_dim: int, where: str = "stats") -> "DatasetStats":
        """Raise if the stats do not match the robot's action/proprio dims (a mismatched stats file)."""
        for name, stats, want in ((ACTION, self.action, action_dim), (PROPRIO, self.proprio, proprio_dim)):
            if stats.dim != want:
                raise StatsError(f"{where}: {name} statistics have {stats.dim} dims but the robot config expects {want}")
        return self


def _pick(data: dict, key: str) -> dict | None:
    for alias in _ALIASES[key]:
        if alias in data:
            return data[alias]
    return None


def load_stats(path: str | Path, dataset_key: str | None = None) -> DatasetStats:
    """Load a stats JSON file, or the single ``dataset_statistics*.json`` inside a directory."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("dataset_statistics*.json")) or sorted(path.glob("norm_stats*.json"))
        if len(found) != 1:
            raise StatsError(
                f"{path}: expected exactly one dataset_statistics*.json in the directory, found "
                f"{[p.name for p in found]}; pass the file path instead"
            )
        path = found[0]
    if not path.is_file():
        raise StatsError(f"{path}: statistics file not found (run `wp-data stats` to compute it)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StatsError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StatsError(f"{path}: expected a JSON object at the top level")
    if "norm_stats" in data and isinstance(data["norm_stats"], dict):
        data = data["norm_stats"]
    if _pick(data, ACTION) is None and _pick(data, PROPRIO) is None:
        nested = {k: v for k, v in data.items() if isinstance(v, dict) and _pick(v, ACTION) is not None}
        if dataset_key is not None:
            if dataset_key not in nested:
                raise StatsError(f"{path}: dataset key {dataset_key!r} not found; available: {sorted(nested)}")
            data = nested[dataset_key]
        elif len(nested) == 1:
            data = next(iter(nested.values()))
        elif nested:
            raise StatsError(f"{path}: several datasets {sorted(nested)}; choose one with dataset_key")
        else:
            raise StatsError(f"{path}: no 'action'/'proprio' statistics found (top-level keys: {sorted(data)})")
    action, proprio = _pick(data, ACTION), _pick(data, PROPRIO)
    if action is None or proprio is None:
        missing = [k for k, v in ((ACTION, action), (PROPRIO, proprio)) if v is None]
        raise StatsError(f"{path}: missing {missing} statistics (keys present: {sorted(data)})")
    return DatasetStats(
        action=NormStats.from_dict(action, f"{path}: {ACTION}"),
        proprio=NormStats.from_dict(proprio, f"{path}: {PROPRIO}"),
        num_transitions=int(data.get("num_transitions", 0)),
        num_trajectories=int(data.get("num_trajectories", 0)),
    )


class Normalizer:
    """Normalise / unnormalise vectors of shape ``[..., D]`` with one NormStats, a mask and a mode."""

    def __init__(self, stats: NormStats, mask: Sequence[bool] | None = None, mode: NormMode = "q99"):
        if mode not in ("q99", "zscore"):
            raise ValueError(f"unknown normalisation mode {mode!r}; use 'q99' or 'zscore'")
        mask = np.ones(stats.dim, bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (stats.dim,):
            raise StatsError(f"normalisation mask has {mask.size} entries but the statistics have {stats.dim} dims")
        self.stats, self.mask, self.mode = stats, mask, mode
        self._const = stats.q99 == stats.q01  # q99 mode maps these dims to 0

    @property
    def dim(self) -> int:
        return self.stats.dim

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"{what}: expected last dim {self.dim}, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            dims = np.unique(np.nonzero(~np.isfinite(x.reshape(-1, self.dim)))[1]).tolist()
            raise ValueError(f"{what}: input contains NaN or inf in dims {dims}")
        return x

    def normalize(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x, "normalize")
        s = self.stats
        if self.mode == "q99":
            y = np.clip(2.0 * (x - s.q01) / (s.q99 - s.q01 + EPS) - 1.0, -1.0, 1.0)
            y = np.where(self._const, 0.0, y)
        else:
            y = (x - s.mean) / (s.std + EPS)
        return np.where(self.mask, y, x)

    def unnormalize(self, y: np.ndarray) -> np.ndarray:
        y = self._check(y, "unnormalize")
        s = self.stats
        if self.mode == "q99":
            x = 0.5 * (y + 1.0) * (s.q99 - s.q01) + s.q01
        else:
            x = y * (s.std + EPS) + s.mean
        return np.where(self.mask, x, y)
