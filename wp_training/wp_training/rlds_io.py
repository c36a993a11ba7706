"""RLDS episodes as real TFDS datasets: write them in LIBERO's / R1 Lite's layout, read them back as numpy.

Layout (one TFDS example per episode; feature names come from the robot config):

  steps (tfds Dataset), per step:
    observation/<camera rlds_key>   Image uint8 [H, W, 3], JPEG (default) or PNG (lossless)
    observation/<state key>         Tensor float32 [d], one per ``robot.state_keys`` entry
    action                          Tensor float32 [dataset_action_dim]
    language_instruction            Text
    reward, discount                float32: reward 1 on the last step of a successful episode, discount 1
    is_first, is_last, is_terminal  bool: is_terminal = is_last and the episode succeeded
    <step fields>                   optional scalars (the waypoint-filtered RLDS adds ``duration``, ``source_step``)
  episode_metadata: file_path (Text), success (bool)

For the LIBERO config this is the ``*_no_noops`` layout (observation/image, observation/wrist_image,
observation/state [8], action [7]); for R1 Lite the three ``image_camera_*`` views, the four joint/gripper state
keys and the 26-D action. Readers take the directory that directly contains ``dataset_info.json`` (what
``tfds.builder_from_directory`` needs); :func:`resolve_dataset_dir` names the right subdirectory when given a parent.

Writing goes through TFDS (a GeneratorBasedBuilder), so the files are ordinary TFDS datasets. Reading does not
import TensorFlow: it takes the layout from ``features.json``, the shards from ``dataset_info.json`` and decodes
the ``tf.train.Example`` records itself (protobuf wire format; TFDS stores a step sequence as one flat list per
field, e.g. ``steps/observation/state`` = T x 8 floats). That keeps DataLoader workers light (they fork in
milliseconds and never touch TensorFlow, which is not fork-safe), parses only the requested fields, and leaves
images encoded until a caller decodes the few it needs. Tests check it against ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from wp_policy.image_proc import decode_jpeg, encode_jpeg
from wp_policy.robot_config import RobotConfig

DATASET_INFO = "dataset_info.json"
ENCODINGS = ("jpeg", "png")
JPEG_QUALITY = 95
DERIVED_STEP_KEYS = ("reward", "discount", "is_first", "is_last", "is_terminal")
EPISODE_KEYS = ("observation", "action", "language_instruction", "success", "file_path")
_STEP_FIELD_DTYPES = ("int32", "int64", "float32", "bool")


class RldsError(ValueError):
    """An RLDS directory or episode is missing, malformed or does not match the robot config."""


def _tf_modules():
    """Import TensorFlow + TFDS quietly and keep TF off the GPUs (the GPUs belong to torch)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised in this process: too late to change, and nothing to do
        pass
    tfds.disable_progress_bar()
    return tf, tfds


