"""Tokenizers for the VLM planner: proprio bins, the waypoint token layout, and the full training sequence.

Token layout (docs/models.md) at the tail of the vocabulary, skipping the last ``skip`` (128) ids, for vocab V:
  proprio bin b (0..255)  -> V - 1 - skip - b          (PaliGemma, V = 257152: 257023 .. 256768)
  duration d (0..33)      -> V - 1 - skip - 256 - d    (256767 .. 256734)
  <wp>                    -> the next id below           (256733)
  <dur>                   -> the one below that          (256732)
Sequence: [BOS] "Task: {instruction}, State: {state_bins};\\n" | "Action: " (<wp> p_1..p_W <dur> d){K} "|" [EOS]
with the prefix (left of the bar) bidirectional (ar 0) and the postfix causal (ar 1); the CE loss covers only
proprio and duration tokens of real waypoints. A waypoint block carries the ``waypoint_dims`` of the proprio
(default: all P, so W = P); the prompt state always carries all P dims. Leaving out a dim the robot config couples
to another (LIBERO's mirrored right finger) gives one token per gripper, so two fingers can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PALIGEMMA_VOCAB_SIZE = 257152
NUM_BINS = 256
MAX_DURATION = 33
SKIP_TOKENS = 128


class TokenizationError(ValueError):
    """A token stream or tokenizer input is malformed; the message names the position and the offending value."""


@dataclass(frozen=True)
class TokenLayout:
    """Ids of the waypoint tokens, computed from ``vocab_size`` so tiny test vocabularies get the same layout."""

    vocab_size: int = PALIGEMMA_VOCAB_SIZE
    num_bins: int = NUM_BINS
    max_duration: int = MAX_DURATION
    skip: int = SKIP_TOKENS

    def __post_init__(self):
        if self.num_bins < 2 or self.max_duration < 1 or self.skip < 0:
            raise ValueError(f"invalid token layout {self}")
        if self.dur_token < 1:
            raise ValueError(
                f"vocab_size {self.vocab_size} is too small for {self.num_bins} bins + {self.max_duration + 1} "
                f"durations + 2 delimiters + {self.skip} skipped ids (need > {self.vocab_size - self.dur_token})"
            )

    @property
    def proprio_base(self) -> int:  # id of bin 0
        return self.vocab_size - 1 - self.skip

    @property
    def duration_base(self) -> int:  # id of d = 0
        return self.proprio_base - self.num_bins

    @property
    def wp_token(self) -> int:
        return self.duration_base - self.max_duration - 1

    @property
    def dur_token(self) -> int:
        return self.wp_token - 1

    @property
    def first_reserved(self) -> int:
        """Lowest id used by the layout; text token ids must stay below it."""
        return self.dur_token

    def proprio_token(self, bins: np.ndarray) -> np.ndarray:
        bins = np.asarray(bins)
        if np.any((bins < 0) | (bins >= self.num_bins)):
            raise TokenizationError(f"proprio bins must be in [0, {self.num_bins - 1}], got {bins.tolist()}")
        return self.proprio_base - bins

    def duration_token(self, durations: np.ndarray) -> np.ndarray:
        d = np.asarray(durations)
        if np.any((d < 0) | (d > self.max_duration)):
            raise TokenizationError(f"durations must be in [0, {self.max_duration}], got {d.tolist()}")
        return self.duration_base - d

    def is_proprio(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids <= self.proprio_base) & (ids > self.proprio_base - self.num_bins)

    def is_duration(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids <= self.duration_base) & (ids >= self.duration_base - self.max_duration)

    def bin_of(self, ids: np.ndarray) -> np.ndarray:
        return self.proprio_base - np.asarray(ids)

    def duration_of(self, ids: np.ndarray) -> np.ndarray:
        return self.duration_base - np.asarray(ids)


class ProprioTokenizer:
    """Uniform bins on [-1, 1]: bin b covers [-1 + b w, -1 + (b + 1) w), w = 2 / num_bins; decode gives the centre."""

    def __init__(self, num_bins: int = NUM_BINS):
        self.num_bins = num_bins
        self.width = 2.0 / num_bins

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise TokenizationError(f"proprio contains NaN or inf: {x.tolist()}")
        if np.any(np.abs(x) > 1.0 + 1e-6):
            raise TokenizationError(
                f"proprio must be normalised to [-1, 1] before binning (max |x| = {np.abs(x).max():.4g})"
            )
        return np.clip(np.floor((x + 1.0) / self.width), 0, self.num_bins - 1).astype(np.int64)

    def decode(self, bins: np.ndarray) -> np.ndarray:
        bins = np.asarray(bins)
        if np.any((bins < 0) | (bins >= self.num_bins)):
            raise TokenizationError(f"bins must be in [0, {self.num_bins - 1}]")
        return -1.0 + (bins.astype(np.float64) + 0.5) * self.width


class TextTokenizer:
    """A SentencePiece model (PaliGemma's in production; tests train a tiny one). Ids must not reach the layout."""

    def __init__(self, model_path: str | Path):
        import sentencepiece

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        self.path = path
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        if self.sp.bos_id() < 0 or self.sp.eos_id() < 0:
            raise TokenizationError(f"{path}: the SentencePiece model needs BOS and EOS ids")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_id(self) -> int:
        return max(self.sp.pad_id(), 0)

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(list(ids))


@dataclass(frozen=True)
class TokenizedSequence:
    """One padded sequence, all arrays ``[max_token_len]``."""

    tokens: np.ndarray  # int64 token ids (pad_id where input_mask is False)
    input_mask: np.ndarray  # bool, real tokens
    ar_mask: np.ndarray  # int32: 0 = prefix (bidirectional), 1 = postfix (causal)
    loss_mask: np.ndarray  # bool, CE targets: proprio and duration tokens of real waypoints

    @property
    def length(self) -> int:
        return int(self.input_mask.sum())


def clean_instruction(text: str) -> str:
    """openpi's prompt cleaning: strip and replace underscores/newlines with spaces."""
    return text.strip().replace("_", " ").replace("\n", " ")


class WaypointTokenizer:
    """Builds and parses the planner's token sequences (docs/models.md, "Sequence")."""

    def __init__(
        self,
        text: TextTokenizer,
        layout: TokenLayout,
        proprio_dim: int,
        num_waypoints: int = 7,
        max_token_len: int = 256,
        waypoint_dims: tuple[int, ...] = (),
    ):
        if text.vocab_size > layout.first_reserved:
            raise TokenizationError(
                f"text vocabulary ({text.vocab_size} ids) overlaps the waypoint tokens starting at id "
                f"{layout.first_reserved}; use a larger model vocab_size"
            )
        if proprio_dim < 1 or num_waypoints < 1:
            raise ValueError(f"proprio_dim ({proprio_dim}) and num_waypoints ({num_waypoints}) must be >= 1")
        dims = tuple(int(d) for d in waypoint_dims) or tuple(range(proprio_dim))
        if list(dims) != sorted(set(dims)) or not 0 <= dims[0] <= dims[-1] < proprio_dim:
            raise ValueError(f"waypoint_dims must be increasing dims of 0..{proprio_dim - 1}, got {list(dims)}")
        self.waypoint_dims = dims  # proprio dims with a token in each waypoint block
        self.text, self.layout = text, layout
        self.proprio_dim, self.num_waypoints, self.max_token_len = proprio_dim, num_waypoints, max_token_len
        self.bins = ProprioTokenizer(layout.num_bins)
        self.action_tokens = text.encode("Action: ")
        self.end_tokens = text.encode("|") + [text.eos_id]

    @property
    def tokens_per_waypoint(self) -> int:
        return len(self.waypoint_dims) + 3  # <wp> p_1..p_W <dur> d

    def prompt_tokens(self, instruction: str, state: np.ndarray) -> list[int]:
        """[BOS] "Task: ..., State: b_1 b_2 ...;\\n" for normalised ``state [S]``."""
        state_bins = self.bins.encode(np.asarray(state).reshape(-1))
        text = f"Task: {clean_instruction(instruction)}, State: {' '.join(map(str, state_bins))};\n"
        return [self.text.bos_id] + self.text.encode(text)

    def waypoint_tokens(self, proprio: np.ndarray, durations: np.ndarray) -> list[int]:
        """``proprio [K, P]`` (normalised) and ``durations [K]`` -> K blocks ``<wp> p.. <dur> d`` (waypoint dims)."""
        proprio = np.asarray(proprio, dtype=np.float64)
        durations = np.asarray(durations)
        if proprio.ndim != 2 or proprio.shape[1] != self.proprio_dim:
            raise TokenizationError(f"waypoint proprio must be [K, {self.proprio_dim}], got shape {proprio.shape}")
        if durations.shape != (proprio.shape[0],):
            raise TokenizationError(f"durations must be [{proprio.shape[0]}], got shape {durations.shape}")
        if not 1 <= proprio.shape[0] <= self.num_waypoints:
            raise TokenizationError(f"expected 1..{self.num_waypoints} waypoints, got {proprio.shape[0]}")
        ptoks = self.layout.proprio_token(self.bins.encode(proprio[:, list(self.waypoint_dims)]))
        dtoks = self.layout.duration_token(durations)
        out: list[int] = []
        for k in range(proprio.shape[0]):
            out += [self.layout.wp_token, *ptoks[k].tolist(), self.layout.dur_token, int(dtoks[k])]
        return out

    def encode_prompt(self, instruction: str, state: np.ndarray) -> TokenizedSequence:
        """Inference input: prefix + "Action: " (the planner generates from here). Not padded."""
        prefix = self.prompt_tokens(instruction, state)
        return self._assemble(prefix, self.action_tokens, np.zeros(len(self.action_tokens), bool), pad=False)

    def encode_training(
        self, instruction: str, state: np.ndarray, proprio: np.ndarray, durations: np.ndarray
    ) -> TokenizedSequence:
        """Full training sequence padded to ``max_token_len``; raises rather than truncating."""
        prefix = self.prompt_tokens(instruction, state)
        wp = self.waypoint_tokens(proprio, durations)
        postfix = self.action_tokens + wp + self.end_tokens
        loss = np.zeros(len(postfix), bool)
        wp_ids = np.asarray(wp)
        start = len(self.action_tokens)
        loss[start : start + len(wp)] = self.layout.is_proprio(wp_ids) | self.layout.is_duration(wp_ids)
        return self._assemble(prefix, postfix, loss, pad=True)

    def _assemble(self, prefix: list[int], postfix: list[int], postfix_loss: np.ndarray, pad: bool) -> TokenizedSequence:
        n = len(prefix) + len(postfix)
        if n > self.max_token_len:
            raise TokenizationError(
                f"sequence of {n} tokens exceeds max_token_len {self.max_token_len} (prefix {len(prefix)}, "
                f"postfix {len(postfix)}); shorten the instruction or raise max_token_len"
            )
        length = self.max_token_len if pad else n
        tokens = np.full(length, self.text.pad_id, np.int64)
        tokens[:n] = prefix + postfix
        input_mask = np.zeros(length, bool)
        input_mask[:n] = True
        ar_mask = np.zeros(length, np.int32)
        ar_mask[len(prefix) : n] = 1
        loss_mask = np.zeros(length, bool)
        loss_mask[len(prefix) : n] = postfix_loss
        return TokenizedSequence(tokens, input_mask, ar_mask, loss_mask)

    def decode_waypoints(self, ids: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Parse a generated stream (starting after "Action: ") into ``(proprio [K, W] normalised, durations [K])``,
        W = ``len(waypoint_dims)`` (P with the default layout).

        Parsing ends after ``num_waypoints`` blocks, after a block with d = 0 (stop), or at "|" / EOS / padding
        between blocks; only those end tokens may follow. Anything else (a text token inside a block, a truncated
        block, more blocks after a stop or beyond ``num_waypoints``) raises TokenizationError naming the position.
        """
        ids = [int(t) for t in np.asarray(ids).reshape(-1)]
        L, P = self.layout, len(self.waypoint_dims)
        ends = {*self.end_tokens, self.text.pad_id}
        proprio, durations = [], []
        pos = 0
        while pos < len(ids) and len(durations) < self.num_waypoints:
            if ids[pos] in ends:
                break
            block = ids[pos : pos + self.tokens_per_waypoint]
            if len(block) < self.tokens_per_waypoint:
                raise TokenizationError(
                    f"truncated waypoint at position {pos}: {len(block)} of {self.tokens_per_waypoint} tokens"
                )
            expect = [("<wp>", lambda t: t == L.wp_token)] + [("proprio bin", L.is_proprio)] * P
            expect += [("<dur>", lambda t: t == L.dur_token), ("duration", L.is_duration)]
            for off, (name, ok) in enumerate(expect):
                if not ok(block[off]):
                    raise TokenizationError(f"position {pos + off}: expected {name} token, got id {block[off]}")
            proprio.append(self.bins.decode(L.bin_of(np.asarray(block[1 : 1 + P]))))
            durations.append(int(L.duration_of(block[-1])))
            pos += self.tokens_per_waypoint
            if durations[-1] == 0:
                break
        if not durations:
            raise TokenizationError("token stream holds no waypoint")
        rest = [t for t in ids[pos:] if t not in ends]
        if rest:
            raise TokenizationError(
                f"{len(rest)} unexpected token(s) after the last waypoint at position {pos} (first: id {rest[0]})"
            )
        return np.stack(proprio), np.asarray(durations, np.int64)
