"""Model-input transforms, written once: the training datasets and the runtime policy build model inputs only here.

A silent difference between how training prepared an input and how deployment prepares it (another image scaling,
a missing-view mask, proprio normalised before the gripper map) gives a policy that trains well and acts wrongly,
so both sides call these functions and ``tests/models/test_transforms_parity.py`` compares their outputs. The
declared order, per sample:

    images   camera rgb uint8 [h, w, 3] -> resize-with-pad to S x S -> (training only: augmentation, a hook)
             -> channels first -> x / 127.5 - 1: float32 [3, S, S]; a model key without a camera on this robot:
             zeros and IMAGE_MASKS False (its tokens stay in the sequence but are never attended)
    proprio  physical [P] -> proprio_to_model (gripper map) -> q99 normalise (proprio.norm_mask) -> zero-pad to
             the model width (START_PROPRIO / END_PROPRIO); the inverse unnormalises planned waypoints
    actions  dataset [.., A_ds] -> select_action -> action_to_model -> q99 normalise (training targets); model
             output -> clip [-1, 1] -> unnormalise -> action_to_execution (what the robot receives)
    prompt   AE: ``prompt_tokens(instruction, normalised start)``, right-padded to a fixed length in training;
             VLM: ``encode_prompt`` at inference is the prefix of ``encode_training``'s sequence
    batch    numpy samples -> :func:`collate` -> torch tensors with a leading batch dim (:mod:`wp_policy.batch`)

Statistics and the normaliser itself live in :mod:`wp_policy.normalize`, the gripper maps in the robot config,
the token layout in :mod:`wp_policy.tokenizer`; this module only composes them. ROS-free (no rclpy).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from wp_policy import batch as B
from wp_policy.image_proc import resize_with_pad
from wp_policy.normalize import NormStats, Normalizer
from wp_policy.robot_config import CameraConfig, RobotConfig
from wp_policy.tokenizer import WaypointTokenizer

# (camera, uint8 [S, S, 3]) -> float32 [S, S, 3] in [0, 1]: training-time augmentation (wp_training.datasets.augment)
ImageAugment = Callable[[CameraConfig, np.ndarray], np.ndarray]


# ---- images -------------------------------------------------------------------------------------------------------
def pixels_to_model(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [S, S, 3]`` -> ``float32 [3, S, S]`` in [-1, 1] (``x / 127.5 - 1``, channels first)."""
    out = np.empty((3, *rgb.shape[:2]), np.float32)
    np.divide(rgb.transpose(2, 0, 1), np.float32(127.5), out=out, dtype=np.float32)
    out -= np.float32(1.0)
    return out


def unit_to_model(unit: np.ndarray) -> np.ndarray:
    """An augmented ``float32 [S, S, 3]`` in [0, 1] -> ``float32 [3, S, S]`` in [-1, 1] (``2 x - 1``)."""
    return np.ascontiguousarray(unit.transpose(2, 0, 1) * np.float32(2.0) - np.float32(1.0))


def camera_masks(robot: RobotConfig, image_keys: Sequence[str], hidden: bool = False) -> dict[str, np.bool_]:
    """``IMAGE_MASKS`` of one sample: True for the model keys this robot has a camera for; all False when
    ``hidden`` (a sample trained without its images, as if the robot had no camera)."""
    have = () if hidden else {c.model_key for c in robot.cameras}
    return {key: np.bool_(key in have) for key in image_keys}


