"""``char-lm``: a small character-level decoder-only Transformer on a plain-text file.

Data: ``text_file`` (``--text-file PATH``, any UTF-8 text), or by default the **Python standard
library's own source files** listed in :data:`DEFAULT_CORPUS`, read in that order from the
running interpreter's ``stdlib`` folder and joined with a newline: real text (code, comments,
docstrings) that every machine with Python has offline. Its exact content depends on the Python
version, so the data description names the version, the size and the SHA-256 of the text.

The vocabulary is the set of characters of the whole text. The first 90 % of the text trains, the
last 10 % validates; ``train_size`` / ``val_size`` keep the first N characters of each part. Both
parts are cut into non-overlapping sequences of ``block_size`` + 1 characters: the model reads the
first ``block_size`` and predicts each next character. An epoch is one pass over the training
sequences in a random order.

Model (the GPT shape of Radford et al. 2019, as in Karpathy's nanoGPT): token and learned position
embeddings, ``n_layer`` pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP
(4 x width), a final LayerNorm and an output layer tied to the token embedding; no dropout.

Metrics: ``val_loss``, the mean cross-entropy per character in nats; ``val_bpc`` = val_loss / ln 2,
bits per character; ``val_ppl`` = exp(val_loss), the per-character perplexity; ``val_acc``, the
share of characters predicted exactly.
"""

from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sensitivity.errors import UserError
from sensitivity.tasks.base import Metric, TensorData, TensorTask

DEFAULT_CORPUS = (
    "string.py", "textwrap.py", "functools.py", "heapq.py", "bisect.py", "contextlib.py", "abc.py",
    "random.py", "os.py", "fractions.py", "statistics.py", "difflib.py", "json/encoder.py",
    "json/decoder.py", "collections/__init__.py", "enum.py", "dataclasses.py", "argparse.py",
    "inspect.py", "typing.py",
)
"""The default corpus: these standard-library source files, relative to ``sysconfig``'s ``stdlib``
path, in this order (about 0.9 MB of text on Python 3.11)."""

VAL_FRACTION = 0.1
"""The last tenth of the text is the validation part."""

METRICS = (
    Metric("val_loss", "minimize", "nats/char", "validation loss"),
    Metric("val_bpc", "minimize", "bits/char", "validation bits per character"),
    Metric("val_ppl", "minimize", "per char", "validation perplexity"),
    Metric("val_acc", "maximize", "fraction", "validation next-character accuracy"),
)


def default_corpus_files() -> list[Path]:
    """The paths of :data:`DEFAULT_CORPUS` in this interpreter's standard library, in order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [stdlib / name for name in DEFAULT_CORPUS]


def read_text(config: dict[str, Any]) -> tuple[str, str]:
    """The text and a phrase naming its source.

    Raises:
        UserError: the text file (or a standard-library file of the default corpus) is missing,
            unreadable, not UTF-8, or too short to make one training and one validation sequence.
    """
    path = config.get("text_file")
    if path:
        files, source = [Path(path).expanduser()], f"text file {path}"
    else:
        files = default_corpus_files()
        source = f"Python {sys.version_info.major}.{sys.version_info.minor} standard library ({len(files)} source files)"
    parts = []
    for file in files:
        try:
            parts.append(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            hint = "check --text-file" if path else "this Python has no standard-library sources; pass --text-file PATH"
            raise UserError(f"text file {file} does not exist; {hint}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read {file} as UTF-8 text ({type(err).__name__}); give a plain-text file with --text-file") from None
    return "\n".join(parts), source


def encode(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids of shape (len(text),) int64, vocabulary: the sorted code points, shape (V,))."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    vocab, ids = np.unique(codes, return_inverse=True)
    return ids.astype(np.int64), vocab


def _sequences(ids: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: inputs (N, T) and next-character targets (N, T)."""
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    return x, y


