"""``wp-data tokenizer``: a small SentencePiece model trained on RLDS datasets' instructions."""

from rlds_fixtures import INSTRUCTIONS

from wp_policy.tokenizer import TextTokenizer
from wp_training.data_cli import main


def test_tokenizer_command(libero_rlds, r1lite_rlds, tmp_path, capsys):
    out = tmp_path / "tok" / "tokenizer.model"
    assert main(["tokenizer", "--rlds", str(libero_rlds), str(r1lite_rlds), "--out", str(out)]) == 0
    assert "3 distinct instruction(s) from 2 dataset(s)" in capsys.readouterr().out
    tok = TextTokenizer(out)
    assert (tok.pad_id, tok.eos_id, tok.bos_id) == (0, 1, 2)
    for text in INSTRUCTIONS:
        assert tok.sp.decode(tok.encode(text)) == text
    assert main(["tokenizer", "--rlds", str(tmp_path), "--out", str(out)]) == 2
    assert "dataset_info.json" in capsys.readouterr().err