def image_inputs(robot: RobotConfig, frame_of: Callable[[CameraConfig], np.ndarray], image_keys: Sequence[str],
                 size: int, augment: ImageAugment | None = None, hidden: bool = False) -> dict:
    """``IMAGES`` (model key -> ``float32 [3, S, S]``) and ``IMAGE_MASKS`` (model key -> bool) of one sample.

    ``frame_of(camera)`` gives that camera's ``uint8 [h, w, 3]`` RGB frame (training: decoded RLDS bytes; runtime:
    the observation's view); it is called in ``image_keys`` order, and so is ``augment``, so a seeded augmentation
    draws the same numbers for the same sample. A view the robot lacks, and every view when ``hidden``, is a zero
    image with its mask False, and its frame is never read.
    """
    camera_of = {c.model_key: c for c in robot.cameras}
    masks = camera_masks(robot, image_keys, hidden)
    images = {}
    for key in image_keys:
        if not masks[key]:
            images[key] = np.zeros((3, size, size), np.float32)
            continue
        cam = camera_of[key]
        rgb = resize_with_pad(frame_of(cam), size, size)
        images[key] = pixels_to_model(rgb) if augment is None else unit_to_model(augment(cam, rgb))
    return {B.IMAGES: images, B.IMAGE_MASKS: masks}


# ---- proprio and actions ------------------------------------------------------------------------------------------
def pad_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-pad ``x`` (as float32) at the end of every axis up to ``shape``: the models' padded widths."""
    out = np.zeros(shape, np.float32)
    out[tuple(slice(0, n) for n in np.shape(x))] = x
    return out


class ProprioTransform:
    """Physical proprio ``[..., P]`` <-> normalised model proprio, for one robot and stats file (an inverse pair)."""

    def __init__(self, robot: RobotConfig, stats: NormStats):
        self.robot = robot
        self.norm = Normalizer(stats, robot.proprio.norm_mask)

    def normalize(self, proprio: np.ndarray) -> np.ndarray:
        """``float64 [..., P]``: the gripper map into model space, then q99 (``proprio.norm_mask`` dims)."""
        return self.norm.normalize(self.robot.proprio_to_model(proprio))

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        return self.robot.proprio_to_physical(self.norm.unnormalize(normalized))


class ActionTransform:
    """Dataset actions -> normalised training targets, and model output -> execution space (the inverse)."""

    def __init__(self, robot: RobotConfig, stats: NormStats):
        self.robot = robot
        self.norm = Normalizer(stats, robot.action.norm_mask)

    def normalize(self, dataset_action: np.ndarray) -> np.ndarray:
        """``[..., dataset_action_dim]`` -> ``float64 [..., action.dim]`` in the models' normalised space."""
        return self.norm.normalize(dataset_action_to_model(self.robot, dataset_action))

    def to_execution(self, actions: np.ndarray) -> np.ndarray:
        """Model actions ``[..., action.dim]`` -> clipped to [-1, 1] -> unnormalised -> what the robot receives."""
        return self.robot.action_to_execution(self.norm.unnormalize(np.clip(actions, -1.0, 1.0)))


def dataset_action_to_model(robot: RobotConfig, dataset_action: np.ndarray) -> np.ndarray:
    """Dataset actions -> model space before normalisation (what ``wp-data stats`` fits): selected dims, gripper
    mapped to [0, 1]."""
    return robot.action_to_model(robot.select_action(dataset_action))


