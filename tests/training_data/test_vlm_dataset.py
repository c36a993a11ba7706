"""VLM samples: target construction (incl. the stop waypoint), token sequences decoded back, stride, both layouts."""

import numpy as np
import pytest

from wp_policy import batch as B
from wp_policy.normalize import load_stats
from wp_policy.transforms import collate
from wp_training.data.rlds_reader import read_rlds
from wp_training.datasets.sample_stream import StreamConfig
from wp_training.datasets.vlm_dataset import VLMDataConfig, WaypointVLMDataset, waypoint_targets

ONE_PASS = StreamConfig(shuffle_buffer=8, shuffle_warmup=2, repeat=False)


def pixel(img, channel):
    return int(round((float(img[channel, 0, 0]) + 1) * 127.5))


def vlm_dataset(prepared, robot, tokenizer, **kw):
    cfg = VLMDataConfig(rlds_dir=str(prepared["filtered"]), stats_path=str(prepared["stats"]),
                        **{"image_size": 32, "stride": 1, "stream": ONE_PASS, **kw})
    return WaypointVLMDataset(cfg, robot, tokenizer)


def test_targets_and_the_stop_waypoint():
    proprio = np.arange(5)[:, None] * np.ones((1, 2))  # waypoint k has proprio [k, k]
    durations = np.array([4, 2, 7, 3, 0])
    p, d = waypoint_targets(proprio, durations, 0, 3)
    assert p[:, 0].tolist() == [1, 2, 3] and d.tolist() == [4, 2, 7]
    p, d = waypoint_targets(proprio, durations, 2, 3)
    assert p[:, 0].tolist() == [3, 4, 4] and d.tolist() == [7, 3, 0]  # last waypoint, then the stop (d = 0)
    p, d = waypoint_targets(proprio, durations, 3, 7)
    assert p[:, 0].tolist() == [4, 4] and d.tolist() == [3, 0]
    p, d = waypoint_targets(proprio, durations, 4, 7)
    assert p[:, 0].tolist() == [4] and d.tolist() == [0]  # at the last frame: just stop
    p, d = waypoint_targets(proprio, durations, 0, 4)
    assert d.tolist() == [4, 2, 7, 3]  # exactly M real waypoints: no stop yet
    with pytest.raises(ValueError, match="step 5 out of range"):
        waypoint_targets(proprio, durations, 5, 3)


def check_samples(samples, prepared, robot, tok):
    stats = load_stats(prepared["stats"])
    episodes = list(read_rlds(prepared["filtered"]))
    P, L = robot.proprio.dim, tok.layout
    seen = set()
    for s in samples:
        img = s[B.IMAGES][robot.cameras[0].model_key]
        e, step = pixel(img, 1), pixel(img, 0)
        ep = episodes[e]
        k = int(np.flatnonzero(ep["source_step"] == step)[0])
        seen.add((e, k))
        state = np.concatenate([ep["observation"][key] for key in robot.state_keys], 1).astype(np.float64)
        norm = np.where(robot.proprio.norm_mask, np.clip(
            2 * (robot.proprio_to_model(state) - stats.proprio.q01) / (stats.proprio.q99 - stats.proprio.q01 + 1e-6)
            - 1, -1, 1), robot.proprio_to_model(state))
        last = len(ep["duration"]) - 1
        n = min(7, last - k + 1)
        want_rows = np.minimum(np.arange(k + 1, k + 1 + n), last)
        want_d = ep["duration"][np.arange(k, k + n)]
        valid = s[B.INPUT_MASK]
        prefix = s[B.TOKENS][valid & (s[B.AR_MASK] == 0)].tolist()
        assert prefix == tok.prompt_tokens(ep["language_instruction"], norm[k])
        postfix = s[B.TOKENS][valid & (s[B.AR_MASK] == 1)]
        got_p, got_d = tok.decode_waypoints(postfix[len(tok.action_tokens):])
        assert got_d.tolist() == want_d.tolist() and (got_d[-1] == 0) == (k + 7 > last)
        assert np.abs(got_p - norm[want_rows]).max() <= 1 / 256 + 1e-9  # within half a bin
        assert s[B.LOSS_MASK].sum() == n * (P + 1)
        assert np.all(L.is_proprio(s[B.TOKENS][s[B.LOSS_MASK]]) | L.is_duration(s[B.TOKENS][s[B.LOSS_MASK]]))
        assert not s[B.LOSS_MASK][~valid].any() and not s[B.AR_MASK][~valid].any()
        assert s[B.TOKENS].shape == (tok.max_token_len,)
    return seen, episodes


