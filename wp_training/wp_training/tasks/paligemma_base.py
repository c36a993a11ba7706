"""What the AE and VLM training tasks share: model-size overrides, the tokenizer, parameter groups, config checks.

Both modes build a PaliGemma-based model from ``wp_policy.models`` presets (``tiny`` for CPU, ``pi05`` for the real
sizes); the YAML ``model:`` section may override whole-tower sizes (``vision: {width: 64, depth: 2}``), which is
how a CPU-trainable demo policy is made a little larger than ``tiny`` without a new preset.

Parameter names (transformers 5.x PaliGemma inside both models)::

    paligemma.model.vision_tower.*           SigLIP            -> group "vision"
    paligemma.model.multi_modal_projector.*  projector         -> group "projector"
    paligemma.model.language_model.*         Gemma (+ tied lm_head) -> group "llm"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from wp_policy.config_io import ConfigError
from wp_policy.models import build_model
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.tokenizer import TextTokenizer, TokenLayout, WaypointTokenizer
from wp_training.engine import feature_cache
from wp_training.tasks.interface import DataShard, TrainTask

PALIGEMMA_GROUPS: dict[str, tuple[str, ...]] = {
    "vision": ("paligemma.model.vision_tower.*",),
    "projector": ("paligemma.model.multi_modal_projector.*",),
    "llm": ("paligemma.model.language_model.*",),
}
# LoRA on every projection of the Gemma decoder layers (attention and MLP), as in openpi's LoRA variants.
LLM_LORA_TARGETS = (
    "paligemma.model.language_model.layers.*.self_attn.*_proj",
    "paligemma.model.language_model.layers.*.mlp.*_proj",
)


def override_spec(spec: Any, overrides: dict[str, int], where: str) -> Any:
    """``dataclasses.replace(spec, **overrides)`` with a ConfigError naming ``where`` and the allowed fields."""
    if not overrides:
        return spec
    allowed = [f.name for f in dataclasses.fields(spec)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {allowed}")
    try:
        return dataclasses.replace(spec, **overrides)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def build_model_config(factory: Callable[..., Any], preset: str, fields: dict[str, Any], where: str = "model"):
    """``factory(preset, **fields)`` (``ae_config`` / ``vlm_config``) turning a ValueError into a ConfigError."""
    try:
        return factory(preset, **fields)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def build_task_model(model_cfg) -> nn.Module:
    """The mode's model (AE or VLM, by the config's kind); with a vision cache, the first cached batch checks that
    the tower is frozen and holds the cache's weights."""
    model = build_model(model_cfg.model_config())
    if model_cfg.vision_cache:
        feature_cache.check_on_first_cached_batch(model, model_cfg.vision_cache)
    return model


def make_tokenizer(tokenizer_path: str, vocab_size: int, robot: RobotConfig, num_waypoints: int = 7,
                   max_token_len: int = 256, waypoint_dims: tuple[int, ...] = ()) -> WaypointTokenizer:
    """The same WaypointTokenizer the deployment path builds (``WaypointPolicy.from_config``)."""
    return WaypointTokenizer(TextTokenizer(tokenizer_path), TokenLayout(vocab_size), robot.proprio.dim,
                             num_waypoints, max_token_len, waypoint_dims)


def shard_stream(stream, shard: DataShard):
    """The data stream's config for ``shard``: seeded by the run seed. A repeating stream (the default) runs its
    epochs itself; a one-pass stream is rebuilt per epoch by the trainer, so the epoch goes into its seed."""
    if stream.repeat or shard.epoch == 0:
        return dataclasses.replace(stream, seed=shard.seed)
    return dataclasses.replace(stream, seed=shard.seed * 1_000_003 + shard.epoch)


def check_model_images(data_cfg, model_image_keys: tuple[str, ...], image_size: int, robot: RobotConfig,
                       where: str, vision_cache: str = "") -> dict[str, Any]:
    """The dataset's image fields follow the model: a data.image_keys / data.image_size that disagrees is an error
    (the model would reject every batch), and so is augmentation with a feature cache. Returns the fields to set on
    the data config."""
    if data_cfg.image_keys and tuple(data_cfg.image_keys) != tuple(model_image_keys):
        raise ConfigError(f"{where}: data.image_keys {list(data_cfg.image_keys)} != model image_keys "
                          f"{list(model_image_keys)}; leave data.image_keys empty (it follows the model)")
    if data_cfg.image_size not in (224, image_size):  # 224 is the dataclass default: "not set"
        raise ConfigError(f"{where}: data.image_size {data_cfg.image_size} != the model's vision image_size "
                          f"{image_size}; leave it unset")
    if data_cfg.augment.enabled and vision_cache:
        raise ConfigError(f"{where}: data.augment.enabled needs images, but model.vision_cache replaces them by "
                          "features of un-augmented frames; switch one of them off")
    cams = {c.model_key for c in robot.cameras}
    if not cams & set(model_image_keys):
        raise ConfigError(f"{where}: model image_keys {list(model_image_keys)} contain no camera of robot "
                          f"{robot.robot_type} ({sorted(cams)})")
    return {"image_keys": tuple(model_image_keys), "image_size": image_size}


def robot_of(data_cfg, source: str = "data") -> RobotConfig:
    try:
        return load_robot_config(data_cfg.robot)
    except (ConfigError, FileNotFoundError) as exc:
        raise ConfigError(f"{source}: data.robot: {exc}") from exc


@dataclass(frozen=True)
class ModelTrainTask(TrainTask):
    """A TrainTask whose parsed configs get a cross-check (model vs data section) right after parsing, so a
    mismatch is a config error before any model is built. ``resolve(model_cfg, data_cfg, source)`` returns the
    (possibly completed) configs."""

    resolve: Callable[[Any, Any, str], tuple[Any, Any]] | None = None

    def parse_configs(self, model_section: dict, data_section: dict, source: str) -> tuple[Any, Any]:
        model_cfg, data_cfg = super().parse_configs(model_section, data_section, source)
        return self.resolve(model_cfg, data_cfg, source) if self.resolve else (model_cfg, data_cfg)
