"""``wp-data from-lerobot``: a LeRobot data set folder (format v2.1 or v3.0) -> RLDS in the robot config's layout.

A LeRobot folder holds ``meta/info.json`` (fps, features, path templates), the tasks (v2.1 ``meta/tasks.jsonl``, v3.0
``meta/tasks.parquet``), the episodes (v2.1 ``meta/episodes.jsonl``; v3.0 ``meta/episodes/*/*.parquet`` with each
episode's data file and its place in every camera's video file), per-frame parquet data (one file per episode in
v2.1, many episodes per file in v3.0) and one MP4 per camera (per episode in v2.1; v3.0 concatenates episodes and
gives ``from_timestamp``). Parquet is read with pyarrow, video decoded with the FFmpeg that imageio-ffmpeg ships
(AV1, H.264, ...). Frame ``k`` of an episode is video frame ``round((from_timestamp + timestamp_k) * fps)``.

A small YAML maps LeRobot feature names to the robot config's keys:

    cameras:                              # camera rlds_key -> LeRobot video (or image) feature
      image_camera_head: observation.images.cam_high
    state:                                # state key -> feature, optionally a slice, scaled: x * scale + offset
      joint_position_arm_left: {feature: observation.state, indices: [0, 1, 2, 3, 4, 5]}
      gripper_state_left: {feature: observation.state, indices: [6], scale: [100.0]}
    action: {feature: action}             # dataset_action_dim values, or action.dim ones (placed at action.indices)
    instruction: ""                       # "" = each episode's task; any text replaces it

Images are resized-with-pad to the robot's model resolution (``--image-size``; 0 keeps the video's size). The
data set's fps must be the robot's control rate, or an integer multiple of it for absolute joint targets (every
k-th frame is kept). Episodes with NaN, missing frames or a mismatched length are reported and skipped
(``conversion_report.json``), never written.

Example::

    wp-data from-lerobot /data/lerobot/aloha_cube --map configs/lerobot/aloha_to_r1lite.yaml --robot r1lite \\
        --out data/aloha_rlds
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wp_policy.config_io import ConfigError, from_dict, load_yaml
from wp_policy.image_proc import ImageDecodeError, decode_jpeg, resize_with_pad
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_training.data.bag_convert import dataset_action
from wp_training.data.rlds_layout import RldsError
from wp_training.data.rlds_writer import encode_image, write_rlds

REPORT_FILE = "conversion_report.json"
V2_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"


class LeRobotError(RldsError):
    """A LeRobot folder is missing, malformed or does not fit the mapping."""


# ---- the mapping ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeaturePick:
    """``feature[indices] * scale + offset`` (indices () = all; scale/offset: one value or one per index)."""

    feature: str
    indices: tuple[int, ...] = ()
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()

    def apply(self, values: np.ndarray) -> np.ndarray:
        x = values[:, list(self.indices)] if self.indices else values
        n = x.shape[1]
        for key in ("scale", "offset"):
            if len(getattr(self, key)) not in (0, 1, n):
                raise ConfigError(f"{self.feature}: {key} needs 1 or {n} values, got {len(getattr(self, key))}")
        return x * np.asarray(self.scale or (1.0,)) + np.asarray(self.offset or (0.0,))


@dataclass(frozen=True)
class LeRobotMapping:
    cameras: dict[str, str]  # robot camera rlds_key -> LeRobot video/image feature
    state: dict[str, FeaturePick]  # robot state key -> pick
    action: FeaturePick
    instruction: str = ""  # "" = each episode's task

    def check(self, robot: RobotConfig, features: Mapping[str, dict], where: str) -> None:
        """Raise LeRobotError listing every key of the robot or feature of the data set the mapping misses."""
        problems = []
        want = {c.rlds_key for c in robot.cameras}
        if set(self.cameras) != want:
            problems.append(f"cameras map {sorted(self.cameras)}, the robot's cameras are {sorted(want)}")
        if set(self.state) != set(robot.state_keys):
            problems.append(f"state maps {sorted(self.state)}, the robot's state keys are {list(robot.state_keys)}")
        used = [*self.cameras.values(), *(p.feature for p in self.state.values()), self.action.feature]
        missing = sorted({f for f in used if f not in features})
        if missing:
            problems.append(f"feature(s) {missing} not in the data set (features: {sorted(features)})")
        not_images = sorted(f for f in self.cameras.values() if f in features
                            and features[f].get("dtype") not in ("video", "image"))
        if not_images:
            problems.append(f"camera feature(s) {not_images} are not video or image features")
        for key, pick in [*self.state.items(), ("action", self.action)]:
            width = int(np.prod(features.get(pick.feature, {}).get("shape") or [1]))
            bad = [i for i in pick.indices if not 0 <= i < width]
            if pick.feature in features and bad:
                problems.append(f"{key}: indices {bad} out of range for {pick.feature} ({width} values)")
        if problems:
            raise LeRobotError(f"{where}: " + "; ".join(problems))


def load_mapping(path: str | Path) -> LeRobotMapping:
    """The mapping YAML; a plain feature name stands for ``{feature: name}``."""
    data = load_yaml(path)
    if isinstance(data.get("state"), dict):
        data["state"] = {k: {"feature": v} if isinstance(v, str) else v for k, v in data["state"].items()}
    if isinstance(data.get("action"), str):
        data["action"] = {"feature": data["action"]}
    return from_dict(LeRobotMapping, data, source=str(path))


# ---- reading the folder --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: Path
    videos: Mapping[str, tuple[Path, float]]  # video feature -> (file, from_timestamp)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise LeRobotError(f"{path} not found")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _string_column(table, names: tuple[str, ...]) -> list[str]:
    for name in (*names, *table.column_names):
        if name in table.column_names and str(table.schema.field(name).type) in ("string", "large_string"):
            return [str(v) for v in table.column(name).to_pylist()]
    raise LeRobotError(f"no task text column among {table.column_names}")


class LeRobotFolder:
    """Metadata of a LeRobot v2.x / v3.0 folder, and its per-episode parquet rows."""

    def __init__(self, root: str | Path):
        import pyarrow.parquet as pq

        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise LeRobotError(f"{self.root}: no meta/info.json; not a LeRobot data set folder")
        self.info = json.loads(info_path.read_text())
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith(("v2", "v3")):
            raise LeRobotError(f"{info_path}: codebase_version {version!r} is not supported (v2.x, v3.0)")
        self.v3 = version.startswith("v3")
        self.version = version
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict] = self.info["features"]
        self.video_keys = [k for k, f in self.features.items() if f.get("dtype") == "video"]
        if self.v3:
            tasks = pq.read_table(self.root / "meta" / "tasks.parquet")
            texts = _string_column(tasks, ("task", "__index_level_0__"))
            self.tasks = dict(zip(tasks.column("task_index").to_pylist(), texts))
            files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
            if not files:
                raise LeRobotError(f"{self.root}: no meta/episodes/*/*.parquet")
            rows = [r for f in files for r in pq.read_table(f).to_pylist()]
        else:
            self.tasks = {t["task_index"]: t["task"] for t in _read_jsonl(self.root / "meta" / "tasks.jsonl")}
            rows = _read_jsonl(self.root / "meta" / "episodes.jsonl")
        self.episodes = [self._episode(r) for r in sorted(rows, key=lambda r: r["episode_index"])]
        self._table_path: Path | None = None
        self._table = None

    def _episode(self, row: dict) -> Episode:
        index = int(row["episode_index"])
        if self.v3:
            data = self.info.get("data_path", V3_DATA).format(chunk_index=int(row["data/chunk_index"]),
                                                              file_index=int(row["data/file_index"]))
            vtemplate = self.info.get("video_path") or V3_VIDEO
            videos = {k: (self.root / vtemplate.format(video_key=k, chunk_index=int(row[f"videos/{k}/chunk_index"]),
                                                       file_index=int(row[f"videos/{k}/file_index"])),
                          float(row[f"videos/{k}/from_timestamp"])) for k in self.video_keys}
        else:
            chunk = index // int(self.info.get("chunks_size", 1000))
            template = self.info.get("data_path", V2_DATA)
            data = template.format(episode_chunk=chunk, episode_index=index)
            vtemplate = self.info.get("video_path") or V2_VIDEO
            videos = {k: (self.root / vtemplate.format(episode_chunk=chunk, video_key=k, episode_index=index), 0.0)
                      for k in self.video_keys}
        return Episode(index, int(row["length"]), tuple(row.get("tasks") or ()), self.root / data, videos)

    def rows(self, episode: Episode, columns: list[str]):
        """The episode's parquet rows (a pyarrow Table, frame order); v3.0 data files are read once and sliced."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if not episode.data_file.is_file():
            raise LeRobotError(f"episode {episode.index}: data file {episode.data_file} not found")
        if self._table_path != episode.data_file:
            table = pq.read_table(episode.data_file)
            missing = sorted(set(columns) - set(table.column_names))
            if missing:
                raise LeRobotError(f"{episode.data_file}: column(s) {missing} missing (has {table.column_names})")
            self._table_path, self._table = episode.data_file, table
        table = self._table.filter(pc.equal(self._table.column("episode_index"), episode.index))
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        return table