def test_libero_samples_decode_to_the_next_waypoints(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    samples = list(vlm_dataset(libero_prepared, libero_config, tok))
    seen, episodes = check_samples(samples, libero_prepared, libero_config, tok)
    assert seen == {(e, k) for e, ep in enumerate(episodes) for k in range(len(ep["duration"]))}
    assert len(samples) == len(seen)
    batch = collate(samples[:3])
    assert set(batch) == set(B.VLM_KEYS) and batch[B.TOKENS].shape == (3, 256)
    assert batch[B.IMAGES]["left_wrist_0_rgb"].shape == (3, 3, 32, 32)


def test_r1lite_samples(r1lite_prepared, r1lite_config, make_tokenizer):
    tok = make_tokenizer(r1lite_config, max_token_len=320)
    samples = list(vlm_dataset(r1lite_prepared, r1lite_config, tok))
    seen, episodes = check_samples(samples, r1lite_prepared, r1lite_config, tok)
    assert len(seen) == len(samples) == sum(len(ep["duration"]) for ep in episodes)
    assert set(samples[0][B.IMAGES]) == {"base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"}


def test_stride_covers_every_stride_th_step(libero_prepared, libero_config, make_tokenizer):
    samples = list(vlm_dataset(libero_prepared, libero_config, make_tokenizer(libero_config), stride=3))
    by_episode = {}
    for s in samples:
        img = s[B.IMAGES]["base_0_rgb"]
        by_episode.setdefault(pixel(img, 1), []).append(pixel(img, 0))
    episodes = list(read_rlds(libero_prepared["filtered"]))
    for e, steps in by_episode.items():
        ks = sorted(int(np.flatnonzero(episodes[e]["source_step"] == t)[0]) for t in steps)
        assert np.all(np.diff(ks) == 3) and ks[0] < 3 and ks[-1] + 3 >= len(episodes[e]["duration"])
    assert len(samples) < sum(len(ep["duration"]) for ep in episodes) / 2


def test_epoch_size_and_resume_across_epochs(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    one_pass = vlm_dataset(libero_prepared, libero_config, tok, stride=3)
    assert one_pass.epoch_size(0, 5, 0) == len(list(one_pass))
    stream = StreamConfig(shuffle_buffer=8, shuffle_warmup=2, seed=4)

    def steps(resume):
        ds = vlm_dataset(libero_prepared, libero_config, tok, stride=3, stream=stream)
        ds.resume(resume, 1)
        it = iter(ds)
        return [(s[B.TOKENS].tolist(), pixel(s[B.IMAGES]["base_0_rgb"], 0)) for s in (next(it) for _ in range(5))]

    full = [(s[B.TOKENS].tolist(), pixel(s[B.IMAGES]["base_0_rgb"], 0)) for s, _ in
            zip(vlm_dataset(libero_prepared, libero_config, tok, stride=3, stream=stream), range(40))]
    sizes = [one_pass.epoch_size(0, 5, e) for e in range(3)]
    assert sum(sizes[:2]) < 35  # resuming at 35 skips two whole epochs
    assert steps(35) == full[35:40] and steps(7) == full[7:12]


def test_bad_inputs(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    with pytest.raises(ValueError, match="not a waypoint-filtered RLDS; point rlds_dir at the output of"):
        vlm_dataset({**libero_prepared, "filtered": libero_prepared["rlds"]}, libero_config, tok)
    short = make_tokenizer(libero_config, max_token_len=40)
    with pytest.raises(ValueError, match=r"episode \d+, step \d+: sequence of \d+ tokens exceeds max_token_len 40"):
        next(iter(vlm_dataset(libero_prepared, libero_config, short)))
    with pytest.raises(ValueError, match="stride .* must be >= 1"):
        VLMDataConfig("a", "b", stride=0)


def test_state_noise_changes_only_the_prompt_state_and_is_seeded(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)

    def tokens(noise):
        return [(s[B.TOKENS], s[B.LOSS_MASK]) for s in vlm_dataset(libero_prepared, libero_config, tok,
                                                                     state_noise=noise)]

    clean, noisy = tokens(0.0), tokens(0.3)
    assert len(clean) == len(noisy)
    for (a, mask_a), (b, mask_b) in zip(clean, noisy):  # the state is text, its length may change: own masks
        np.testing.assert_array_equal(a[mask_a], b[mask_b])  # the targets stay exact
    assert sum(not np.array_equal(a, b) for (a, _), (b, _) in zip(clean, noisy)) > len(clean) // 2
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(noisy, tokens(0.3)))  # seeded
    with pytest.raises(ValueError, match="state_noise must be in"):
        VLMDataConfig("a", "b", state_noise=-0.1)


def test_history_noise_changes_only_the_read_waypoints_and_is_seeded(libero_prepared, libero_config, make_tokenizer):
    tok = make_tokenizer(libero_config)
    clean = list(vlm_dataset(libero_prepared, libero_config, tok))
    noisy = list(vlm_dataset(libero_prepared, libero_config, tok, history_noise=0.3))
    assert len(clean) == len(noisy) and all(B.TARGET_TOKENS not in s for s in clean)
    changed = 0
    for a, b in zip(clean, noisy):
        np.testing.assert_array_equal(b[B.TARGET_TOKENS], a[B.TOKENS])  # the targets stay exact
        for key in (B.INPUT_MASK, B.AR_MASK, B.LOSS_MASK):
            np.testing.assert_array_equal(a[key], b[key])
        differ = a[B.TOKENS] != b[B.TOKENS]
        assert not np.any(differ & ~a[B.LOSS_MASK])  # prompt, "Action: " and end tokens untouched
        assert np.all(tok.layout.is_proprio(b[B.TOKENS][differ]))  # only proprio bins move, durations stay
        changed += bool(differ.any())
    assert changed > len(clean) // 2
    again = list(vlm_dataset(libero_prepared, libero_config, tok, history_noise=0.3))
    assert all(np.array_equal(a[B.TOKENS], b[B.TOKENS]) for a, b in zip(noisy, again))  # seeded
    with pytest.raises(ValueError, match="history_noise must be in"):
        VLMDataConfig("a", "b", history_noise=1.5)