def resolve_dataset_dir(path: str | Path) -> Path:
    """``path`` if it directly contains dataset_info.json; otherwise an error naming the directory to use."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RldsError(f"{path}: RLDS dataset directory not found")
    if (path / DATASET_INFO).is_file():
        return path
    found = sorted({p.parent for pattern in ("*/", "*/*/", "*/*/*/") for p in path.glob(pattern + DATASET_INFO)})
    if found:
        rest = f" (other candidates: {', '.join(map(str, found[1:4]))})" if len(found) > 1 else ""
        raise RldsError(
            f"{path} does not directly contain {DATASET_INFO}; TFDS needs the version directory that does. "
            f"Point at {found[0]}{rest}"
        )
    raise RldsError(f"{path}: no {DATASET_INFO} here or up to three levels below; this is not a TFDS/RLDS dataset")


# ---- layout -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RldsLayout:
    """What a dataset's steps hold (read from its features, or built for writing)."""

    image_shapes: Mapping[str, tuple[int, int, int]]  # camera rlds_key -> (H, W, 3)
    image_encoding: str
    state_dims: Mapping[str, int]  # non-image observation key -> dim
    action_dim: int
    step_fields: Mapping[str, str]  # extra scalar step field -> dtype name

    def features(self):
        """The TFDS FeaturesDict of this layout."""
        _, tfds = _tf_modules()
        F = tfds.features
        observation = {k: F.Image(shape=s, dtype=np.uint8, encoding_format=self.image_encoding)
                       for k, s in self.image_shapes.items()}
        observation.update({k: F.Tensor(shape=(d,), dtype=np.float32) for k, d in self.state_dims.items()})
        steps = {
            "observation": F.FeaturesDict(observation),
            "action": F.Tensor(shape=(self.action_dim,), dtype=np.float32),
            "language_instruction": F.Text(),
            "reward": F.Scalar(dtype=np.float32),
            "discount": F.Scalar(dtype=np.float32),
            **{k: F.Scalar(dtype=np.bool_) for k in ("is_first", "is_last", "is_terminal")},
            **{k: F.Scalar(dtype=np.dtype(t)) for k, t in self.step_fields.items()},
        }
        return F.FeaturesDict({
            "steps": F.Dataset(steps),
            "episode_metadata": F.FeaturesDict({"file_path": F.Text(), "success": F.Scalar(dtype=np.bool_)}),
        })

    def check_robot(self, robot: RobotConfig, where: str, cameras: bool = True) -> None:
        """Raise RldsError listing every way this dataset does not fit ``robot``."""
        problems = []
        if cameras:
            missing = [c.rlds_key for c in robot.cameras if c.rlds_key not in self.image_shapes]
            if missing:
                problems.append(f"camera key(s) {missing} missing (images present: {sorted(self.image_shapes)})")
        missing = [k for k in robot.state_keys if k not in self.state_dims]
        if missing:
            problems.append(f"state key(s) {missing} missing (present: {sorted(self.state_dims)})")
        elif sum(self.state_dims[k] for k in robot.state_keys) <= max(robot.proprio.indices):
            total = sum(self.state_dims[k] for k in robot.state_keys)
            problems.append(f"state keys {list(robot.state_keys)} hold {total} dims, proprio.indices need "
                            f"{max(robot.proprio.indices) + 1}")
        if self.action_dim != robot.dataset_action_dim:
            problems.append(f"action has {self.action_dim} dims, robot {robot.robot_type} expects "
                            f"dataset_action_dim {robot.dataset_action_dim}")
        if problems:
            raise RldsError(f"{where}: does not match robot config {robot.robot_type!r}: " + "; ".join(problems))


ImageSize = int | tuple[int, int] | Mapping[str, tuple[int, int]]


def layout_for_robot(
    robot: RobotConfig,
    state_dims: Mapping[str, int],
    image_size: ImageSize,
    image_encoding: str = "jpeg",
    step_fields: Mapping[str, str] | None = None,
) -> RldsLayout:
    """The layout :func:`write_rlds` uses; ``image_size``: one square side, one ``(H, W)``, or one per rlds_key."""
    shapes = {}
    for cam in robot.cameras:
        size = image_size.get(cam.rlds_key) if isinstance(image_size, Mapping) else image_size
        if size is None:
            raise RldsError(f"image_size has no entry for camera {cam.rlds_key!r}")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h <= 0 or w <= 0:
            raise RldsError(f"image_size must be positive, got {size} for camera {cam.rlds_key!r}")
        shapes[cam.rlds_key] = (int(h), int(w), 3)
    if image_encoding not in ENCODINGS:
        raise RldsError(f"image_encoding must be one of {list(ENCODINGS)}, got {image_encoding!r}")
    fields = dict(step_fields or {})
    bad = {k: t for k, t in fields.items() if t not in _STEP_FIELD_DTYPES}
    if bad:
        raise RldsError(f"step field dtypes {bad} not supported; use {list(_STEP_FIELD_DTYPES)}")
    clash = set(fields) & {*DERIVED_STEP_KEYS, "observation", "action", "language_instruction"}
    if clash:
        raise RldsError(f"step field name(s) {sorted(clash)} are reserved by the RLDS layout")
    return RldsLayout(
        image_shapes=shapes,
        image_encoding=image_encoding,
        state_dims={k: int(state_dims[k]) for k in robot.state_keys},
        action_dim=robot.dataset_action_dim,
        step_fields=fields,
    )


