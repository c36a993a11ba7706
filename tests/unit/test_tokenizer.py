import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wp_policy.tokenizer import (
    ProprioTokenizer,
    TextTokenizer,
    TokenizationError,
    TokenLayout,
    WaypointTokenizer,
)

TINY_VOCAB = 1024


@pytest.fixture(scope="module")
def wp_tok(sp_model_path):
    return WaypointTokenizer(TextTokenizer(sp_model_path), TokenLayout(TINY_VOCAB), proprio_dim=8)


def test_paligemma_layout_boundaries():
    L = TokenLayout(257152)
    assert L.proprio_token(0) == 257023 and L.proprio_token(255) == 256768
    assert L.duration_token(0) == 256767 and L.duration_token(33) == 256734
    assert (L.wp_token, L.dur_token) == (256733, 256732)
    assert L.first_reserved == 256732
    # the last 128 ids stay untouched
    assert L.proprio_base == 257152 - 1 - 128
    ids = np.arange(256700, 257152)
    assert int(L.is_proprio(ids).sum()) == 256 and int(L.is_duration(ids).sum()) == 34
    assert not np.any(L.is_proprio(ids) & L.is_duration(ids))
    with pytest.raises(TokenizationError, match=r"proprio bins must be in \[0, 255\]"):
        L.proprio_token(256)
    with pytest.raises(TokenizationError, match=r"durations must be in \[0, 33\]"):
        L.duration_token(34)


def test_small_vocab_layout_and_too_small_vocab():
    L = TokenLayout(TINY_VOCAB)
    assert L.proprio_base == TINY_VOCAB - 129
    assert L.wp_token == TINY_VOCAB - 129 - 256 - 34
    with pytest.raises(ValueError, match="vocab_size 300 is too small"):
        TokenLayout(300)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, (6, 5), elements=st.floats(-1, 1)))
def test_proprio_bins_error_below_half_bin(x):
    t = ProprioTokenizer(256)
    err = np.abs(t.decode(t.encode(x)) - x)
    assert np.all(err <= 1.0 / 256 + 1e-12)  # half of the bin width 2/256


def test_proprio_bin_edges_and_bad_input():
    t = ProprioTokenizer(256)
    assert t.encode(np.array([-1.0, 1.0, 0.0, -1 + 2 / 256])).tolist() == [0, 255, 128, 1]
    with pytest.raises(TokenizationError, match="NaN or inf"):
        t.encode(np.array([0.0, np.nan]))
    with pytest.raises(TokenizationError, match=r"normalised to \[-1, 1\] before binning"):
        t.encode(np.array([1.5]))


def test_training_sequence_layout(wp_tok):
    state = np.linspace(-1, 1, 8)
    wps = np.random.default_rng(0).uniform(-1, 1, (3, 8))
    seq = wp_tok.encode_training("pick_up the cube", state, wps, np.array([5, 12, 0]))
    n = seq.length
    assert seq.tokens.shape == (256,) and not seq.input_mask[n:].any()
    assert seq.tokens[0] == wp_tok.text.bos_id
    prefix_len = int((seq.ar_mask[:n] == 0).sum())
    assert np.all(seq.ar_mask[prefix_len:n] == 1)
    prompt = wp_tok.text.decode(seq.tokens[1:prefix_len].tolist())
    assert prompt == "Task: pick up the cube, State: 0 36 73 109 146 182 219 255;\n"
    post = seq.tokens[prefix_len:n]
    act = wp_tok.action_tokens
    assert post[: len(act)].tolist() == act
    assert post[-len(wp_tok.end_tokens) :].tolist() == wp_tok.end_tokens
    # loss only on proprio + duration tokens: 3 waypoints x (8 + 1)
    assert int(seq.loss_mask.sum()) == 27
    L = wp_tok.layout
    lossy = seq.tokens[seq.loss_mask]
    assert np.all(L.is_proprio(lossy) | L.is_duration(lossy))
    assert not np.any(seq.loss_mask & (seq.tokens == L.wp_token))
    assert not np.any(seq.loss_mask[:prefix_len])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda k: st.tuples(
            arrays(np.float64, (k, 8), elements=st.floats(-1, 1)),
            arrays(np.int64, k, elements=st.integers(1, 33)),
            st.booleans(),
        )
    )
)
def test_round_trip_random_waypoints(wp_tok, case):
    proprio, durations, stop = case
    if stop:
        durations = durations.copy()
        durations[-1] = 0
    seq = wp_tok.encode_training("lift", np.zeros(8), proprio, durations)
    start = int((seq.ar_mask[: seq.length] == 0).sum()) + len(wp_tok.action_tokens)
    gen = seq.tokens[start : seq.length]
    p, d = wp_tok.decode_waypoints(gen)
    assert d.tolist() == durations.tolist()
    assert np.all(np.abs(p - proprio) <= 1.0 / 256 + 1e-12)
    # the bare stream (no end tokens) decodes the same
    p2, d2 = wp_tok.decode_waypoints(wp_tok.waypoint_tokens(proprio, durations))
    assert np.array_equal(p, p2) and np.array_equal(d, d2)


