"""Action Expert training pairs, streamed from the original RLDS and ``waypoint_indices.json``.

A sample is one pair of consecutive waypoints ``(a, b)`` of an episode with duration ``d = b - a`` in
``1..max_duration`` (longer pairs are skipped: the AE fills at most ``HORIZON`` steps). Per sample
(:mod:`wp_policy.batch` keys; shapes before collation):

  IMAGES[model_key]   float32 [3, S, S]  the cameras at step a, resized with padding, in [-1, 1]
  IMAGE_MASKS[key]    bool               False for a model view this robot lacks (zeros image)
  TOKENS, INPUT_MASK  int64 / bool [prompt_len]  ``tokenizer.prompt_tokens(instruction, start proprio)``, right-padded
  START_PROPRIO       float32 [32]       proprio at a: proprio_to_model -> normalise (proprio.norm_mask) -> zero-pad
  END_PROPRIO         float32 [32]       the same at b (with the model's relative_dims: end - start there, and
                                         START_PROPRIO and the prompt's state 0 there)
  ACTIONS             float32 [32, 32]   actions a .. b-1: select_action -> action_to_model -> normalise
                                         (action.norm_mask) -> zero-pad steps >= d and dims >= action.dim
  STEP_MASK           bool [32]          t < d
  DIM_MASK            bool [32]          dim < action.dim
  DURATION            int64              d

``mid_pair_starts`` moves the start of a share of the samples to a random step inside the pair (uniform over
``a+1 .. b-1``, duration ``b - s``; images and start proprio at that step). At deployment each pair is filled from
the pose measured when it starts (``replan.pair_start: measured``), and an arm that lags its plan is there part of
the way along the pair, not at its first waypoint: with these samples the AE has been taught to cover the remaining
way in the remaining time, and since one end waypoint now comes with several starts and durations, it has to read
them rather than the motion's phase in the images. The share is per sample and seeded like ``image_dropout``.

``image_dropout`` hides every view of a share of the samples (their ``IMAGE_MASKS`` all False and their images zero,
so the model attends to no image token; their frames are not decoded). Without it the AE can predict a scripted
demo's actions from the images alone, since the images show the phase of the motion, and learn to ignore its end
waypoint; a sample without images can only be explained from start, end and duration, so the AE has to follow the
waypoints it is given.

Every field but the training targets is built by :mod:`wp_policy.transforms`, the functions the deployment path
(:mod:`wp_policy.runtime.policy`) calls too, so a trained AE sees the same numbers at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from wp_policy import batch as B
from wp_policy.robot_config import RobotConfig
from wp_policy.tokenizer import WaypointTokenizer
from wp_policy.transforms import ActionTransform, ae_inputs, camera_masks, pad_to
from wp_training.data.extract import WaypointIndex
from wp_training.data.stats import episode_proprio
from wp_training.datasets.augment import AugmentConfig
from wp_training.datasets.collate import sample_image_inputs
from wp_training.datasets.robot_stream import RobotSampleStream
from wp_training.datasets.sample_stream import StreamConfig
from wp_training.engine.feature_cache import FeatureStore, cached_image_fields


@dataclass(frozen=True)
class AEDataConfig:
    rlds_dir: str  # the original RLDS (directory holding dataset_info.json)
    waypoint_indices: str  # waypoint_indices.json (or its directory)
    stats_path: str  # shared stats JSON written by `wp-data stats`
    split: str = "train"
    max_duration: int = B.MAX_DURATION
    prompt_len: int = 64  # TOKENS length; a longer prompt is an error, never truncated
    image_size: int = 224
    image_keys: tuple[str, ...] = ()  # the model's image keys in order; empty: this robot's camera model_keys
    stream: StreamConfig = field(default_factory=StreamConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training-time image augmentation (off)
    image_dropout: float = 0.0  # share of samples trained without their images (seeded per episode; 0: off)
    mid_pair_starts: float = 0.0  # share of samples starting at a random step inside their pair (0: off)
    relative_dims: tuple[int, ...] = ()  # the model's relative_dims (set by the AE task from model.relative_dims)

    def __post_init__(self):
        for name in ("image_dropout", "mid_pair_starts"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.max_duration <= B.HORIZON:
            raise ValueError(f"max_duration must be in 1..{B.HORIZON} (the AE horizon), got {self.max_duration}")
        if self.prompt_len < 2 or self.image_size < 1:
            raise ValueError(f"prompt_len ({self.prompt_len}) must be >= 2 and image_size ({self.image_size}) >= 1")


class WaypointAEDataset(RobotSampleStream):
    """Streams AE samples (see the module docstring); checks dataset, index, stats and robot on construction."""

    def __init__(self, cfg: AEDataConfig, robot: RobotConfig, tokenizer: WaypointTokenizer,
                 rank: int | None = None, world_size: int | None = None,
                 features: FeatureStore | None = None):
        super().__init__(cfg.rlds_dir, cfg.split, cfg.stream, rank, world_size)
        if robot.action.dim > B.MODEL_ACTION_DIM or robot.proprio.dim > B.MODEL_PROPRIO_DIM:
            raise ValueError(f"robot {robot.robot_type}: action ({robot.action.dim}) / proprio ({robot.proprio.dim}) "
                             f"dims exceed the model's {B.MODEL_ACTION_DIM} / {B.MODEL_PROPRIO_DIM}")
        stats = self.bind_robot(cfg, robot, tokenizer, features)
        self.actions = ActionTransform(robot, stats.action)
        self.index = WaypointIndex.load(cfg.waypoint_indices)
        if self.reader.num_episodes != len(self.index.lengths):
            raise ValueError(f"{self.reader.dir} has {self.reader.num_episodes} episodes in split {cfg.split!r} but "
                             f"{cfg.waypoint_indices} lists {len(self.index.lengths)}; they come from different data")
        self.step_keys = ("action", "language_instruction")
        self.dim_mask = np.arange(B.MODEL_ACTION_DIM) < robot.action.dim
        self.pairs_per_episode = np.array([np.sum(np.diff(w) <= cfg.max_duration) for w in self.index.waypoints])

    @property
    def num_pairs(self) -> int:
        """Samples in one pass over the whole split (all ranks together)."""
        return int(self.pairs_per_episode.sum())

    def epoch_size(self, start: int, stop: int, epoch: int) -> int:
        return int(self.pairs_per_episode[start:stop].sum())

    def episode_samples(self, index: int, episode: dict, rng: np.random.Generator) -> Iterator[dict]:
        where = f"{self.reader.dir}: episode {index}"
        w = self.index.check_episode(index, len(episode["action"]), str(self.reader.dir))
        try:
            proprio = self.proprio.normalize(episode_proprio(episode, self.robot))
            actions = self.actions.normalize(episode["action"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        cams = [] if self.features is not None else [c.rlds_key for c in self.robot.cameras]
        for a, b in zip(w[:-1].tolist(), w[1:].tolist()):
            if b - a > self.cfg.max_duration:
                continue
            hide = bool(self.cfg.image_dropout) and bool(rng.random() < self.cfg.image_dropout)
            if b - a > 1 and self.cfg.mid_pair_starts and rng.random() < self.cfg.mid_pair_starts:
                a = int(rng.integers(a + 1, b))
            yield {
                "episode": index,
                "step": a,
                "where": f"{where}, pair (start {a}, end {b})",
                "instruction": episode["language_instruction"],
                "images": {} if hide else {k: episode["observation"][k][a] for k in cams},
                "start": proprio[a],
                "end": proprio[b],
                "actions": actions[a:b],
                "hide_images": hide,
            }

    def image_steps(self, index: int, length: int) -> np.ndarray:
        """Steps of episode ``index`` whose images a sample can use (pair starts, and with ``mid_pair_starts`` every
        step inside a pair): what the feature cache stores."""
        w = self.index.waypoints[index]
        kept = np.diff(w) <= self.cfg.max_duration
        starts, ends = w[:-1][kept], w[1:][kept]
        if not self.cfg.mid_pair_starts:
            return starts
        return np.concatenate([starts[:0], *(np.arange(a, b) for a, b in zip(starts, ends))])  # [] if none kept

    def finalize(self, raw: dict) -> dict:
        d = len(raw["actions"])
        try:
            inputs = ae_inputs(self.tokenizer, raw["instruction"], raw["start"], raw["end"], d, B.MODEL_PROPRIO_DIM,
                               self.cfg.prompt_len, self.cfg.relative_dims)
        except ValueError as exc:
            raise ValueError(f"{raw['where']}: {exc}") from None
        images = self.image_fields(raw)
        return {
            **images,
            **inputs,
            B.ACTIONS: pad_to(raw["actions"], (B.HORIZON, B.MODEL_ACTION_DIM)),
            B.STEP_MASK: np.arange(B.HORIZON) < d,
            B.DIM_MASK: self.dim_mask.copy(),
        }

    def image_fields(self, raw: dict) -> dict:
        """IMAGES + IMAGE_MASKS decoded from the sample's camera bytes, or the cached FEATURES + IMAGE_MASKS; a
        hidden sample (``image_dropout``) gets every mask False and, from pixels, zero images like a view the robot
        lacks, without decoding or augmenting its frames."""
        if self.features is not None:
            return cached_image_fields(self.features, raw, camera_masks(self.robot, self.image_keys,
                                                                        raw["hide_images"]))
        return sample_image_inputs(raw, self.robot, self.image_keys, self.cfg.image_size, self.cfg.augment,
                                   self.stream.seed, raw["hide_images"])
