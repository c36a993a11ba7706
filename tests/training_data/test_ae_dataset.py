"""AE pair samples checked field by field against values computed here from the fixture episodes."""

import json

import numpy as np
import pytest
import torch
from rlds_fixtures import libero_episodes, r1lite_episodes

from wp_policy import batch as B
from wp_policy.normalize import StatsError, load_stats
from wp_policy.transforms import collate
from wp_training.data.extract import WaypointIndex
from wp_training.datasets.ae_dataset import AEDataConfig, WaypointAEDataset
from wp_training.datasets.sample_stream import StreamConfig, make_dataloader

MODEL_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
ONE_PASS = StreamConfig(shuffle_buffer=8, shuffle_warmup=2, repeat=False)


def q99(x, stats, mask):
    y = np.clip(2 * (x - stats.q01) / (stats.q99 - stats.q01 + 1e-6) - 1, -1, 1)
    return np.where(mask, y, x)


def pixel(img, channel):
    return int(round((float(img[channel, 0, 0]) + 1) * 127.5))


def ae_dataset(prepared, robot, tokenizer, **kw):
    cfg = AEDataConfig(rlds_dir=str(prepared["rlds"]), waypoint_indices=str(prepared["index"]),
                       stats_path=str(prepared["stats"]), **{"image_size": 48, "stream": ONE_PASS, **kw})
    return WaypointAEDataset(cfg, robot, tokenizer)


@pytest.mark.parametrize("mid_pair_starts", [0.0, 1.0])
def test_libero_pairs_field_by_field(libero_prepared, libero_config, make_tokenizer, mid_pair_starts):
    """Every pair once; with ``mid_pair_starts=1`` each pair longer than one step starts strictly inside it, and
    images, start proprio, prompt, duration and actions all follow that start."""
    tok = make_tokenizer(libero_config)
    ds = ae_dataset(libero_prepared, libero_config, tok, image_keys=MODEL_KEYS, mid_pair_starts=mid_pair_starts)
    stats = load_stats(libero_prepared["stats"])
    index = WaypointIndex.load(libero_prepared["index"])
    episodes = libero_episodes(5, 40)
    samples = list(ds)
    expected_pairs = {(e, a, b) for e, w in enumerate(index.waypoints) for a, b in zip(w[:-1], w[1:])}
    assert len(samples) == ds.num_pairs == len(expected_pairs)
    seen = set()
    for s in samples:
        base = s[B.IMAGES]["base_0_rgb"]
        e, a = pixel(base, 1), pixel(base, 0)  # fixture images encode (episode, step)
        w = index.waypoints[e]
        pair = np.searchsorted(w, a, side="right")  # the pair [w[pair - 1], w[pair]) that holds step a
        b = int(w[pair])
        d = b - a
        first = int(w[pair - 1])
        assert a == first if not mid_pair_starts or b - first == 1 else first < a < b
        seen.add((e, first, b))
        ep = episodes[e]
        state = ep["observation"]["state"].astype(np.float32).astype(np.float64)
        action = ep["action"].astype(np.float32).astype(np.float64)
        action[:, 6] = 1 - np.clip(action[:, 6], 0, 1)
        start = q99(state[a], stats.proprio, [True] * 8)
        assert s[B.DURATION] == d and s[B.DURATION].dtype == np.int64
        np.testing.assert_allclose(s[B.START_PROPRIO][:8], start, atol=1e-6)
        np.testing.assert_allclose(s[B.END_PROPRIO][:8], q99(state[b], stats.proprio, [True] * 8), atol=1e-6)
        assert not s[B.START_PROPRIO][8:].any() and not s[B.END_PROPRIO][8:].any()
        np.testing.assert_allclose(s[B.ACTIONS][:d, :7], q99(action[a:b], stats.action, [True] * 6 + [False]),
                                   atol=1e-6)
        assert not s[B.ACTIONS][d:].any() and not s[B.ACTIONS][:, 7:].any()
        assert set(np.unique(s[B.ACTIONS][:d, 6])) <= {0.0, 1.0}  # gripper passes unnormalised in [0, 1]
        assert s[B.STEP_MASK].tolist() == [t < d for t in range(32)]
        assert s[B.DIM_MASK].tolist() == [i < 7 for i in range(32)]
        prompt = tok.prompt_tokens(ep["language_instruction"], start)
        assert s[B.TOKENS][: len(prompt)].tolist() == prompt and not s[B.TOKENS][len(prompt):].any()
        assert s[B.INPUT_MASK].tolist() == [i < len(prompt) for i in range(64)]
        assert s[B.TOKENS].shape == (64,) and s[B.TOKENS].dtype == np.int64
        assert list(s[B.IMAGES]) == list(MODEL_KEYS) and base.shape == (3, 48, 48) and base.dtype == np.float32
        np.testing.assert_allclose(base[0], (a % 256) / 127.5 - 1, atol=1e-6)  # resized flat image stays flat
        assert pixel(s[B.IMAGES]["left_wrist_0_rgb"], 2) == 40  # the wrist camera at the same step
        assert [bool(s[B.IMAGE_MASKS][k]) for k in MODEL_KEYS] == [True, True, False]
        assert not s[B.IMAGES]["right_wrist_0_rgb"].any()
    assert seen == expected_pairs


