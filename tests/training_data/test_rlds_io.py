"""RLDS writing (through TFDS) and reading (without TensorFlow), field by field, for both robot layouts."""

import subprocess
import sys

import numpy as np
import pytest
from rlds_fixtures import libero_episodes, r1lite_episodes, step_image

from wp_training.data.rlds_layout import RldsError, resolve_dataset_dir
from wp_training.data.rlds_reader import RldsReader, read_rlds
from wp_training.data.rlds_writer import write_rlds

LIBERO_STEP_KEYS = {"observation", "action", "language_instruction", "reward", "discount", "is_first", "is_last",
                    "is_terminal"}


def test_libero_round_trip_field_by_field(libero_rlds):
    expected = libero_episodes(5, 40)
    got = list(read_rlds(libero_rlds))
    assert len(got) == 5
    for i, (ep, ref) in enumerate(zip(got, expected)):
        assert set(ep["observation"]) == {"image", "wrist_image", "state"}
        np.testing.assert_array_equal(ep["observation"]["image"], ref["observation"]["image"])
        np.testing.assert_array_equal(ep["observation"]["wrist_image"], step_image(i, np.arange(40 + 3 * i), 1, 32))
        np.testing.assert_array_equal(ep["observation"]["state"], ref["observation"]["state"].astype(np.float32))
        np.testing.assert_array_equal(ep["action"], ref["action"].astype(np.float32))
        assert ep["observation"]["state"].dtype == np.float32 and ep["action"].shape == (40 + 3 * i, 7)
        assert ep["language_instruction"] == ref["language_instruction"]
        assert ep["file_path"] == ref["file_path"] and ep["success"] is True


