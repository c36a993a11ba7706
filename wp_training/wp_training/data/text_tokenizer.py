"""Train a small SentencePiece model for tiny models, tests and the shipped demo policy.

Production uses PaliGemma's own SentencePiece file (user-provided; nothing is downloaded). The ids follow
PaliGemma's convention (pad 0, eos 1, bos 2, unk 3) so the same code paths run on both.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

DEFAULT_CORPUS = (
    "Task: pick up the red cube and lift it, State: 12 130 255 0 77;\n",
    "Action: |",
    "Task: stack the red block on the green block, State: 1 2 3 4 5 6 7 8 9 10;\n",
    "put the bowl on the plate. open the top drawer of the cabinet. turn on the stove.",
    "pick up the alphabet soup and place it in the basket",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30",
)


def train_sentencepiece(out_path: str | Path, texts: Iterable[str] = (), vocab_size: int = 400) -> Path:
    """Train a BPE SentencePiece model on ``texts`` (plus a small built-in corpus) and write it to ``out_path``."""
    import sentencepiece

    corpus = list(DEFAULT_CORPUS) + [t for t in texts if t.strip()]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 4),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        hard_vocab_limit=False,
        split_digits=True,
        user_defined_symbols=["\n"],
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.getvalue())
    return out_path
