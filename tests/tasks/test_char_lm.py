"""char-lm: the default corpus is real stdlib text read in a stated order; sequences predict the next
character; the model is causal; bits per character and perplexity follow from the loss."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import pytest
import torch

from sensitivity.errors import UserError
from sensitivity.tasks import get_task
from sensitivity.tasks.char_lm import DEFAULT_CORPUS, encode, read_text

CHAR_LM = get_task("char-lm")


def _config(tmp_path: Path, text: str, **kw):
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    return CHAR_LM.config(text_file=str(path), **{"block_size": 8, "train_size": None, "val_size": None, **kw})


def test_default_corpus_is_the_listed_stdlib_files_in_order():
    text, source = read_text(CHAR_LM.config())
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    expected = "\n".join((stdlib / name).read_text(encoding="utf-8") for name in DEFAULT_CORPUS)
    assert text == expected
    assert "standard library" in source and f"{len(DEFAULT_CORPUS)} source files" in source
    assert len(text) > 500_000


def test_sequences_predict_the_next_character(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    data = CHAR_LM.load(_config(tmp_path, text))
    # vocabulary: the sorted characters of the text
    assert data.num_classes == 26
    ids, vocab = encode(text)
    assert "".join(chr(c) for c in vocab) == "abcdefghijklmnopqrstuvwxyz"
    # the first 90 % trains (360 characters -> 44 sequences of 8 + 1), the rest validates
    assert data.x_train.shape == (44, 8) and data.x_val.shape == (4, 8)
    assert torch.equal(data.y_train[:, :-1], data.x_train[:, 1:])
    assert torch.equal(data.x_train.flatten()[: 8 * 44], torch.as_tensor(ids[: 8 * 44]))
    assert data.y_train[0, -1].item() == ids[8]  # the target after a sequence is the next sequence's first character
    assert torch.equal(data.x_val[0], torch.as_tensor(ids[360:368]))


def test_train_and_val_size_count_characters(tmp_path):
    data = CHAR_LM.load(_config(tmp_path, "xy" * 500, train_size=81, val_size=17))
    assert data.y_train.numel() == 80 and data.y_val.numel() == 16


def test_text_problems_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--text-file"):
        CHAR_LM.load(CHAR_LM.config(text_file=str(tmp_path / "missing.txt")))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xff")
    with pytest.raises(UserError, match="UTF-8"):
        CHAR_LM.load(CHAR_LM.config(text_file=str(tmp_path / "bin.txt")))
    with pytest.raises(UserError, match="too short"):
        CHAR_LM.load(_config(tmp_path, "short text"))


def test_model_is_causal_and_sized_by_the_config(tmp_path):
    cfg = _config(tmp_path, "abcdefgh" * 100, d_model=32, n_layer=2, n_head=4)
    data = CHAR_LM.load(cfg)
    torch.manual_seed(0)
    model = CHAR_LM.build_model(cfg, data).eval()
    x = data.x_train[:2].clone()
    logits = model(x)
    assert logits.shape == (2, 8, data.num_classes)
    x2 = x.clone()
    x2[:, 5] = (x2[:, 5] + 1) % data.num_classes
    changed = model(x2)
    assert torch.allclose(changed[:, :5], logits[:, :5], atol=1e-6)  # the past does not see the future
    assert not torch.allclose(changed[:, 5:], logits[:, 5:])
    assert model.head.weight is model.token.weight  # tied output layer
    # 2 blocks of (qkv 32x96+96, out 32x32+32, mlp 32x128+128 + 128x32+32, 2 LayerNorms 4x32) + embeddings + final LN
    block = (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32) + 4 * 32
    assert sum(p.numel() for p in model.parameters()) == 2 * block + 8 * 32 + 8 * 32 + 2 * 32


def test_bits_per_character_and_perplexity_follow_the_loss(tmp_path):
    cfg = _config(tmp_path, "the quick brown fox jumps over the lazy dog. " * 40)
    data = CHAR_LM.load(cfg)
    torch.manual_seed(0)
    model = CHAR_LM.build_model(cfg, data)
    out = CHAR_LM.evaluate(cfg, model, data, autocast=False)
    logits = model(data.x_val).detach()
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data.y_val.flatten()).item()
    assert out["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert out["val_bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert out["val_ppl"] == pytest.approx(math.exp(expected), rel=1e-5)
    # an untrained model with small weights is close to uniform over the vocabulary
    assert out["val_loss"] == pytest.approx(math.log(data.num_classes), rel=0.05)
    assert [m.name for m in CHAR_LM.metrics] == ["val_loss", "val_bpc", "val_ppl", "val_acc"]
    assert CHAR_LM.metric("val_loss").unit == "nats/char"