def test_decode_stops_at_duration_zero_and_after_m(wp_tok):
    wps = np.zeros((7, 8))
    toks = wp_tok.waypoint_tokens(wps, np.array([3, 0, 4, 4, 4, 4, 4]))
    with pytest.raises(TokenizationError, match="unexpected token"):
        wp_tok.decode_waypoints(toks)
    p, d = wp_tok.decode_waypoints(toks[: 2 * wp_tok.tokens_per_waypoint])
    assert d.tolist() == [3, 0]
    full = wp_tok.waypoint_tokens(wps, np.full(7, 2))
    extra = full + full[: wp_tok.tokens_per_waypoint]
    with pytest.raises(TokenizationError, match="unexpected token"):
        wp_tok.decode_waypoints(extra)


def test_malformed_streams_rejected(wp_tok):
    L = wp_tok.layout
    good = wp_tok.waypoint_tokens(np.zeros((2, 8)), np.array([4, 5]))
    swapped = list(good)
    swapped[0] = L.dur_token
    with pytest.raises(TokenizationError, match="position 0: expected <wp> token"):
        wp_tok.decode_waypoints(swapped)
    text_in_block = list(good)
    text_in_block[3] = 42
    with pytest.raises(TokenizationError, match="position 3: expected proprio bin token, got id 42"):
        wp_tok.decode_waypoints(text_in_block)
    bad_dur = list(good)
    bad_dur[10] = L.proprio_token(3)
    with pytest.raises(TokenizationError, match="position 10: expected duration token"):
        wp_tok.decode_waypoints(bad_dur)
    with pytest.raises(TokenizationError, match="truncated waypoint at position 11"):
        wp_tok.decode_waypoints(good[:-3])
    with pytest.raises(TokenizationError, match="holds no waypoint"):
        wp_tok.decode_waypoints(wp_tok.end_tokens)


def test_bad_encoder_inputs(wp_tok):
    with pytest.raises(TokenizationError, match=r"waypoint proprio must be \[K, 8\], got shape \(2, 7\)"):
        wp_tok.waypoint_tokens(np.zeros((2, 7)), np.array([1, 1]))
    with pytest.raises(TokenizationError, match=r"expected 1..7 waypoints, got 8"):
        wp_tok.waypoint_tokens(np.zeros((8, 8)), np.ones(8, int))
    with pytest.raises(TokenizationError, match="NaN"):
        wp_tok.encode_training("x", np.zeros(8), np.full((1, 8), np.nan), np.array([1]))
    with pytest.raises(TokenizationError, match="exceeds max_token_len 256"):
        wp_tok.encode_training("word " * 300, np.zeros(8), np.zeros((7, 8)), np.ones(7, int))


def test_text_vocab_must_not_overlap_layout(sp_model_path):
    with pytest.raises(TokenizationError, match="overlaps the waypoint tokens"):
        WaypointTokenizer(TextTokenizer(sp_model_path), TokenLayout(800), proprio_dim=8)
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found"):
        TextTokenizer("/nonexistent/tok.model")


def test_inference_prompt_matches_training_prefix(wp_tok):
    state = np.full(8, 0.3)
    prompt = wp_tok.encode_prompt("lift", state)
    train = wp_tok.encode_training("lift", state, np.zeros((1, 8)), np.array([2]))
    n = prompt.length
    assert np.array_equal(prompt.tokens, train.tokens[:n]) and np.array_equal(prompt.ar_mask, train.ar_mask[:n])