# ---- writing ----------------------------------------------------------------------------------------------------
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
        description=description or f"RLDS episodes for robot {robot.robot_type} (written by wp_training.rlds_io)",
    )
    with tempfile.TemporaryDirectory(prefix="wp_rlds_dl_") as scratch:
        builder.download_and_prepare(download_dir=scratch)
    return resolve_dataset_dir(target)


@functools.cache
def _builder_class():
    """TFDS' AdhocBuilder (a GeneratorBasedBuilder fed by an iterable), adjusted for programmatic use."""
    _, tfds = _tf_modules()

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


def decode_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG bytes from a dataset -> ``uint8 [H, W, 3]`` RGB."""
    return decode_jpeg(data)


# ---- reading (no TensorFlow) ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    """One leaf feature of features.json: where it sits, what it decodes to."""

    kind: str  # "tensor", "image" or "text"
    dtype: str
    shape: tuple[int, ...]  # per step (sequence fields) or per episode
    encoding: str = "none"  # tensor encoding (only "none" is readable) or image format


def _leaf_fields(node: dict, prefix: str, out: dict[str, _Field], where: str) -> None:
    """Flatten a features.json node into ``{"steps/observation/state": _Field, ...}``."""
    if "featuresDict" in node:
        for name, child in node["featuresDict"].get("features", {}).items():
            _leaf_fields(child, f"{prefix}{name}/", out, where)
    elif "sequence" in node:
        _leaf_fields(node["sequence"]["feature"], prefix, out, where)
    elif "tensor" in node:
        t = node["tensor"]
        shape = tuple(int(d) for d in t.get("shape", {}).get("dimensions", []))
        out[prefix[:-1]] = _Field("tensor", t.get("dtype", "float32"), shape, t.get("encoding", "none"))
    elif "image" in node:
        t = node["image"]
        shape = tuple(int(d) for d in t.get("shape", {}).get("dimensions", []))
        out[prefix[:-1]] = _Field("image", t.get("dtype", "uint8"), shape, t.get("encodingFormat") or "png")
    elif "text" in node:
        out[prefix[:-1]] = _Field("text", "string", ())
    # other feature types (video, bounding boxes, ...) are not part of RLDS robot data: left out of the layout


class RldsReader:
    """One split of an RLDS directory: its layout, episode count, and episodes as numpy dicts.

    Episodes come in on-disk order; ``episodes(start, stop)`` reads only that range (whole shards are skipped).
    """

    def __init__(self, data_dir: str | Path, split: str = "train"):
        self.dir = resolve_dataset_dir(data_dir)
        info = self._json(DATASET_INFO)
        splits = {s.get("name"): s for s in info.get("splits", [])}
        if split not in splits:
            raise RldsError(f"{self.dir}: split {split!r} not found; available: {sorted(splits)}")
        fmt = info.get("fileFormat", "tfrecord")
        if fmt != "tfrecord":
            raise RldsError(f"{self.dir}: file format {fmt!r} is not supported (RLDS datasets use tfrecord)")
        self.split = split
        self._shards = self._shard_files(info, splits[split])
        features = self._json("features.json")
        top = features.get("featuresDict", {}).get("features", {})
        if "steps" not in top or "sequence" not in top["steps"]:
            raise RldsError(f"{self.dir}: not an RLDS dataset (no 'steps' sequence; top-level: {sorted(top)})")
        self.fields: dict[str, _Field] = {}
        _leaf_fields(features, "", self.fields, str(self.dir))
        self.layout = self._read_layout()

    def _json(self, name: str) -> dict:
        path = self.dir / name
        if not path.is_file():
            raise RldsError(f"{self.dir}: {name} missing; not a complete TFDS dataset directory")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RldsError(f"{path}: invalid JSON: {exc}") from exc

    def _shard_files(self, info: dict, split_info: dict) -> list[tuple[Path, int]]:
        lengths = [int(n) for n in split_info.get("shardLengths", [])]
        if not lengths:
            raise RldsError(f"{self.dir}: {DATASET_INFO} lists no shardLengths for split {self.split!r}")
        template = split_info.get("filepathTemplate") or "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
        files = []
        for i, n in enumerate(lengths):
            name = (template.replace("{DATASET}", info.get("name", "")).replace("{SPLIT}", self.split)
                    .replace("{FILEFORMAT}", "tfrecord").replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{len(lengths):05d}"))
            if not (self.dir / name).is_file():
                raise RldsError(f"{self.dir}: shard file {name} listed in {DATASET_INFO} is missing")
            files.append((self.dir / name, n))
        return files

    @property
    def num_episodes(self) -> int:
        return sum(n for _, n in self._shards)

    def _read_layout(self) -> RldsLayout:
        for key in ("steps/action", "steps/language_instruction"):
            if key not in self.fields:
                raise RldsError(f"{self.dir}: steps lack {key.split('/', 1)[1]!r}")
        obs = {k[len("steps/observation/"):]: f for k, f in self.fields.items() if k.startswith("steps/observation/")}
        images = {k: f.shape for k, f in obs.items() if f.kind == "image"}
        encodings = {f.encoding for f in obs.values() if f.kind == "image"}
        core = {"observation", "action", "language_instruction", *DERIVED_STEP_KEYS}
        steps = {k[len("steps/"):]: f for k, f in self.fields.items() if k.startswith("steps/") and "/" not in k[6:]}
        return RldsLayout(
            image_shapes=images,
            image_encoding=encodings.pop() if len(encodings) == 1 else "jpeg",
            state_dims={k: f.shape[0] for k, f in obs.items() if f.kind == "tensor" and len(f.shape) == 1},
            action_dim=int(np.prod(self.fields["steps/action"].shape)),
            step_fields={k: f.dtype for k, f in steps.items()
                         if k not in core and f.kind == "tensor" and f.shape == () and f.dtype in _STEP_FIELD_DTYPES},
        )

    def check_robot(self, robot: RobotConfig, cameras: bool = True) -> "RldsReader":
        self.layout.check_robot(robot, str(self.dir), cameras)
        return self

    def require_keys(self, keys: Sequence[str], what: str) -> None:
        missing = [k for k in keys if k not in self.layout.state_dims]
        if missing:
            raise RldsError(f"{self.dir}: {what} key(s) {missing} are not observation vectors of this dataset "
                            f"(available: {sorted(self.layout.state_dims)})")

    def episodes(
        self,
        start: int = 0,
        stop: int | None = None,
        observation_keys: Sequence[str] | None = None,
        step_keys: Sequence[str] = ("action", "language_instruction"),
    ) -> Iterator[tuple[int, dict]]:
        """``(index, episode)`` for episodes ``start .. stop - 1``; only the named fields are parsed.

        ``episode = {"observation": {key: array [T, ...]}, <step key>: array [T, ...], "success", "file_path"}``;
        images stay encoded (``object [T]`` of bytes; see :func:`decode_image`); the instruction is a ``str``.
        ``observation_keys=None`` reads every observation key.
        """
        obs_keys = list(self.layout.image_shapes) + list(self.layout.state_dims) if observation_keys is None \
            else list(observation_keys)
        wanted = {f"steps/observation/{k}": ("observation", k) for k in obs_keys}
        wanted.update({f"steps/{k}": (k, None) for k in step_keys})
        missing = [k for k in wanted if k not in self.fields]
        if missing:
            raise RldsError(f"{self.dir}: field(s) {missing} not in this dataset")
        meta = [k for k in ("episode_metadata/file_path", "episode_metadata/success") if k in self.fields]
        stop = self.num_episodes if stop is None else min(stop, self.num_episodes)
        for index, record in zip(range(start, stop), self._records(start, stop)):
            try:
                raw = parse_example(record, set(wanted) | set(meta))
                yield index, self._episode(raw, wanted)
            except RldsError as exc:
                raise RldsError(f"{self.dir}: episode {index}: {exc}") from None

    def _records(self, start: int, stop: int) -> Iterator[bytes]:
        first = 0
        for path, n in self._shards:
            lo, hi = max(start - first, 0), min(stop - first, n)
            if lo < hi:
                yield from read_tfrecords(path, lo, hi - lo)
            first += n

    def _episode(self, raw: dict, wanted: dict) -> dict:
        lengths = {len(v) // (int(np.prod(self.fields[k].shape)) if self.fields[k].kind == "tensor" else 1)
                   for k, v in raw.items() if k in wanted}
        if len(lengths) > 1:
            raise RldsError(f"fields disagree on the number of steps: {sorted(lengths)}")
        ep: dict[str, Any] = {"observation": {}}
        for key, (group, name) in wanted.items():
            value = _decode_field(self.fields[key], raw.get(key, []), key)
            if key == "steps/language_instruction":
                value = value[0] if len(value) else ""
            if group == "observation":
                ep["observation"][name] = value
            else:
                ep[group] = value
        success = raw.get("episode_metadata/success")
        ep["success"] = bool(success[0]) if success is not None and len(success) else True
        path = raw.get("episode_metadata/file_path")
        ep["file_path"] = path[0].decode("utf-8") if path else ""
        return ep


def _decode_field(field: _Field, value, key: str):
    """A parsed Example list -> numpy: ``[T, *shape]`` tensors, object arrays of image bytes, lists of str."""
    if field.kind == "image":
        return np.array(value, dtype=object) if value else np.zeros(0, object)
    if field.kind == "text":
        return [v.decode("utf-8") for v in value]
    if field.encoding != "none":
        raise RldsError(f"{key}: tensor encoding {field.encoding!r} is not supported")
    try:
        dtype = np.dtype(field.dtype)
    except TypeError:
        raise RldsError(f"{key}: dtype {field.dtype} is not supported") from None
    if dtype.kind not in "fiub":
        raise RldsError(f"{key}: dtype {field.dtype} is not supported")
    # tf.train.Example holds float32 for every float dtype and int64 for integers and bools (uint64 bit-cast)
    arr = np.asarray(value if len(value) else [], dtype=np.float32 if dtype.kind == "f" else np.int64)
    if dtype == np.uint64:
        arr = arr.view(np.uint64)
    per = int(np.prod(field.shape)) if field.shape else 1
    if arr.size % per:
        raise RldsError(f"{key}: {arr.size} values do not split into steps of shape {field.shape}")
    return arr.astype(dtype, copy=False).reshape((-1, *field.shape))


def read_tfrecords(path: Path, skip: int = 0, take: int | None = None) -> Iterator[bytes]:
    """Raw records of one TFRecord file (length u64, length crc u32, data, data crc u32; CRCs are not checked)."""
    with open(path, "rb") as f:
        count = 0
        while take is None or count < skip + take:
            header = f.read(12)
            if not header:
                if take is not None:
                    raise RldsError(f"{path}: ended after {count} records, expected {skip + take}")
                return
            if len(header) < 12:
                raise RldsError(f"{path}: truncated record header after {count} records")
            (n,) = struct.unpack("<Q", header[:8])
            if count < skip:
                f.seek(n + 4, os.SEEK_CUR)
            else:
                data = f.read(n)
                if len(data) < n or len(f.read(4)) < 4:
                    raise RldsError(f"{path}: truncated record {count}")
                yield data
            count += 1


# ---- tf.train.Example wire format -------------------------------------------------------------------------------
def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise RldsError("corrupt record: varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, value start, value end)`` of a message (varints: value, -1)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _varint(buf, pos)
            yield field, wire, pos, pos + n
            pos += n
        elif wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value, -1
        elif wire == 5:
            yield field, wire, pos, pos + 4
            pos += 4
        elif wire == 1:
            yield field, wire, pos, pos + 8
            pos += 8
        else:
            raise RldsError(f"corrupt record: unsupported wire type {wire}")
    if pos != end:
        raise RldsError("corrupt record: a field runs past its message")


def parse_example(record: bytes, keys: set[str] | None = None) -> dict[str, list | np.ndarray]:
    """A serialized ``tf.train.Example`` -> ``{feature key: list of bytes | float32 array | int64 array}``."""
    buf = memoryview(record)
    out: dict[str, list | np.ndarray] = {}
    for field, wire, start, end in _fields(buf, 0, len(buf)):
        if field != 1 or wire != 2:  # Example.features
            continue
        for f2, w2, s2, e2 in _fields(buf, start, end):
            if f2 != 1 or w2 != 2:  # Features.feature map entries
                continue
            key, value = None, None
            for f3, w3, s3, e3 in _fields(buf, s2, e2):
                if f3 == 1:
                    key = bytes(buf[s3:e3]).decode("utf-8")
                elif f3 == 2:
                    value = (s3, e3)
            if key is not None and value is not None and (keys is None or key in keys):
                out[key] = _feature_values(buf, *value)
    return out


def _feature_values(buf: memoryview, start: int, end: int) -> list | np.ndarray:
    for kind, wire, s, e in _fields(buf, start, end):  # Feature: oneof bytes_list (1), float_list (2), int64_list (3)
        if kind == 1:
            return [bytes(buf[a:b]) for f, w, a, b in _fields(buf, s, e) if f == 1]
        if kind == 2:
            parts = [np.frombuffer(buf[a:b], "<f4") for f, w, a, b in _fields(buf, s, e) if f == 1]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if kind == 3:
            parts = [_packed_varints(buf[a:b]) if w == 2 else np.array([a], np.uint64).view(np.int64)
                     for f, w, a, b in _fields(buf, s, e) if f == 1]
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return []


def _packed_varints(data: memoryview) -> np.ndarray:
    """Packed varints -> int64 (two's complement), vectorised."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0 or b[-1] >= 0x80:
        if b.size == 0:
            return np.zeros(0, np.int64)
        raise RldsError("corrupt record: packed varints end mid-value")
    if not np.any(b >= 0x80):
        return b.astype(np.int64)
    ends = b < 0x80
    group = np.concatenate([[0], np.cumsum(ends)[:-1]])
    first = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])
    shift = (7 * (np.arange(b.size) - first[group])).astype(np.uint64)
    parts = (b & 0x7F).astype(np.uint64) << shift
    return np.add.reduceat(parts, first).view(np.int64)


def read_rlds(data_dir: str | Path, split: str = "train") -> Iterator[dict]:
    """Every episode of ``split`` in :func:`write_rlds`' dict form, images decoded to ``uint8 [T, H, W, 3]``."""
    reader = RldsReader(data_dir, split)
    step_keys = ("action", "language_instruction", *reader.layout.step_fields)
    for _, ep in reader.episodes(step_keys=step_keys):
        for key in reader.layout.image_shapes:
            ep["observation"][key] = np.stack([decode_image(b) for b in ep["observation"][key]])
        yield ep


def concat_keys(observation: Mapping[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """Observation vectors ``keys`` concatenated along the last axis: ``float64 [T, sum(d)]``."""
    return np.concatenate([np.asarray(observation[k], dtype=np.float64) for k in keys], axis=-1)