def test_r1lite_pairs_and_batch_contract(r1lite_prepared, r1lite_config, make_tokenizer):
    ds = ae_dataset(r1lite_prepared, r1lite_config, make_tokenizer(r1lite_config), prompt_len=96)
    samples = list(ds)
    episodes = r1lite_episodes(4, 40)
    index = WaypointIndex.load(r1lite_prepared["index"])
    assert len(samples) == ds.num_pairs == sum(len(w) - 1 for w in index.waypoints)
    for s in samples[:10]:
        e, a = pixel(s[B.IMAGES]["base_0_rgb"], 1), pixel(s[B.IMAGES]["base_0_rgb"], 0)
        d = int(s[B.DURATION])
        strokes = episodes[e]["action"][a : a + d, [6, 13]].astype(np.float32) / 100.0
        np.testing.assert_allclose(s[B.ACTIONS][:d, [6, 13]], strokes, atol=1e-6)  # grippers: stroke/100, no q99
        left = episodes[e]["observation"]["gripper_state_left"][a, 0].astype(np.float32) / 100.0
        assert s[B.START_PROPRIO][6] == pytest.approx(left, abs=1e-6)
        assert s[B.DIM_MASK].sum() == 14 and not s[B.ACTIONS][:, 14:].any()
        assert all(bool(m) for m in s[B.IMAGE_MASKS].values())
        assert pixel(s[B.IMAGES]["right_wrist_0_rgb"], 2) == 80
    batch = collate(samples[:6])
    assert set(batch) == set(B.AE_KEYS)
    assert batch[B.IMAGES]["base_0_rgb"].shape == (6, 3, 48, 48)
    assert batch[B.IMAGE_MASKS]["base_0_rgb"].dtype == torch.bool
    assert batch[B.ACTIONS].shape == (6, B.HORIZON, B.MODEL_ACTION_DIM) and batch[B.DURATION].shape == (6,)
    assert batch[B.TOKENS].dtype == torch.int64 and batch[B.START_PROPRIO].shape == (6, B.MODEL_PROPRIO_DIM)


def test_max_duration_skips_long_pairs(libero_prepared, libero_config, make_tokenizer):
    ds = ae_dataset(libero_prepared, libero_config, make_tokenizer(libero_config), max_duration=4)
    durations = [int(s[B.DURATION]) for s in ds]
    index = WaypointIndex.load(libero_prepared["index"])
    gaps = np.concatenate([np.diff(w) for w in index.waypoints])
    assert sorted(durations) == sorted(gaps[gaps <= 4].tolist()) and max(gaps) > 4


