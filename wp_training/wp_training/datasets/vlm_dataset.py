"""VLM planner samples, streamed from the waypoint-filtered RLDS written by ``wp-data extract-waypoints``.

Each episode there holds only its waypoint steps ``k = 0 .. K-1`` (``K - 1`` is the episode's last frame), each
with ``duration[k]`` = steps to the next waypoint (0 on the last). A sample observes waypoint step ``k`` (images,
normalised proprio as the prompt state) for every ``stride``-th k, starting at an offset drawn per episode and
epoch, so all steps are seen across epochs. Targets are the next ``M = tokenizer.num_waypoints`` waypoints:

  target j = 1, 2, ...:  proprio[k + j] with d_j = duration[k + j - 1]  (steps from the previous waypoint)

**Episode end.** When the last waypoint ``K - 1`` is reached before M targets, one more target follows it: the
*stop waypoint* ``(proprio[K - 1], d = 0)``, and the sequence ends there ("|" EOS). The stop waypoint is a normal
CE target (its proprio bins and its d = 0 token), so the planner learns to say "done" exactly where
demonstrations end, and the runtime stops on any d = 0 (docs/ros_graph.md). Observing the last frame itself gives a
single-target sample: just the stop. Durations above the token layout's maximum (33) are clipped to it (only
possible when extraction ran without ``max_segment``); the first clip in a worker is logged.

Per sample (:mod:`wp_policy.batch` keys): IMAGES / IMAGE_MASKS at step k, and TOKENS / INPUT_MASK / AR_MASK /
LOSS_MASK ``[max_token_len]`` from ``WaypointTokenizer.encode_training``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from wp_policy import batch as B
from wp_policy.robot_config import RobotConfig
from wp_policy.tokenizer import WaypointTokenizer
from wp_policy.transforms import camera_masks
from wp_training.data.stats import episode_proprio
from wp_training.datasets.augment import AugmentConfig
from wp_training.datasets.collate import sample_image_inputs
from wp_training.datasets.robot_stream import RobotSampleStream
from wp_training.datasets.sample_stream import StreamConfig
from wp_training.engine.feature_cache import FeatureStore, cached_image_fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VLMDataConfig:
    rlds_dir: str  # the waypoint-filtered RLDS (directory holding dataset_info.json)
    stats_path: str  # the same stats file as the AE
    split: str = "train"
    stride: int = 4  # observe every stride-th waypoint step
    image_size: int = 224
    image_keys: tuple[str, ...] = ()  # the model's image keys in order; empty: this robot's camera model_keys
    stream: StreamConfig = field(default_factory=StreamConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training-time image augmentation (off)
    # std of Gaussian noise on the prompt state (normalised units, clipped to [-1, 1]; 0: off). The targets stay
    # exact, so the planner cannot read where to go off the arm's own state and has to look at the images.
    state_noise: float = 0.0
    # std of Gaussian noise on the waypoints the planner reads back as its own earlier output under teacher forcing
    # (normalised units, clipped to [-1, 1]; 0: off). The targets stay exact: a plan can then not be extrapolated
    # from its first, exactly given waypoints, and where the object is has to come from the images.
    history_noise: float = 0.0

    def __post_init__(self):
        if self.stride < 1 or self.image_size < 1:
            raise ValueError(f"stride ({self.stride}) and image_size ({self.image_size}) must be >= 1")
        if not 0.0 <= self.state_noise <= 1.0:
            raise ValueError(f"state_noise must be in [0, 1] (normalised units), got {self.state_noise}")
        if not 0.0 <= self.history_noise <= 1.0:
            raise ValueError(f"history_noise must be in [0, 1] (normalised units), got {self.history_noise}")


def waypoint_targets(proprio: np.ndarray, durations: np.ndarray, k: int, num_waypoints: int):
    """Targets when observing waypoint step ``k``: ``(proprio [n, P], durations [n])``, n <= num_waypoints.

    ``proprio [K, P]`` / ``durations [K]`` are the episode's waypoint steps; see the module docstring for the
    stop waypoint that follows the last one.
    """
    last = len(durations) - 1
    if not 0 <= k <= last:
        raise ValueError(f"step {k} out of range for an episode of {last + 1} waypoint steps")
    rows = np.arange(k + 1, k + 1 + num_waypoints)
    rows = rows[rows - 1 <= last]  # up to and including the stop target after the last waypoint
    return proprio[np.minimum(rows, last)], durations[rows - 1]


class WaypointVLMDataset(RobotSampleStream):
    """Streams VLM samples (see the module docstring); checks dataset, stats and robot on construction."""

    def __init__(self, cfg: VLMDataConfig, robot: RobotConfig, tokenizer: WaypointTokenizer,
                 rank: int | None = None, world_size: int | None = None,
                 features: FeatureStore | None = None):
        super().__init__(cfg.rlds_dir, cfg.split, cfg.stream, rank, world_size)
        self.bind_robot(cfg, robot, tokenizer, features)
        if "duration" not in self.reader.layout.step_fields:
            raise ValueError(f"{self.reader.dir}: no steps/duration field, so this is not a waypoint-filtered RLDS; "
                             f"point rlds_dir at the output of `wp-data extract-waypoints`")
        self.step_keys = ("language_instruction", "duration")
        self._clip_logged = False
        self._lengths: np.ndarray | None = None

    def epoch_size(self, start: int, stop: int, epoch: int) -> int:
        """From the episodes' waypoint counts (read once, durations only) and each episode's stride offset."""
        if self._lengths is None:
            self._lengths = np.array([len(ep["duration"]) for _, ep in
                                      self.reader.episodes(observation_keys=(), step_keys=("duration",))])
        stride = self.cfg.stride
        return sum(len(range(int(self.episode_rng(epoch, i).integers(stride)), int(self._lengths[i]), stride))
                   for i in range(start, stop))

    def episode_samples(self, index: int, episode: dict, rng: np.random.Generator) -> Iterator[dict]:
        where = f"{self.reader.dir}: episode {index}"
        durations = np.asarray(episode["duration"], np.int64)
        if durations.size == 0 or durations[-1] != 0 or np.any(durations[:-1] <= 0):
            raise ValueError(f"{where}: durations must be positive with 0 on the last waypoint, got "
                             f"{durations.tolist()[:10]}")
        limit = self.tokenizer.layout.max_duration
        if durations.max() > limit and not self._clip_logged:
            log.warning("%s: durations up to %d clipped to %d", where, durations.max(), limit)
            self._clip_logged = True
        durations = np.minimum(durations, limit)
        try:
            proprio = self.proprio.normalize(episode_proprio(episode, self.robot))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        cams = [] if self.features is not None else [c.rlds_key for c in self.robot.cameras]
        noise = self.cfg.state_noise
        for k in range(int(rng.integers(self.cfg.stride)), len(durations), self.cfg.stride):  # the offset draw
            target_p, target_d = waypoint_targets(proprio, durations, k, self.tokenizer.num_waypoints)
            state = proprio[k] if not noise else np.clip(proprio[k] + rng.normal(0.0, noise, proprio.shape[1]), -1, 1)
            history = None
            if self.cfg.history_noise:
                history = np.clip(target_p + rng.normal(0.0, self.cfg.history_noise, target_p.shape), -1, 1)
            yield {
                "episode": index,
                "step": k,
                "where": f"{where}, step {k}",
                "instruction": episode["language_instruction"],
                "images": {c: episode["observation"][c][k] for c in cams},
                "state": state,
                "target_proprio": target_p,
                "target_durations": target_d,
                "history_proprio": history,
            }

    def image_steps(self, index: int, length: int) -> np.ndarray:
        """Steps of episode ``index`` whose images a sample can use (every waypoint step, since the stride offset
        changes per epoch): what the feature cache stores."""
        return np.arange(length)

    def finalize(self, raw: dict) -> dict:
        try:
            seq = self.tokenizer.encode_training(raw["instruction"], raw["state"], raw["target_proprio"],
                                                 raw["target_durations"])
            read = None if raw["history_proprio"] is None else self.tokenizer.encode_training(
                raw["instruction"], raw["state"], raw["history_proprio"], raw["target_durations"])
        except ValueError as exc:
            raise ValueError(f"{raw['where']}: {exc}") from None
        sample = {
            **self.image_fields(raw),
            B.TOKENS: seq.tokens if read is None else read.tokens,
            B.INPUT_MASK: seq.input_mask,
            B.AR_MASK: seq.ar_mask,
            B.LOSS_MASK: seq.loss_mask,
        }
        if read is not None:  # the same layout token for token: only proprio bins differ
            sample[B.TARGET_TOKENS] = seq.tokens
        return sample

    def image_fields(self, raw: dict) -> dict:
        """IMAGES + IMAGE_MASKS decoded from the sample's camera bytes, or the cached FEATURES + IMAGE_MASKS."""
        if self.features is not None:
            return cached_image_fields(self.features, raw, camera_masks(self.robot, self.image_keys))
        return sample_image_inputs(raw, self.robot, self.image_keys, self.cfg.image_size, self.cfg.augment,
                                   self.stream.seed)
