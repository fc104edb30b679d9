"""A message names the flag the user set, not an internal parameter."""

from __future__ import annotations

import pytest

from sensitivity.errors import UserError
from sensitivity.tasks.char_lm import CHAR_LM

TEXT = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters


def _config(tmp_path, text=TEXT, **kw):
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return CHAR_LM.config(text_file=str(path), **kw)


@pytest.mark.parametrize("flag, key", [("--train-size", "train_size"), ("--val-size", "val_size")])
@pytest.mark.parametrize("size", [1, 50, 64])
def test_a_size_below_one_sequence_names_its_flag_and_the_minimum(tmp_path, flag, key, size):
    block = CHAR_LM.defaults["block_size"]
    other = {"val_size": 100} if key == "train_size" else {"train_size": 100}
    with pytest.raises(UserError) as info:
        CHAR_LM.load(_config(tmp_path, **{key: size}, **other))
    text = str(info.value)
    assert text.startswith(f"{flag} {size} is too small")
    assert f"{flag} {block + 1} or more" in text  # a sequence: the context and the next character
    assert "block_size" not in text and "\n" not in text


def test_the_smallest_sizes_allowed_load(tmp_path):
    need = CHAR_LM.defaults["block_size"] + 1
    data = CHAR_LM.load(_config(tmp_path, train_size=need, val_size=need))
    assert len(data.x_train) == 1 and len(data.x_val) == 1


def test_a_text_too_short_itself_names_the_text_not_a_size(tmp_path):
    with pytest.raises(UserError) as info:
        CHAR_LM.load(_config(tmp_path, text="short text " * 10))  # 110 characters: 11 held out
    text = str(info.value)
    assert "is too short" in text and "--text-file" in text
    assert "block_size" not in text and "--train-size" not in text


def test_the_sweep_names_the_flag(tmp_path):
    from typer.testing import CliRunner

    from sensitivity.cli import app

    db = tmp_path / "s.db"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", "--task", "char-lm", "--text-file", str(corpus), "--train-size", "50",
                                      "--optimizers", "adam", "--lr", "1e-3", "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--train-size 50 is too small" in lines[0] and "block_size" not in lines[0]
    assert not db.exists()
