"""``wp-data from-lerobot``: small LeRobot data sets written here in the real v2.1 and v3.0 layouts (pyarrow
parquet, MP4 from FFmpeg, meta files) -> RLDS; frames, state, action and tasks traced back step by step."""

import json

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from wp_policy.robot_config import load_robot_config
from wp_training.data.lerobot_convert import REPORT_FILE, LeRobotConvertConfig, LeRobotError, convert_lerobot
from wp_training.data.rlds_reader import RldsReader, read_rlds
from wp_training.data_cli import main

TASKS = ["lift the cube", "open the drawer"]
CAMS = ["observation.images.front", "observation.images.wrist"]
W, H = 64, 64


def colour(frame: int, episode: int, cam: int) -> tuple[int, int, int]:
    """Flat frame colour: channel 0 counts frames within the episode, 1 the episode, 2 the camera."""
    return 6 * frame % 240, 40 * episode, 80 * cam


def write_video(path, frames_colours, fps, codec):
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=fps, codec=codec, pix_fmt_out="yuv420p",
                                         macro_block_size=8, ffmpeg_log_level="error")
    writer.send(None)
    for c in frames_colours:
        writer.send(np.full((H, W, 3), c, np.uint8).tobytes())
    writer.close()


def episode_values(e: int, n: int, state_dim: int, action_dim: int):
    t = np.arange(n, dtype=np.float32)[:, None]
    state = (np.sin(0.1 * t + np.arange(state_dim) + e) * 0.5).astype(np.float32)
    action = (np.cos(0.1 * t + np.arange(action_dim) - e) * 0.5).astype(np.float32)
    return state, action


def frame_table(e, n, first_index, state, action, task_index, fps):
    return pa.table({
        "observation.state": pa.array(state.tolist(), pa.list_(pa.float32())),
        "action": pa.array(action.tolist(), pa.list_(pa.float32())),
        "timestamp": pa.array(np.arange(n, dtype=np.float32) / fps),
        "frame_index": pa.array(np.arange(n), pa.int64()),
        "episode_index": pa.array(np.full(n, e), pa.int64()),
        "index": pa.array(first_index + np.arange(n), pa.int64()),
        "task_index": pa.array(np.full(n, task_index), pa.int64()),
    })


def features(state_dim, action_dim, fps, codec):
    video = {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"],
             "info": {"video.fps": fps, "video.codec": codec, "video.pix_fmt": "yuv420p"}}
    return {CAMS[0]: video, CAMS[1]: video,
            "observation.state": {"dtype": "float32", "shape": [state_dim], "names": None},
            "action": {"dtype": "float32", "shape": [action_dim], "names": None},
            **{k: {"dtype": t, "shape": [1], "names": None} for k, t in
               [("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"), ("index", "int64"),
                ("task_index", "int64")]}}


