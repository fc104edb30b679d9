"""Image data sets as tensors, read with torchvision's own readers, and on-device augmentation.

Data sets (``dataset`` key of a task's configuration):

* ``cifar10``, ``cifar100``: torchvision's ``CIFAR10`` / ``CIFAR100`` from ``data_dir``
  (``cifar-10-batches-py`` / ``cifar-100-python``); 50,000 training and 10,000 test images,
  32x32 RGB; CIFAR-100 with its 100 fine labels. Where the machine is online, ``download=True``
  fetches them with torchvision's checksums.
* ``fashion-mnist``: torchvision's ``FashionMNIST`` (60,000 / 10,000 28x28 grey images, 10
  classes). The four IDX files (plain or .gz) are also found in ``data_dir/fashion-mnist``,
  ``data_dir`` and Debian's ``dataset-fashion-mnist`` location, and decompressed into torchvision's
  layout.

Pixels are scaled to [0, 1] and standardised per channel with the training set's mean and standard
deviation. Validation is the test split (its first ``val_size`` images).
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sensitivity.errors import UserError
from sensitivity.tasks.base import TensorData, subset_first

IMAGE_DATASETS = ("cifar10", "cifar100", "fashion-mnist")
"""Data sets :func:`load_image_data` reads."""

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the four IDX .gz files."""

_FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _fashion_mnist_dirs(data_dir: Path) -> list[Path]:
    extra = os.environ.get("ADAMRAG_SENS_FASHION_MNIST_DIR")
    dirs = [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist", data_dir]
    if extra:
        dirs.insert(0, Path(extra))
    dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


_IDX_DIMS = {"images": 3, "labels": 1}


def _idx_problem(path: Path, name: str) -> str | None:
    """Why the uncompressed file ``path`` is not the IDX file ``name`` (None when its header fits):
    an IDX header is two zero bytes, the type byte 0x08 (unsigned byte) and the number of dimensions
    (3 for images, 1 for labels), then one big-endian 32-bit size per dimension."""
    with path.open("rb") as fh:
        head = fh.read(4)
    dims = _IDX_DIMS["images" if "images" in name else "labels"]
    if len(head) < 4 or head[:3] != b"\x00\x00\x08" or head[3] != dims:
        return f"not an IDX file of unsigned bytes with {dims} dimension(s) (header {head.hex() or 'empty'})"
    return None


def _copy_idx_files(found: dict[str, Path], raw: Path) -> None:
    """Copy (decompressing .gz) the four IDX files into ``raw``, each checked before it is kept.

    Each file is written to a ``.part`` file and renamed only once whole and checked, so a crash
    never leaves a half-written IDX file; on any bad file, everything this call wrote (files and
    folders) is removed again.

    Raises:
        UserError: a file that is not gzip (when named .gz), is truncated, or is not an IDX file;
            the message names it.
    """
    created = [d for d in (raw, *raw.parents) if not d.exists()]
    written: list[Path] = []
    raw.mkdir(parents=True, exist_ok=True)
    try:
        for name, path in found.items():
            target = raw / name
            if target.is_file():
                continue
            tmp = raw / f".{name}.part"
            opener = gzip.open if path.suffix == ".gz" else open
            try:
                with opener(path, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                problem = _idx_problem(tmp, name)
            except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
                problem = f"{'not a readable gzip file' if path.suffix == '.gz' else 'unreadable'} ({err})"
            if problem is not None:
                tmp.unlink(missing_ok=True)
                raise UserError(f"Fashion-MNIST file {path} is {problem}; replace it with the real file "
                                f"(or delete it and pass --download on a machine online)")
            os.replace(tmp, target)
            written.append(target)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def _prepare_fashion_mnist(data_dir: Path, download: bool) -> None:
    """Make ``data_dir/FashionMNIST/raw`` hold the four uncompressed IDX files torchvision reads.

    Looks for the files (plain or .gz) in ``data_dir/FashionMNIST/raw``, ``data_dir/fashion-mnist``,
    ``data_dir`` and Debian's location, and decompresses .gz copies into the torchvision layout.

    Raises:
        UserError: the files are nowhere and ``download`` is False, or one of them is corrupt
            (see :func:`_copy_idx_files`).
    """
    raw = data_dir / "FashionMNIST" / "raw"
    if all((raw / name).is_file() for name in _FASHION_FILES):
        return
    for folder in _fashion_mnist_dirs(data_dir):
        found = {}
        for name in _FASHION_FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
        if len(found) == len(_FASHION_FILES):
            _copy_idx_files(found, raw)
            return
    if download:
        return  # torchvision downloads and checks them
    looked = ", ".join(str(d) for d in _fashion_mnist_dirs(data_dir))
    raise UserError(
        f"Fashion-MNIST not found (looked in {looked}); install Debian's dataset-fashion-mnist, "
        f"copy the four IDX files into {data_dir}/fashion-mnist, or pass --download on a machine online"
    )


def _normalise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x_train - mean) / std, (x_val - mean) / std


def load_image_data(config: dict[str, Any]) -> TensorData:
    """Load an image data set as tensors of shape (N, C, H, W) float32, standardised per channel.

    ``config``: ``dataset`` (one of :data:`IMAGE_DATASETS`), ``data_dir``, ``download``,
    ``train_size`` (first N training images), ``val_size`` (first N test images).

    Raises:
        UserError: unknown data set, or the files are missing or unreadable (the message says
            where it looked and how to get them).
    """
    from torchvision import datasets

    dataset = config["dataset"]
    data_dir = Path(config.get("data_dir") or "data").expanduser()
    download = bool(config.get("download", False))
    if dataset in _CIFAR:
        reader, folder, name, num_classes = _CIFAR[dataset]
        try:
            train = getattr(datasets, reader)(str(data_dir), train=True, download=download)
            test = getattr(datasets, reader)(str(data_dir), train=False, download=download)
        except (RuntimeError, OSError) as err:  # missing or corrupt files; a failed download (URLError)
            raise UserError(
                f"{name} not found in {data_dir / folder} ({_first_line(err)}); "
                f"pass --download on a machine online, or --data-dir pointing at a folder that holds {folder}"
            ) from None
        except (KeyError, ValueError, EOFError, pickle.UnpicklingError) as err:  # right checksum, wrong content
            raise UserError(f"{name} in {data_dir / folder} is unreadable ({type(err).__name__}: {_first_line(err)}); "
                            f"delete that folder and download it again") from None
        to_tensor = lambda a: torch.as_tensor(a).permute(0, 3, 1, 2).float() / 255.0  # noqa: E731
        x_tr, y_tr = to_tensor(train.data), torch.as_tensor(train.targets, dtype=torch.int64)
        x_va, y_va = to_tensor(test.data), torch.as_tensor(test.targets, dtype=torch.int64)
        name += " (32x32 RGB)"
    elif dataset == "fashion-mnist":
        _prepare_fashion_mnist(data_dir, download)
        try:
            train = datasets.FashionMNIST(str(data_dir), train=True, download=download)
            test = datasets.FashionMNIST(str(data_dir), train=False, download=download)
        except (RuntimeError, OSError, AssertionError, ValueError) as err:  # torchvision asserts on bad IDX headers
            raise UserError(f"Fashion-MNIST in {data_dir / 'FashionMNIST' / 'raw'} is unreadable "
                            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'bad IDX file'}); "
                            f"delete that folder and run again") from None
        x_tr, y_tr = train.data.unsqueeze(1).float() / 255.0, train.targets.long()
        x_va, y_va = test.data.unsqueeze(1).float() / 255.0, test.targets.long()
        name, num_classes = "Fashion-MNIST (28x28 grey)", 10
    else:
        raise UserError(f"unknown dataset {dataset!r}; choose one of: {', '.join(IMAGE_DATASETS)}")
    x_tr, y_tr = subset_first(x_tr, y_tr, config.get("train_size"))
    x_va, y_va = subset_first(x_va, y_va, config.get("val_size"))
    x_tr, x_va = _normalise(x_tr, x_va)
    return TensorData(
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        num_classes=num_classes,
        description=f"{name}, {len(y_tr)} train / {len(y_va)} validation (test split)",
    )


_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "CIFAR-10", 10),
    "cifar100": ("CIFAR100", "cifar-100-python", "CIFAR-100", 100),
}
"""dataset -> (torchvision reader, folder under data_dir, display name, classes)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, on ``x``'s device.

    Args:
        x: images, shape (B, C, H, W).
        generator: random source on ``x``'s device (None: the global one).

    Returns:
        Augmented images, shape (B, C, H, W), same dtype and memory format.
    """
    b, _, h, w = x.shape
    pad = 4 if h >= 32 else 2
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