def column_array(table, name: str) -> np.ndarray:
    """A numeric feature column (scalar or fixed-length list per row) as ``float64 [n, d]``."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    n = len(col)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64)
        if n and values.size % n:
            raise LeRobotError(f"column {name!r}: rows have different lengths")
        return values.reshape(n, -1)
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64).reshape(n, 1)


class VideoCursor:
    """Sequential frames of one MP4 at a time (FFmpeg via imageio-ffmpeg); reopened only to go backwards."""

    def __init__(self):
        self.path: Path | None = None
        self._gen = None
        self._next = 0
        self._shape = (0, 0)

    def frames(self, path: Path, indices: np.ndarray) -> list[np.ndarray]:
        """``uint8 [H, W, 3]`` frames at increasing ``indices`` of ``path``; fewer if the video ends first."""
        import imageio_ffmpeg

        if path != self.path or int(indices[0]) < self._next:
            self.close()
            if not path.is_file():
                raise LeRobotError(f"video {path} not found")
            self._gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
            meta = next(self._gen)
            w, h = meta["size"]
            self.path, self._next, self._shape = path, 0, (h, w)
        out = []
        for want in indices:
            frame = None
            while self._next <= want:
                frame = next(self._gen, None)
                if frame is None:
                    return out
                self._next += 1
            out.append(np.frombuffer(frame, np.uint8).reshape(*self._shape, 3))
        return out

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
        self._gen, self.path = None, None


# ---- conversion ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeRobotConvertConfig:
    source_dir: str
    mapping: str  # YAML path
    out_dir: str
    robot: str = "r1lite"
    name: str = ""  # dataset name; "" = <robot_type>_lerobot
    image_size: int = -1  # -1 = the robot config's image_size; 0 = the video's size
    overwrite: bool = False


class LeRobotConverter:
    def __init__(self, cfg: LeRobotConvertConfig, robot: RobotConfig, folder: LeRobotFolder, mapping: LeRobotMapping):
        self.cfg, self.robot, self.folder, self.mapping = cfg, robot, folder, mapping
        self.size = robot.image_size if cfg.image_size < 0 else cfg.image_size
        ratio = folder.fps / robot.control_hz
        self.stride = int(round(ratio))
        if abs(ratio - self.stride) > 1e-6 or self.stride < 1:
            raise LeRobotError(f"{folder.root}: fps {folder.fps:g} is not the robot's control rate "
                               f"{robot.control_hz:g} Hz or an integer multiple of it")
        if self.stride > 1 and robot.action_kind != "joint_position":
            raise LeRobotError(f"{folder.root}: fps {folder.fps:g} is {self.stride}x the control rate; dropping "
                               f"frames keeps absolute joint targets valid but not {robot.action_kind} actions")
        self.cursors = {key: VideoCursor() for key in mapping.cameras.values() if key in folder.video_keys}
        self.report: list[dict] = []
        self.written = 0

    def episodes(self, progress: tqdm | None = None) -> Iterator[dict]:
        try:
            for ep in self.folder.episodes:
                try:
                    out = self._episode(ep)
                except (LeRobotError, ImageDecodeError) as exc:
                    self._record(ep, "skipped", [str(exc)], 0)
                    out = None
                if progress is not None:
                    progress.update(1)
                if out is not None:
                    yield out
        finally:
            for cursor in self.cursors.values():
                cursor.close()

    def _episode(self, ep: Episode) -> dict | None:
        m = self.mapping
        numeric = sorted({p.feature for p in m.state.values()} | {m.action.feature})
        images = [f for f in m.cameras.values() if f not in self.folder.video_keys]
        table = self.folder.rows(ep, [*numeric, *images, "timestamp"])
        n = table.num_rows
        reasons = []
        if n != ep.length:
            reasons.append(f"{n} data rows, the episode metadata says {ep.length}")
        keep = np.arange(0, n, self.stride)
        values = {f: column_array(table, f)[keep] for f in numeric}
        state = {k: pick.apply(values[pick.feature]) for k, pick in m.state.items()}
        action = m.action.apply(values[m.action.feature])
        if action.shape[1] == self.robot.action.dim and action.shape[1] != self.robot.dataset_action_dim:
            action = dataset_action(self.robot, action)
        elif action.shape[1] != self.robot.dataset_action_dim:
            raise LeRobotError(f"action mapping gives {action.shape[1]} values; robot {self.robot.robot_type} needs "
                               f"dataset_action_dim {self.robot.dataset_action_dim} or action.dim "
                               f"{self.robot.action.dim}")
        for key, arr in [*state.items(), ("action", action)]:
            bad = np.unique(np.nonzero(~np.isfinite(arr))[0])
            if bad.size:
                reasons.append(f"{key}: NaN or inf in {bad.size} step(s) (first: {(keep[bad[:3]]).tolist()})")
        if reasons:
            self._record(ep, "skipped", reasons, 0)
            return None
        timestamps = column_array(table, "timestamp")[keep, 0]
        obs: dict = dict(state)
        for rlds_key, feature in m.cameras.items():
            frames = self._frames(ep, feature, table, keep, timestamps)
            if len(frames) != len(keep):
                reasons.append(f"{feature}: {len(frames)} of {len(keep)} frames")
            obs[rlds_key] = [encode_image(resize_with_pad(f, self.size, self.size) if self.size else f)
                             for f in frames]
        task = m.instruction or self._task(ep, table)
        if not task:
            reasons.append("no task text (set instruction in the mapping)")
        if reasons:
            self._record(ep, "skipped", reasons, 0)
            return None
        self._record(ep, "written", [], len(keep))
        return {"observation": obs, "action": action, "language_instruction": task,
                "file_path": f"{self.folder.root}#episode{ep.index}"}

    def _frames(self, ep: Episode, feature: str, table, keep: np.ndarray, timestamps: np.ndarray):
        if feature not in self.folder.video_keys:
            cells = table.column(feature).to_pylist()
            return [decode_jpeg(cells[i]["bytes"] if isinstance(cells[i], dict) else cells[i]) for i in keep]
        path, start = ep.videos[feature]
        fps = float(self.folder.features[feature].get("info", {}).get("video.fps", self.folder.fps))
        indices = np.round((start + timestamps) * fps).astype(np.int64)
        if np.any(np.diff(indices) <= 0):
            raise LeRobotError(f"{feature}: timestamps do not increase")
        return self.cursors[feature].frames(path, indices)

    def _task(self, ep: Episode, table) -> str:
        if "task_index" in table.column_names and table.num_rows:
            return self.folder.tasks.get(int(table.column("task_index")[0].as_py()), "")
        return ep.tasks[0] if ep.tasks else ""

    def _record(self, ep: Episode, status: str, reasons: list[str], steps: int) -> None:
        self.report.append({"episode": ep.index, "status": status, "length": ep.length, "written_steps": steps,
                            "rlds_episode": self.written if steps else None, "reasons": reasons})
        self.written += 1 if steps else 0


def convert_lerobot(cfg: LeRobotConvertConfig, show_progress: bool = True) -> dict:
    """Write the RLDS and ``conversion_report.json``; returns the report (``{"config", "summary", "episodes"}``)."""
    robot = load_robot_config(cfg.robot)
    folder = LeRobotFolder(cfg.source_dir)
    mapping = load_mapping(cfg.mapping)
    mapping.check(robot, folder.features, cfg.mapping)
    converter = LeRobotConverter(cfg, robot, folder, mapping)
    out = Path(cfg.out_dir)
    name = cfg.name or f"{robot.robot_type}_lerobot"
    sizes = {k: (converter.size, converter.size) if converter.size else tuple(folder.features[f]["shape"][:2])
             for k, f in mapping.cameras.items()}
    t0 = time.perf_counter()
    with tqdm(total=len(folder.episodes), desc="converting episodes", unit="ep", disable=not show_progress) as bar:
        try:
            dataset_dir = write_rlds(out, converter.episodes(bar), robot, name, image_size=sizes,
                                     overwrite=cfg.overwrite,
                                     description=f"LeRobot {folder.version} data set {folder.root} (wp-data "
                                                 f"from-lerobot)")
        except RldsError as exc:
            if converter.written or not converter.report:
                raise
            _save(out, cfg, folder, converter.report, None, time.perf_counter() - t0)
            raise LeRobotError(f"no episode could be written ({exc}); see {out / REPORT_FILE}") from None
    return _save(out, cfg, folder, converter.report, dataset_dir, time.perf_counter() - t0)


def _save(out: Path, cfg, folder: LeRobotFolder, episodes: list[dict], dataset_dir, wall: float) -> dict:
    status = Counter(e["status"] for e in episodes)
    steps = sum(e["written_steps"] for e in episodes)
    frames = steps * len(folder.video_keys)
    summary = {"dataset_dir": str(dataset_dir) if dataset_dir else None, "format": folder.version,
               "episodes": len(episodes), "written": status["written"], "skipped": status["skipped"],
               "steps_written": steps, "wall_s": round(wall, 2), "steps_per_s": round(steps / max(wall, 1e-9), 1),
               "video_frames_per_s": round(frames / max(wall, 1e-9), 1)}
    report = {"config": asdict(cfg), "summary": summary, "episodes": episodes}
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("source", help="LeRobot data set folder (holds meta/info.json)")
    parser.add_argument("--map", required=True, dest="mapping",
                        help="YAML mapping LeRobot features to the robot config's keys (see above)")
    parser.add_argument("--robot", default="r1lite", help="robot config name or YAML path (default: r1lite)")
    parser.add_argument("--out", required=True, help="output directory (gets <name>/1.0.0 and conversion_report.json)")
    parser.add_argument("--name", default="", help="dataset name (default: <robot_type>_lerobot)")
    parser.add_argument("--image-size", type=int, default=-1,
                        help="stored image side in pixels (default -1: the robot config's image_size; 0: the "
                             "video's own size)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = LeRobotConvertConfig(source_dir=args.source, mapping=args.mapping, out_dir=args.out, robot=args.robot,
                               name=args.name, image_size=args.image_size, overwrite=args.overwrite)
    report = convert_lerobot(cfg)
    for e in report["episodes"]:
        if e["status"] != "written":
            print(f"skipped episode {e['episode']}: {'; '.join(e['reasons'])}")
    s = report["summary"]
    print(f"LeRobot {s['format']}: {s['episodes']} episode(s), {s['written']} written, {s['skipped']} skipped; "
          f"{s['steps_written']} steps in {s['wall_s']} s ({s['steps_per_s']} steps/s, "
          f"{s['video_frames_per_s']} video frames/s)")
    if s["dataset_dir"]:
        print(f"wrote {s['dataset_dir']}")
    return 0
