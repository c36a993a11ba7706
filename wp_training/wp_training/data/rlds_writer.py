"""Write RLDS episodes as real TFDS datasets in a robot config's layout (LIBERO's, R1 Lite's, ...).

Writing goes through TFDS (a GeneratorBasedBuilder), so the files are ordinary TFDS datasets that
``tfds.builder_from_directory`` and :mod:`wp_training.data.rlds_reader` both read. The layout is
:mod:`wp_training.data.rlds_layout`'s.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

from wp_policy.image_proc import encode_jpeg
from wp_policy.robot_config import RobotConfig
from wp_training.data.rlds_layout import (
    EPISODE_KEYS,
    JPEG_QUALITY,
    ImageSize,
    RldsError,
    RldsLayout,
    layout_for_robot,
    resolve_dataset_dir,
    tf_modules,
)


def write_rlds(
    out_dir: str | Path,
    episodes: Iterable[dict],
    robot: RobotConfig,
    name: str,
    image_size: ImageSize = 256,
    version: str = "1.0.0",
    *,
    image_encoding: str = "jpeg",
    step_fields: Mapping[str, str] | None = None,
    overwrite: bool = False,
    description: str | None = None,
) -> Path:
    """Write ``episodes`` as a TFDS RLDS dataset; returns ``out_dir/name/version`` (it holds dataset_info.json).

    Each episode: ``{"observation": {key: array [T, ...]}, "action": float [T, dataset_action_dim],
    "language_instruction": str, "success": bool (optional, default True), "file_path": str (optional)}`` plus one
    ``[T]`` array per ``step_fields`` entry (name -> dtype). Observation keys are each camera's ``rlds_key``
    (``uint8 [T, H, W, 3]``, or a length-T sequence of bytes already encoded in ``image_encoding``, copied as is)
    and each ``robot.state_keys`` entry (``float [T, d]``; d is taken from the first episode). Episodes keep their
    order on disk (shuffling disabled), so episode i here is episode i for every reader.
    """
    out_dir = Path(out_dir)
    target = out_dir / name / version
    if target.exists():
        if not overwrite:
            raise RldsError(f"{target} already exists; remove it, choose another name, or pass overwrite=True")
        shutil.rmtree(target)
    iterator = iter(episodes)
    first = next(iterator, None)
    if first is None:
        raise RldsError(f"no episodes to write to {target}")
    layout = layout_for_robot(robot, _state_dims(first, robot), image_size, image_encoding, step_fields)
    examples = ((i, _episode_example(ep, layout, i)) for i, ep in enumerate(chain([first], iterator)))
    builder = _builder_class()(
        name=name, version=version, features=layout.features(), split_datasets={"train": examples},
        data_dir=str(out_dir), disable_shuffling=True,
        description=description
        or f"RLDS episodes for robot {robot.robot_type} (written by wp_training.data.rlds_writer)",
    )
    with tempfile.TemporaryDirectory(prefix="wp_rlds_dl_") as scratch:
        builder.download_and_prepare(download_dir=scratch)
    return resolve_dataset_dir(target)


@functools.cache
def _builder_class():
    """TFDS' AdhocBuilder (a GeneratorBasedBuilder fed by an iterable), adjusted for programmatic use."""
    _, tfds = tf_modules()

    class RldsBuilder(tfds.dataset_builders.AdhocBuilder, skip_registration=True):
        # tfds 4.9 resolves a builder's source file through the `importlib_resources` backport, which Python 3.9+
        # installs do not carry; a programmatic builder has no source file or download checksums to find.
        code_path = None

        def _log_download_bytes(self):  # tfds prints "Downloading and preparing" banners to stdout
            pass

        def _log_download_done(self):
            pass

    return RldsBuilder


def _state_dims(episode: dict, robot: RobotConfig) -> dict[str, int]:
    obs = episode.get("observation") if isinstance(episode, dict) else None
    if not isinstance(obs, dict):
        raise RldsError("episode 0: expected a dict with an 'observation' dict")
    missing = [k for k in robot.state_keys if k not in obs]
    if missing:
        raise RldsError(f"episode 0: observation lacks state key(s) {missing} (has {sorted(obs)})")
    dims = {}
    for k in robot.state_keys:
        a = np.asarray(obs[k])
        if a.ndim != 2:
            raise RldsError(f"episode 0: observation[{k!r}] must be [T, d], got shape {a.shape}")
        dims[k] = a.shape[1]
    return dims


