"""Write tiny CIFAR-100 data sets in the real on-disk format (python pickles), for tests that must
not download anything.

torchvision checks each file's MD5 against the real archive's; :func:`trust_files` points those
checksums at the tiny files, so the reader's integrity check still runs, on them.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 30, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train,test,meta}`` as the CIFAR-100 python version lays them out.

    Each file is a pickled dict: ``data`` (N, 3072) uint8, the 1,024 red, then green, then blue
    pixels of a 32x32 image row by row; ``fine_labels`` and ``coarse_labels`` (N ints). ``meta``
    holds ``fine_label_names`` (100) and ``coarse_label_names`` (20). Image i's red channel is
    filled with its label, so a test can check that images and labels stay paired.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, size=n)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data[:, :1024] = labels[:, None].astype(np.uint8)
        entry = {"filenames": [f"img{i}.png" for i in range(n)], "batch_label": f"{split} batch",
                 "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(), "data": data}
        (folder / split).write_bytes(pickle.dumps(entry))
    meta = {"fine_label_names": [f"class{i}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


def trust_files(monkeypatch, folder: Path) -> None:
    """Make torchvision's CIFAR100 expect the MD5 sums of the files in ``folder``."""
    from torchvision.datasets import CIFAR100

    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in ("train", "test", "meta")}
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": md5["meta"]})
