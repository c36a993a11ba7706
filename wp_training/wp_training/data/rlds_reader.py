"""Read RLDS datasets back as numpy without TensorFlow.

Readers take the directory that directly contains ``dataset_info.json`` (what ``tfds.builder_from_directory``
needs); :func:`~wp_training.data.rlds_layout.resolve_dataset_dir` names the right subdirectory when given a parent.
The reader takes the layout from ``features.json``, the shards from ``dataset_info.json`` and decodes the
``tf.train.Example`` records itself (protobuf wire format; TFDS stores a step sequence as one flat list per field,
e.g. ``steps/observation/state`` = T x 8 floats). That keeps DataLoader workers light (they fork in milliseconds and
never touch TensorFlow, which is not fork-safe), parses only the requested fields, and leaves images encoded until
a caller decodes the few it needs. Tests check it against ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from wp_policy.image_proc import decode_jpeg
from wp_policy.robot_config import RobotConfig
from wp_training.data.rlds_layout import (
    DATASET_INFO,
    DERIVED_STEP_KEYS,
    STEP_FIELD_DTYPES,
    RldsError,
    RldsLayout,
    resolve_dataset_dir,
)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG bytes from a dataset -> ``uint8 [H, W, 3]`` RGB."""
    return decode_jpeg(data)


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
                         if k not in core and f.kind == "tensor" and f.shape == () and f.dtype in STEP_FIELD_DTYPES},
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