def test_files_are_tfds_datasets_in_libero_layout(libero_rlds):
    """TFDS' own reader opens the files, sees LIBERO's feature names, and agrees with our reader."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(libero_rlds))
    steps = builder.info.features["steps"]
    assert set(steps.keys()) == LIBERO_STEP_KEYS
    assert set(steps["observation"].keys()) == {"image", "wrist_image", "state"}
    assert steps["observation"]["image"].shape == (32, 32, 3) and steps["observation"]["state"].shape == (8,)
    assert steps["action"].shape == (7,)
    ds = builder.as_dataset(split="train[1:2]", decoders={"steps": tfds.decode.SkipDecoding()})
    tf_ep = next(iter(tfds.as_numpy(ds)))["steps"]
    _, ours = next(RldsReader(libero_rlds).episodes(1, 2, step_keys=("action", "reward", "is_first", "is_last",
                                                                        "is_terminal", "discount")))
    np.testing.assert_array_equal(tf_ep["observation"]["state"], ours["observation"]["state"])
    np.testing.assert_array_equal(tf_ep["action"], ours["action"])
    for key in ("reward", "is_first", "is_last", "is_terminal", "discount"):
        np.testing.assert_array_equal(tf_ep[key], ours[key])
    n = len(ours["action"])
    assert ours["is_first"].tolist() == [True] + [False] * (n - 1)
    assert ours["is_last"].tolist() == ours["is_terminal"].tolist() == [False] * (n - 1) + [True]
    assert ours["reward"].tolist() == [0.0] * (n - 1) + [1.0]
    assert list(tf_ep["observation"]["image"]) == list(ours["observation"]["image"])  # same encoded bytes


def test_r1lite_layout(r1lite_rlds, r1lite_config):
    reader = RldsReader(r1lite_rlds).check_robot(r1lite_config)
    assert reader.layout.state_dims == {"joint_position_arm_left": 6, "gripper_state_left": 1,
                                        "joint_position_arm_right": 6, "gripper_state_right": 1}
    assert set(reader.layout.image_shapes) == {"image_camera_head", "image_camera_wrist_left",
                                               "image_camera_wrist_right"}
    assert reader.layout.action_dim == 26 and reader.num_episodes == 4
    expected = r1lite_episodes(4, 40)
    for i, ep in reader.episodes(step_keys=("action", "language_instruction", "is_terminal", "reward")):
        ref = expected[i]
        for key, value in ref["observation"].items():
            if key.startswith("image"):
                assert len(ep["observation"][key]) == len(ref["action"])  # still encoded
            else:
                np.testing.assert_array_equal(ep["observation"][key], value.astype(np.float32))
        np.testing.assert_array_equal(ep["action"], ref["action"].astype(np.float32))
        assert ep["success"] == ref["success"] == (i != 3)
        assert bool(ep["is_terminal"][-1]) == ref["success"] and float(ep["reward"][-1]) == float(ref["success"])


def test_partial_read_parses_only_what_is_asked(libero_rlds):
    got = list(RldsReader(libero_rlds).episodes(1, 3, observation_keys=["state"], step_keys=("action",)))
    assert [i for i, _ in got] == [1, 2]
    assert set(got[0][1]) == {"observation", "action", "success", "file_path"}
    assert set(got[0][1]["observation"]) == {"state"}


def test_jpeg_images_and_step_fields(tmp_path, libero_config):
    ep = libero_episodes(1, 150, image_size=48)[0]
    yy, xx = np.mgrid[0:48, 0:48]
    ep["observation"]["image"] = np.broadcast_to(np.stack([xx * 5, yy * 5, xx + yy], -1).astype(np.uint8),
                                                 (150, 48, 48, 3)).copy()
    ep["source_step"] = np.arange(150) * 1000 - 7  # multi-byte and negative varints
    ep["duration"] = np.arange(150) % 3 == 0
    out = write_rlds(tmp_path, [ep], libero_config, "jpeg_ds", image_size=48,
                     step_fields={"source_step": "int32", "duration": "bool"})
    (back,) = read_rlds(out)
    assert np.abs(back["observation"]["image"].astype(int) - ep["observation"]["image"]).mean() < 3.0
    np.testing.assert_array_equal(back["source_step"], ep["source_step"])
    np.testing.assert_array_equal(back["duration"], ep["duration"])
    assert RldsReader(out).layout.image_encoding == "jpeg"


def test_reading_never_imports_tensorflow(libero_rlds):
    code = ("import sys; from wp_training.data.rlds_reader import read_rlds; "
            "n = sum(1 for _ in read_rlds(sys.argv[1])); "
            "assert n == 5; assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code, str(libero_rlds)], check=True)


def test_dataset_dir_errors_name_the_directory_to_use(libero_rlds, tmp_path):
    parent = libero_rlds.parent.parent
    with pytest.raises(RldsError, match=f"does not directly contain dataset_info.json.*Point at {libero_rlds}"):
        RldsReader(parent)
    with pytest.raises(RldsError, match="RLDS dataset directory not found"):
        resolve_dataset_dir(tmp_path / "nope")
    with pytest.raises(RldsError, match="no dataset_info.json here or up to three levels below"):
        resolve_dataset_dir(tmp_path)
    with pytest.raises(RldsError, match=r"split 'test' not found; available: \['train'\]"):
        RldsReader(libero_rlds, split="test")


def test_reader_rejects_other_robot_and_damaged_files(libero_rlds, r1lite_config, tmp_path):
    with pytest.raises(RldsError, match=r"camera key\(s\) \['image_camera_head'.*action has 7 dims, robot "
                                        r"galaxea_r1_lite expects dataset_action_dim 26"):
        RldsReader(libero_rlds).check_robot(r1lite_config)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(libero_rlds, broken)
    shard = next(broken.glob("*.tfrecord-*"))
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(RldsError, match="truncated record"):
        list(read_rlds(broken))
    shard.unlink()
    with pytest.raises(RldsError, match="shard file .* is missing"):
        RldsReader(broken)


@pytest.mark.parametrize("mutate, message", [
    (lambda ep: ep.update(action=ep["action"][:, :6]), r"episode 1: action: expected shape \[T, 7\], got \(43, 6\)"),
    (lambda ep: ep["observation"]["state"].__setitem__((4, 2), np.nan),
     r"episode 1: observation\['state'\]: contains NaN or inf \(first steps: \[4\]\)"),
    (lambda ep: ep["observation"].pop("wrist_image"), r"episode 1: observation lacks key\(s\) \['wrist_image'\]"),
    (lambda ep: ep.update(action=ep["action"][:-1]), "episode 1: state has 43 steps but action has 42"),
    (lambda ep: ep.update(reward=1.0), r"episode 1: unknown key\(s\) \['reward'\]"),
    (lambda ep: ep["observation"].update(image=ep["observation"]["image"][:, :16]),
     r"episode 1: observation\['image'\]: expected uint8 \[T, 32, 32, 3\]"),
])
def test_writer_rejects_bad_episodes(tmp_path, libero_config, mutate, message):
    episodes = libero_episodes(2, 40)
    mutate(episodes[1])
    with pytest.raises(RldsError, match=message):
        write_rlds(tmp_path, episodes, libero_config, "bad", image_size=32)


def test_writer_refuses_to_overwrite_and_empty_input(tmp_path, libero_config, libero_rlds):
    with pytest.raises(RldsError, match="already exists; remove it, choose another name, or pass overwrite=True"):
        write_rlds(libero_rlds.parent.parent, libero_episodes(1, 10), libero_config, libero_rlds.parent.name)
    with pytest.raises(RldsError, match="no episodes to write"):
        write_rlds(tmp_path, [], libero_config, "empty")