def test_image_dropout_hides_every_view_of_a_seeded_share(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    plain = list(ae_dataset(libero_prepared, libero_config, tok, image_keys=MODEL_KEYS))
    dropped = list(ae_dataset(libero_prepared, libero_config, tok, image_keys=MODEL_KEYS, image_dropout=0.5))
    again = list(ae_dataset(libero_prepared, libero_config, tok, image_keys=MODEL_KEYS, image_dropout=0.5))
    have = {"base_0_rgb": True, "left_wrist_0_rgb": True, "right_wrist_0_rgb": False}  # LIBERO: one wrist camera
    hidden = 0
    for p, d, g in zip(plain, dropped, again):
        masks = {k: bool(v) for k, v in d[B.IMAGE_MASKS].items()}
        assert masks == {k: bool(v) for k, v in g[B.IMAGE_MASKS].items()}  # the same samples hidden on every run
        if any(masks.values()):
            assert masks == have
            np.testing.assert_array_equal(d[B.IMAGES]["base_0_rgb"], p[B.IMAGES]["base_0_rgb"])
        else:
            hidden += 1
            assert not any(d[B.IMAGES][k].any() for k in MODEL_KEYS)  # not decoded: zeros, like a missing view
            assert d[B.IMAGES]["base_0_rgb"].shape == p[B.IMAGES]["base_0_rgb"].shape
        for key in (B.ACTIONS, B.START_PROPRIO, B.END_PROPRIO, B.TOKENS):  # the rest of the sample is the same
            np.testing.assert_array_equal(d[key], p[key])
    assert 0.25 * len(plain) < hidden < 0.75 * len(plain)
    every = list(ae_dataset(libero_prepared, libero_config, tok, image_keys=MODEL_KEYS, image_dropout=1.0))
    assert not any(bool(v) for s in every for v in s[B.IMAGE_MASKS].values())
    batch = collate(every[:4])
    assert batch[B.IMAGE_MASKS]["base_0_rgb"].dtype == torch.bool and not batch[B.IMAGE_MASKS]["base_0_rgb"].any()
    with pytest.raises(ValueError, match=r"image_dropout must be in \[0, 1\], got 1.5"):
        AEDataConfig("a", "b", "c", image_dropout=1.5)


def test_mid_pair_starts_are_a_seeded_share(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    plain = list(ae_dataset(libero_prepared, libero_config, tok))
    runs = [list(ae_dataset(libero_prepared, libero_config, tok, mid_pair_starts=0.5)) for _ in range(2)]
    durations = [[int(s[B.DURATION]) for s in run] for run in runs]
    assert durations[0] == durations[1]  # the same starts on every run
    moved = sum(d != int(p[B.DURATION]) for d, p in zip(durations[0], plain))
    longer = sum(int(p[B.DURATION]) > 1 for p in plain)
    assert 0.25 * longer < moved < 0.75 * longer
    assert all(d <= int(p[B.DURATION]) for d, p in zip(durations[0], plain))
    ds = ae_dataset(libero_prepared, libero_config, tok, mid_pair_starts=1.0)
    index = WaypointIndex.load(libero_prepared["index"])
    w = index.waypoints[0]
    assert ds.image_steps(0, int(w[-1]) + 1).tolist() == list(range(int(w[0]), int(w[-1])))  # every step in a pair
    short = ae_dataset(libero_prepared, libero_config, tok, mid_pair_starts=1.0, max_duration=1)
    assert short.image_steps(0, int(w[-1]) + 1).tolist() == w[:-1][np.diff(w) == 1].tolist()  # only 1-step pairs
    with pytest.raises(ValueError, match=r"mid_pair_starts must be in \[0, 1\], got -0.1"):
        AEDataConfig("a", "b", "c", mid_pair_starts=-0.1)


def test_loader_workers_are_seeded_and_resume_exactly(libero_prepared, libero_config, make_tokenizer):
    stream = StreamConfig(shuffle_buffer=16, shuffle_warmup=4, episode_chunk=1, seed=3)
    tok = make_tokenizer(libero_config)

    def batches(resume=0, n=16):
        ds = ae_dataset(libero_prepared, libero_config, tok, stream=stream)
        ds.resume(resume, 4)
        it = iter(make_dataloader(ds, batch_size=4, collate_fn=collate, num_workers=2, prefetch_factor=2))
        return [next(it) for _ in range(n)]

    full = batches()
    again = batches()
    resumed = batches(resume=13, n=3)  # each worker's shard holds < 20 pairs: this skips a whole epoch, then replays
    for x, y in zip(full, again):
        assert torch.equal(x[B.ACTIONS], y[B.ACTIONS]) and torch.equal(x[B.TOKENS], y[B.TOKENS])
    for x, y in zip(full[13:], resumed):
        assert torch.equal(x[B.ACTIONS], y[B.ACTIONS])
        assert torch.equal(x[B.IMAGES]["base_0_rgb"], y[B.IMAGES]["base_0_rgb"])
    assert not torch.equal(full[0][B.ACTIONS], full[1][B.ACTIONS])  # the two workers read different shards


def test_ranks_read_disjoint_episodes(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    cfg = AEDataConfig(rlds_dir=str(libero_prepared["rlds"]), waypoint_indices=str(libero_prepared["index"]),
                       stats_path=str(libero_prepared["stats"]), image_size=16, stream=ONE_PASS)
    episodes = [{pixel(s[B.IMAGES]["base_0_rgb"], 1) for s in WaypointAEDataset(cfg, libero_config, tok, r, 2)}
                for r in (0, 1)]
    assert episodes == [{0, 1}, {2, 3, 4}]


def test_bad_inputs(libero_prepared, r1lite_prepared, libero_config, make_tokenizer, tmp_path):
    tok = make_tokenizer(libero_config)
    with pytest.raises(StatsError, match="action statistics have 14 dims but the robot config expects 7"):
        ae_dataset({**libero_prepared, "stats": r1lite_prepared["stats"]}, libero_config, tok)
    with pytest.raises(ValueError, match="has 5 episodes in split 'train' but .* lists 4; they come from different"):
        ae_dataset({**libero_prepared, "index": r1lite_prepared["index"]}, libero_config, tok)
    with pytest.raises(FileNotFoundError, match="waypoint index not found"):
        ae_dataset({**libero_prepared, "index": tmp_path / "none.json"}, libero_config, tok)
    data = json.loads(libero_prepared["index"].read_text())
    data["episodes"][2]["length"] += 1
    data["episodes"][2]["waypoints"][-1] += 1
    (tmp_path / "shifted.json").write_text(json.dumps(data))
    ds = ae_dataset({**libero_prepared, "index": tmp_path / "shifted.json"}, libero_config, tok)
    with pytest.raises(ValueError, match="episode 2 has 46 steps but the waypoint index says 47"):
        list(ds)
    with pytest.raises(ValueError, match=r"prompt has \d+ tokens, more than prompt_len 8; raise prompt_len"):
        next(iter(ae_dataset(libero_prepared, libero_config, tok, prompt_len=8)))
    with pytest.raises(ValueError, match=r"max_duration must be in 1..32"):
        AEDataConfig("a", "b", "c", max_duration=40)


def test_nan_in_an_episode_names_it(libero_prepared, libero_config, make_tokenizer):
    ds = ae_dataset(libero_prepared, libero_config, make_tokenizer(libero_config))
    index, episode = next(ds.reader.episodes(3, 4, ds.observation_keys, ds.step_keys))
    episode["observation"]["state"][2, 4] = np.nan
    with pytest.raises(ValueError, match=r"episode 3: normalize: input contains NaN or inf in dims \[4\]"):
        next(ds.episode_samples(index, episode, np.random.default_rng(0)))