def _episode_example(ep: dict, layout: RldsLayout, index: int) -> dict:
    """Validate one episode and turn it into the TFDS example dict (a list of step dicts)."""
    where = f"episode {index}"
    if not isinstance(ep, dict):
        raise RldsError(f"{where}: expected a dict, got {type(ep).__name__}")
    unknown = set(ep) - set(EPISODE_KEYS) - set(layout.step_fields)
    missing = {"observation", "action", "language_instruction", *layout.step_fields} - set(ep)
    if unknown or missing:
        raise RldsError(f"{where}: unknown key(s) {sorted(unknown)}, missing key(s) {sorted(missing)}; "
                        f"expected {list(EPISODE_KEYS[:3])} (+ success, file_path, {list(layout.step_fields)})")
    action = _float_array(ep["action"], (layout.action_dim,), f"{where}: action")
    n = len(action)
    if n == 0:
        raise RldsError(f"{where}: has no steps")
    obs = ep["observation"]
    missing = [k for k in (*layout.image_shapes, *layout.state_dims) if k not in obs]
    if missing:
        raise RldsError(f"{where}: observation lacks key(s) {missing} (has {sorted(obs)})")
    states = {k: _float_array(obs[k], (d,), f"{where}: observation[{k!r}]") for k, d in layout.state_dims.items()}
    images = {k: _encoded_images(obs[k], s, layout.image_encoding, f"{where}: observation[{k!r}]")
              for k, s in layout.image_shapes.items()}
    extras = {k: np.asarray(ep[k]).astype(t) for k, t in layout.step_fields.items()}
    for key, arr in chain(states.items(), images.items(), extras.items()):
        if len(arr) != n:
            raise RldsError(f"{where}: {key} has {len(arr)} steps but action has {n}")
    text = ep["language_instruction"]
    if not isinstance(text, str):
        raise RldsError(f"{where}: language_instruction must be a str, got {type(text).__name__}")
    success = bool(ep.get("success", True))
    steps = []
    for t in range(n):
        last = t == n - 1
        steps.append({
            "observation": {**{k: v[t] for k, v in images.items()}, **{k: v[t] for k, v in states.items()}},
            "action": action[t],
            "language_instruction": text,
            "reward": np.float32(1.0 if last and success else 0.0),
            "discount": np.float32(1.0),
            "is_first": t == 0,
            "is_last": last,
            "is_terminal": last and success,
            **{k: v[t] for k, v in extras.items()},
        })
    meta = {"file_path": str(ep.get("file_path", f"episode_{index}")), "success": success}
    return {"steps": steps, "episode_metadata": meta}


def _float_array(value: Any, tail: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float32)
    if a.ndim != 1 + len(tail) or a.shape[1:] != tail:
        raise RldsError(f"{what}: expected shape [T, {', '.join(map(str, tail))}], got {a.shape}")
    if not np.all(np.isfinite(a)):
        rows = np.unique(np.nonzero(~np.isfinite(a))[0])[:5].tolist()
        raise RldsError(f"{what}: contains NaN or inf (first steps: {rows})")
    return a


def _encoded_images(value: Any, shape: tuple[int, int, int], encoding: str, what: str) -> list[bytes]:
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.dtype != np.uint8 or value.shape[1:] != shape:
            raise RldsError(f"{what}: expected uint8 [T, {shape[0]}, {shape[1]}, 3], got {value.dtype} {value.shape}")
        return [encode_image(img, encoding) for img in value]
    frames = list(value)
    if not all(isinstance(f, (bytes, bytearray, np.bytes_)) for f in frames):
        raise RldsError(f"{what}: expected a uint8 image array or a sequence of encoded image bytes")
    return [bytes(f) for f in frames]


def encode_image(rgb: np.ndarray, encoding: str = "jpeg") -> bytes:
    """``uint8 [H, W, 3]`` RGB -> JPEG (quality 95, as TFDS writes) or PNG bytes."""
    if encoding == "jpeg":
        return encode_jpeg(rgb, quality=JPEG_QUALITY)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RldsError("PNG encoding failed")
    return buf.tobytes()