# ---- prompts ------------------------------------------------------------------------------------------------------
def ae_prompt(tokenizer: WaypointTokenizer, instruction: str, start: np.ndarray,
              length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The AE's prompt for a normalised ``start [P]``: ``TOKENS int64 [L]`` right-padded with pad ids to
    ``length`` (None: unpadded; the model ignores padding) and ``INPUT_MASK bool [L]``; never truncated."""
    prompt = tokenizer.prompt_tokens(instruction, start)
    length = len(prompt) if length is None else length
    if len(prompt) > length:
        raise ValueError(f"prompt has {len(prompt)} tokens, more than prompt_len {length}; raise prompt_len in the "
                         "data config")
    tokens = np.full(length, tokenizer.text.pad_id, np.int64)
    tokens[: len(prompt)] = prompt
    return tokens, np.arange(length) < len(prompt)


def relative_pair(start: np.ndarray, end: np.ndarray, dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` normalised ``[P]`` as an AE with ``relative_dims`` reads them: in ``dims`` the end becomes
    ``end - start`` (clipped to [-1, 1]) and the start 0, so the pair tells only where to go from here, not where
    the arm is; other dims unchanged. On scripted demos the absolute pose shows the phase of the motion, from which
    an AE can predict the demo's actions without ever reading its end waypoint; a relative pair cannot be used
    that way."""
    if not len(dims):
        return start, end
    start, end = np.array(start, copy=True), np.array(end, copy=True)
    idx = np.asarray(dims, np.int64)
    end[idx] = np.clip(end[idx] - start[idx], -1.0, 1.0)
    start[idx] = 0.0
    return start, end


def ae_inputs(tokenizer: WaypointTokenizer, instruction: str, start: np.ndarray, end: np.ndarray, duration: int,
              proprio_width: int, prompt_len: int | None = None, relative_dims: Sequence[int] = ()) -> dict:
    """The AE's non-image inputs for one pair of normalised proprio ``[P]`` (``TOKENS``, ``INPUT_MASK``,
    ``START_PROPRIO`` / ``END_PROPRIO`` float32 ``[proprio_width]``, ``DURATION`` int64); ``relative_dims``: the
    AE config's (see :func:`relative_pair`)."""
    start, end = relative_pair(start, end, relative_dims)
    tokens, mask = ae_prompt(tokenizer, instruction, start, prompt_len)
    return {
        B.TOKENS: tokens,
        B.INPUT_MASK: mask,
        B.START_PROPRIO: pad_to(start, (proprio_width,)),
        B.END_PROPRIO: pad_to(end, (proprio_width,)),
        B.DURATION: np.int64(duration),
    }


def vlm_prompt_inputs(tokenizer: WaypointTokenizer, instruction: str, state: np.ndarray) -> dict:
    """The planner's inference prompt for a normalised ``state [P]``: ``TOKENS`` / ``INPUT_MASK`` / ``AR_MASK``
    ``[L]``, the prefix + "Action: " of the training sequence (``WaypointTokenizer.encode_training``)."""
    prompt = tokenizer.encode_prompt(instruction, state)
    return {B.TOKENS: prompt.tokens, B.INPUT_MASK: prompt.input_mask, B.AR_MASK: prompt.ar_mask}


# ---- batches ------------------------------------------------------------------------------------------------------
def collate(samples: list[dict]) -> dict:
    """Stack samples (numpy, one per example) into torch tensors with a leading batch dim; image dicts stay dicts.

    Output shapes follow :mod:`wp_policy.batch` (e.g. ``IMAGES[key] float32 [B, 3, H, W]``, ``TOKENS int64 [B, L]``).
    """
    if not samples:
        raise ValueError("collate got an empty list of samples")
    keys = set(samples[0])
    for i, s in enumerate(samples):
        if set(s) != keys:
            raise ValueError(f"sample {i} has keys {sorted(s)}, sample 0 has {sorted(keys)}")
    out = {}
    for key in samples[0]:
        first = samples[0][key]
        if isinstance(first, dict):
            out[key] = {k: _stack([s[key][k] for s in samples], f"{key}[{k!r}]") for k in first}
        else:
            out[key] = _stack([s[key] for s in samples], key)
    for key, img in out.get(B.IMAGES, {}).items():
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{B.IMAGES}[{key!r}] must be [B, 3, H, W] (channels first), got {tuple(img.shape)}")
    return out


def to_device(batch: Mapping, device: torch.device | str) -> dict:
    """``batch`` with every tensor (also inside the per-view dicts) on ``device``."""
    return {k: to_device(v, device) if isinstance(v, Mapping) else v.to(device) for k, v in batch.items()}


def _stack(values: list, name: str) -> torch.Tensor:
    shapes = {np.shape(v) for v in values}
    if len(shapes) != 1:
        raise ValueError(f"{name}: samples disagree on the shape: {sorted(shapes)}")
    return torch.from_numpy(np.stack([np.asarray(v) for v in values]))