def load_text_data(config: dict[str, Any]) -> TensorData:
    """The text as next-character prediction tensors: x, y of shape (N, block_size), int64.

    Raises:
        UserError: see :func:`read_text`; also a ``--train-size``/``--val-size`` below one sequence
            (``block_size + 1`` characters), or a text too short for one sequence of each.
    """
    text, source = read_text(config)
    block = int(config["block_size"])
    ids, vocab = encode(text)
    split = int(len(ids) * (1 - VAL_FRACTION))
    train, val = torch.from_numpy(ids[:split]), torch.from_numpy(ids[split:])
    if config.get("train_size"):
        train = train[: int(config["train_size"])]
    if config.get("val_size"):
        val = val[: int(config["val_size"])]
    need = block + 1  # one sequence: the model's context of `block` characters and the character after it
    for flag, part, key in (("--train-size", train, "train_size"), ("--val-size", val, "val_size")):
        if len(part) >= need:
            continue
        if config.get(key) and int(config[key]) < need:  # the user's size cut it, not the text
            raise UserError(f"{flag} {int(config[key])} is too small for char-lm: one sequence is {need} characters "
                            f"(a context of {block} and the next character); give {flag} {need} or more")
        raise UserError(f"{source} is too short: its {len(text):,} characters give fewer than {need} for "
                        f"{'training' if key == 'train_size' else 'validation'} (one sequence of a {block}-character "
                        f"context and the next character, {VAL_FRACTION:.0%} of the text held out for validation); "
                        f"give a longer --text-file")
    x_tr, y_tr = _sequences(train, block)
    x_va, y_va = _sequences(val, block)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return TensorData(
        x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, num_classes=len(vocab),
        description=(f"{source}, {len(text):,} characters (sha256 {digest}), vocabulary {len(vocab)}; "
                     f"{y_tr.numel():,} train / {y_va.numel():,} validation characters in sequences of {block}"),
    )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a causal mask; (B, T, C) -> (B, T, C)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise UserError(f"char-lm: d_model {width} is not divisible by n_head {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, C/heads)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    """Decoder-only Transformer: token ids (B, T) -> next-token logits (B, T, vocab)."""

    def __init__(self, vocab: int, block_size: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Embedding(block_size, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.token.weight  # tied (Press & Wolf 2017), as GPT-2 and nanoGPT
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("out.weight") or name.endswith("mlp.2.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.token(ids) + self.position(positions)
        return self.head(self.ln(self.blocks(x)))


def build_char_transformer(config: dict[str, Any], data: TensorData) -> nn.Module:
    """A :class:`CharTransformer` sized by ``d_model``, ``n_layer``, ``n_head``, ``block_size``."""
    return CharTransformer(data.num_classes, int(config["block_size"]), int(config["d_model"]),
                           int(config["n_layer"]), int(config["n_head"]))


class CharLMTask(TensorTask):
    """:class:`TensorTask` whose evaluation adds bits per character and perplexity."""

    def evaluate(self, config: dict[str, Any], model: nn.Module, data: TensorData, autocast: bool) -> dict[str, float]:
        out = super().evaluate(config, model, data, autocast)
        loss = out["val_loss"]
        return {"val_loss": loss, "val_bpc": loss / math.log(2),
                "val_ppl": math.exp(loss) if loss < 700 else math.inf, "val_acc": out["val_acc"]}


CHAR_LM = CharLMTask(
    name="char-lm",
    description="character-level decoder-only Transformer (2 layers, width 64, 4 heads, context 64) on a text file",
    defaults={
        "dataset": "text",
        "text_file": None,
        "epochs": 1,
        "batch_size": 16,
        "block_size": 64,
        "d_model": 64,
        "n_layer": 2,
        "n_head": 4,
        "eval_batch_size": 256,
        "schedule": "constant",
        "warmup_epochs": 0,
        "train_size": 100_000,
        "val_size": 20_000,
    },
    datasets=("text",),
    load=load_text_data,
    build_model=build_char_transformer,
    metrics=METRICS,
    epoch="one pass over the training text in non-overlapping sequences, in a random order",
    example_unit="characters",
    data_source="--text-file PATH, default: " + ", ".join(DEFAULT_CORPUS) + " of Python's standard library, in that order",
    cpu_trial_time="1.7 s CPU, 1 thread (7.6 s wall on 2 cores shared with ~10 busy jobs)",
    autocast=True,
    cpu_threads=1,  # see Task.cpu_threads: on 2 shared cores a second, spinning thread cost 25x the CPU time per step
)
