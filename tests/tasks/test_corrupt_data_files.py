"""Corrupt data files are one line naming the file, exit 2, and nothing is left
behind (no .part file, no new folder, no half-set-up raw folder, no study database)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.errors import UserError
from sensitivity.tasks import get_task

from tests.helpers.idx_files import write_fashion_mnist

runner = CliRunner()
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(autouse=True)
def no_debian_copy(monkeypatch, tmp_path):
    monkeypatch.setattr("sensitivity.tasks.images.DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("ADAMRAG_SENS_FASHION_MNIST_DIR", raising=False)


def test_html_saved_as_gz_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    """The issue's input: four .gz files that hold an HTML page (a failed download)."""
    data = tmp_path / "D"
    (data / "fashion-mnist").mkdir(parents=True)
    for name in FILES:
        (data / "fashion-mnist" / f"{name}.gz").write_text("<html>\n")
    before = _tree(tmp_path)
    result = runner.invoke(app, ["sweep", "--task", "resnet18", "--dataset", "fashion-mnist", "--data-dir", str(data),
                                 "--optimizers", "adam", "--lr", "1e-3", "--beta1", "0.9", "--epochs", "1",
                                 "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a readable gzip file" in lines[0]
    assert f"{data}/fashion-mnist/train-images-idx3-ubyte.gz" in lines[0]
    assert _tree(tmp_path) == before  # no .part, no FashionMNIST/raw, no s.db


BAD = {
    "truncated gzip": ("t10k-labels-idx1-ubyte", lambda good: good[: len(good) // 2], "not a readable gzip file"),
    "gzip of an html page": ("t10k-images-idx3-ubyte", lambda good: gzip.compress(b"<html>\n"), "not an IDX file"),
    "labels where images belong": ("train-images-idx3-ubyte", None, "not an IDX file of unsigned bytes with 3"),
    "empty gzip": ("train-labels-idx1-ubyte", lambda good: gzip.compress(b""), "header empty"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_among_good_ones_names_it_and_removes_what_was_written(tmp_path, case):
    name, make, expected = BAD[case]
    src = write_fashion_mnist(tmp_path / "fashion-mnist", n_train=8, n_test=4)
    good = (src / f"{name}.gz").read_bytes()
    if make is None:
        content = (src / "train-labels-idx1-ubyte.gz").read_bytes()
    else:
        content = make(good)
    (src / f"{name}.gz").write_bytes(content)
    before = _tree(tmp_path)
    task = get_task("resnet18")
    with pytest.raises(UserError, match=rf"Fashion-MNIST file {src / name}\.gz is .*{expected}"):
        task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert _tree(tmp_path) == before


def test_an_existing_raw_folder_is_kept_and_only_new_files_removed(tmp_path):
    src = write_fashion_mnist(tmp_path / "fashion-mnist", n_train=8, n_test=4)
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "notes.txt").write_text("mine\n")
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b junk")
    task = get_task("resnet18")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz is not a readable gzip file"):
        task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert _tree(raw) == ["notes.txt"]


def test_good_files_still_load_after_a_repair(tmp_path):
    src = write_fashion_mnist(tmp_path / "fashion-mnist", n_train=8, n_test=4)
    good = (src / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(b"<html>")
    task = get_task("resnet18")
    with pytest.raises(UserError):
        task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(good)
    data = task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert data.x_train.shape == (8, 1, 28, 28) and len(data.y_val) == 4


def test_corrupt_cifar_batch_is_a_user_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (folder / name).write_bytes(b"<html>\n")
    task = get_task("resnet18")
    with pytest.raises(UserError, match="CIFAR-10"):
        task.load(task.config(dataset="cifar10", data_dir=str(tmp_path)))