def make_v21(root, lengths, state_dim=8, action_dim=7, fps=20, codec="libx264", nan_episode=None,
             short_video=None):
    """LeRobot v2.1: one parquet + one MP4 per camera per episode, jsonl metadata."""
    (root / "meta").mkdir(parents=True)
    first = 0
    episodes = []
    for e, n in enumerate(lengths):
        state, action = episode_values(e, n, state_dim, action_dim)
        if e == nan_episode:
            action[3, 1] = np.nan
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frame_table(e, n, first, state, action, e % 2, fps), path)
        for c, key in enumerate(CAMS):
            count = n - 4 if (e, c) == short_video else n
            write_video(root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4",
                        [colour(k, e, c) for k in range(count)], fps, codec)
        episodes.append({"episode_index": e, "tasks": [TASKS[e % 2]], "length": n})
        first += n
    info = {"codebase_version": "v2.1", "robot_type": "test", "total_episodes": len(lengths), "total_frames": first,
            "total_tasks": 2, "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features(state_dim, action_dim, fps, codec)}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(TASKS)))
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    return root


def make_v30(root, lengths, state_dim=8, action_dim=7, fps=20, codec="libsvtav1"):
    """LeRobot v3.0: all episodes in one data file and one MP4 per camera, parquet metadata."""
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    tables, rows, colours, first = [], [], {c: [] for c in range(len(CAMS))}, 0
    for e, n in enumerate(lengths):
        state, action = episode_values(e, n, state_dim, action_dim)
        tables.append(frame_table(e, n, first, state, action, e % 2, fps))
        row = {"episode_index": e, "tasks": [TASKS[e % 2]], "length": n, "data/chunk_index": 0,
               "data/file_index": 0, "dataset_from_index": first, "dataset_to_index": first + n}
        for c, key in enumerate(CAMS):
            start = len(colours[c]) / fps
            colours[c] += [colour(k, e, c) for k in range(n)]
            row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                        f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": start + n / fps})
        rows.append(row)
        first += n
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables), root / "data/chunk-000/file-000.parquet")
    for c, key in enumerate(CAMS):
        write_video(root / f"videos/{key}/chunk-000/file-000.mp4", colours[c], fps, codec)
    pq.write_table(pa.Table.from_pylist(rows), root / "meta/episodes/chunk-000/file-000.parquet")
    # pandas writes the task strings as the (unnamed) index of a task_index frame
    pq.write_table(pa.table({"task_index": pa.array([0, 1], pa.int64()), "__index_level_0__": TASKS}),
                   root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "robot_type": "test", "total_episodes": len(lengths), "total_frames": first,
            "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100, "video_files_size_in_mb": 200,
            "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features(state_dim, action_dim, fps, codec)}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


LIBERO_MAP = {"cameras": {"image": CAMS[0], "wrist_image": CAMS[1]}, "state": {"state": "observation.state"},
              "action": "action"}


def write_map(path, mapping):
    path.write_text(yaml.safe_dump(mapping))
    return path


def check_episodes(dataset, lengths, robot, stride=1, state_of=None, sources=(0, 1)):
    """Step counts, tasks and frames (each robot camera shows video ``sources[c]``); ``state_of`` checks values."""
    eps = list(read_rlds(dataset))
    assert [len(e["action"]) for e in eps] == [len(range(0, n, stride)) for n in lengths]
    for e, (ep, n) in enumerate(zip(eps, lengths)):
        keep = np.arange(0, n, stride)
        assert ep["language_instruction"] == TASKS[e % 2]
        for c, cam in enumerate(robot.cameras):
            img = ep["observation"][cam.rlds_key]
            centre = img[:, img.shape[1] // 2, img.shape[2] // 2].astype(int)
            expected = np.array([colour(k, e, sources[c]) for k in keep])
            assert np.abs(centre - expected).max() <= 8, (e, c)  # the right frame of the right video
        if state_of is not None:
            state_of(e, ep, keep)
    return eps


def test_v21_to_libero_layout(tmp_path):
    robot = load_robot_config("libero")
    lengths = [22, 30, 25, 18]
    src = make_v21(tmp_path / "v21", lengths, nan_episode=2, short_video=(3, 1))
    report = convert_lerobot(LeRobotConvertConfig(str(src), str(write_map(tmp_path / "map.yaml", LIBERO_MAP)),
                                                  str(tmp_path / "out"), robot="libero"), show_progress=False)
    status = {e["episode"]: e for e in report["episodes"]}
    assert status[0]["status"] == status[1]["status"] == "written"
    assert status[2]["status"] == "skipped" and "action: NaN or inf in 1 step(s) (first: [3])" in status[2]["reasons"]
    assert status[3]["status"] == "skipped" and f"{CAMS[1]}: 14 of 18 frames" in status[3]["reasons"]
    dataset = report["summary"]["dataset_dir"]
    assert RldsReader(dataset).layout.image_shapes == {"image": (224, 224, 3), "wrist_image": (224, 224, 3)}

    def same_values(e, ep, keep):
        state, action = episode_values(e, lengths[e], 8, 7)
        np.testing.assert_array_equal(ep["observation"]["state"], state[keep])
        np.testing.assert_array_equal(ep["action"], action[keep])

    check_episodes(dataset, lengths[:2], robot, state_of=same_values)
    saved = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert saved["summary"]["written"] == 2 and saved["summary"]["skipped"] == 2


def test_v30_av1_to_r1lite_layout_with_slices_scale_and_fps_stride(tmp_path):
    """30 fps v3.0 data for the 15 Hz R1 Lite: every second frame; state split into its four keys; gripper 0..1
    scaled to the 0..100 mm stroke; the 14-D action placed at the dataset's action.indices."""
    robot = load_robot_config("r1lite")
    lengths = [20, 26, 17]
    src = make_v30(tmp_path / "v30", lengths, state_dim=14, action_dim=14, fps=30)
    mapping = {"cameras": {"image_camera_head": CAMS[0], "image_camera_wrist_left": CAMS[1],
                           "image_camera_wrist_right": CAMS[1]},
               "state": {"joint_position_arm_left": {"feature": "observation.state", "indices": [0, 1, 2, 3, 4, 5]},
                         "gripper_state_left": {"feature": "observation.state", "indices": [6], "scale": [100.0]},
                         "joint_position_arm_right": {"feature": "observation.state",
                                                      "indices": [7, 8, 9, 10, 11, 12]},
                         "gripper_state_right": {"feature": "observation.state", "indices": [13], "scale": [100.0]}},
               "action": "action"}
    report = convert_lerobot(LeRobotConvertConfig(str(src), str(write_map(tmp_path / "map.yaml", mapping)),
                                                  str(tmp_path / "out"), image_size=32), show_progress=False)
    assert [e["status"] for e in report["episodes"]] == ["written"] * 3
    reader = RldsReader(report["summary"]["dataset_dir"])
    assert reader.layout.state_dims == {"joint_position_arm_left": 6, "gripper_state_left": 1,
                                        "joint_position_arm_right": 6, "gripper_state_right": 1}
    assert reader.layout.action_dim == 26

    def split_values(e, ep, keep):
        state, action = episode_values(e, lengths[e], 14, 14)
        obs = ep["observation"]
        np.testing.assert_array_equal(obs["joint_position_arm_left"], state[keep, :6])
        np.testing.assert_allclose(obs["gripper_state_left"][:, 0], state[keep, 6] * 100.0, rtol=1e-6)
        np.testing.assert_allclose(ep["action"][:, list(robot.action.indices)], action[keep], rtol=1e-6)
        assert np.all(np.delete(ep["action"], list(robot.action.indices), axis=1) == 0)

    eps = check_episodes(report["summary"]["dataset_dir"], lengths, robot, stride=2, state_of=split_values,
                         sources=(0, 1, 1))
    assert eps[0]["observation"]["image_camera_head"].shape[1:] == (32, 32, 3)


def test_mapping_and_format_errors(tmp_path, capsys):
    src = make_v21(tmp_path / "v21", [6], codec="libx264")
    bad = dict(LIBERO_MAP, state={"state": {"feature": "observation.state", "indices": [9]}},
               cameras={"image": "observation.images.top", "wrist_image": "observation.state"})
    cfg = LeRobotConvertConfig(str(src), str(write_map(tmp_path / "bad.yaml", bad)), str(tmp_path / "o"),
                               robot="libero")
    with pytest.raises(LeRobotError) as exc:
        convert_lerobot(cfg, show_progress=False)
    message = str(exc.value)
    assert "['observation.images.top'] not in the data set" in message
    assert "['observation.state'] are not video or image features" in message
    assert "state: indices [9] out of range for observation.state (8 values)" in message
    r1 = LeRobotConvertConfig(str(src), str(write_map(tmp_path / "m.yaml", LIBERO_MAP)), str(tmp_path / "o"),
                              robot="r1lite")
    with pytest.raises(LeRobotError, match="cameras map"):
        convert_lerobot(r1, show_progress=False)
    assert main(["from-lerobot", str(tmp_path / "nowhere"), "--map", str(tmp_path / "m.yaml"), "--robot", "libero",
                 "--out", str(tmp_path / "o")]) == 2
    assert "no meta/info.json" in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    src = make_v21(tmp_path / "v21", [8, 9])
    assert main(["from-lerobot", str(src), "--map", str(write_map(tmp_path / "m.yaml", LIBERO_MAP)),
                 "--robot", "libero", "--out", str(tmp_path / "out"), "--image-size", "0"]) == 0
    out = capsys.readouterr().out
    assert "LeRobot v2.1: 2 episode(s), 2 written, 0 skipped; 17 steps" in out
    assert RldsReader(tmp_path / "out/libero_lerobot/1.0.0").layout.image_shapes["image"] == (H, W, 3)


def test_shipped_aloha_mapping_fits_r1lite():
    from wp_policy.paths import config_dir
    from wp_training.data.lerobot_convert import load_mapping

    mapping = load_mapping(config_dir() / "lerobot" / "aloha_to_r1lite.yaml")
    video = {"dtype": "video", "shape": [480, 640, 3]}
    feats = {"observation.images.cam_high": video, "observation.images.cam_left_wrist": video,
             "observation.images.cam_right_wrist": video, "observation.state": {"dtype": "float32", "shape": [14]},
             "action": {"dtype": "float32", "shape": [14]}}
    mapping.check(load_robot_config("r1lite"), feats, "aloha")
    x = np.ones((2, 14))
    assert mapping.action.apply(x)[0].tolist() == [1] * 6 + [100] + [1] * 6 + [100]
