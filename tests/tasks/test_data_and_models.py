"""Workloads: real data read in the real formats, models of the right shape, clear errors."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from sensitivity.errors import UserError
from sensitivity.tasks import TensorData, get_task
from sensitivity.tasks.images import crop_flip
from tests.helpers.cifar_files import trust_files, write_cifar100
from tests.helpers.idx_files import write_fashion_mnist


def test_digits_split_is_fixed_stratified_and_standardised():
    task = get_task("digits-mlp")
    data = task.load(task.config())
    assert data.x_train.shape == (1437, 64) and data.x_val.shape == (360, 64)
    assert data.y_train.dtype == torch.int64
    # stratified: every class is present in validation with 35-37 examples (1797 * 0.2 / 10)
    counts = torch.bincount(data.y_val, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert torch.allclose(data.x_train.mean(0), torch.zeros(64), atol=1e-5)
    again = task.load(task.config())
    assert torch.equal(again.x_val, data.x_val)


def test_digits_train_size_takes_the_first_examples():
    task = get_task("digits-mlp")
    full = task.load(task.config())
    part = task.load(task.config(train_size=100))
    assert len(part.y_train) == 100
    assert torch.equal(part.y_train, full.y_train[:100])


def test_fashion_mnist_is_read_from_gzipped_idx_files(tmp_path):
    src = write_fashion_mnist(tmp_path / "fashion-mnist", n_train=40, n_test=20)
    raw = gzip.decompress((src / "train-labels-idx1-ubyte.gz").read_bytes())
    expected_labels = np.frombuffer(raw[8:], dtype=np.uint8)
    task = get_task("resnet18")
    data = task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path), train_size=30))
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_val.shape == (20, 1, 28, 28)
    assert data.y_train.tolist() == expected_labels[:30].tolist()
    # decompressed into torchvision's layout, so the next load reads the plain files
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_missing_fashion_mnist_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr("sensitivity.tasks.images.DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    task = get_task("resnet18")
    with pytest.raises(UserError, match="Fashion-MNIST not found.*looked in.*dataset-fashion-mnist"):
        task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path / "empty")))


def test_missing_cifar10_says_how_to_get_it(tmp_path):
    task = get_task("resnet18")
    with pytest.raises(UserError, match="CIFAR-10 not found.*--download"):
        task.load(task.config(dataset="cifar10", data_dir=str(tmp_path)))


def test_resnet18_has_the_cifar_stem_and_ten_outputs(tmp_path):
    write_fashion_mnist(tmp_path / "fashion-mnist", n_train=8, n_test=4)
    task = get_task("resnet18")
    cfg = task.config(dataset="fashion-mnist", data_dir=str(tmp_path))
    data = task.load(cfg)
    model = task.build_model(cfg, data)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(data.x_val[:2]).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)


def test_crop_flip_moves_pixels_without_inventing_values():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    out = crop_flip(x, gen)
    assert out.shape == x.shape
    allowed = set(x.flatten().tolist()) | {0.0}  # zero padding
    assert set(out.flatten().tolist()) <= allowed
    # each output row is a contiguous (possibly reversed) run of one input row, or padding
    row = out[0, 0, 16]
    nonzero = row[row != 0]
    diffs = (nonzero[1:] - nonzero[:-1]).abs()
    assert torch.all(diffs == 1)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(UserError, match="digits-mlp.*resnet18"):
        get_task("mnist-cnn")


def test_junk_fashion_mnist_files_are_a_user_error(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file at all")
    task = get_task("resnet18")
    with pytest.raises(UserError, match="unreadable.*delete that folder"):
        task.load(task.config(dataset="fashion-mnist", data_dir=str(tmp_path)))


def test_digits_val_size_takes_the_first_validation_examples():
    task = get_task("digits-mlp")
    full = task.load(task.config())
    part = task.load(task.config(val_size=50))
    assert len(part.y_val) == 50 and torch.equal(part.y_val, full.y_val[:50])


# ---- fmnist-cnn: DeepOBS's 2c2d on the same Fashion-MNIST reader as resnet18 ------------------------

def test_fmnist_cnn_reads_fashion_mnist_exactly_as_resnet18_does(tmp_path):
    write_fashion_mnist(tmp_path / "fashion-mnist", n_train=40, n_test=20)
    cnn, resnet = get_task("fmnist-cnn"), get_task("resnet18")
    a = cnn.load(cnn.config(data_dir=str(tmp_path), train_size=None, val_size=None))
    b = resnet.load(resnet.config(dataset="fashion-mnist", data_dir=str(tmp_path)))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert a.x_train.shape == (40, 1, 28, 28)


def test_fmnist_cnn_is_deepobs_2c2d():
    cnn = get_task("fmnist-cnn")
    data = TensorData(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64), torch.zeros(2, 1, 28, 28),
                      torch.zeros(2, dtype=torch.int64), 10, "zeros")
    torch.manual_seed(0)
    model = cnn.build_model(cnn.config(), data)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 32, (5, 5)), (32, 64, (5, 5))]
    assert [(d.in_features, d.out_features) for d in dense] == [(7 * 7 * 64, 1024), (1024, 10)]
    # 5*5*1*32+32 + 5*5*32*64+64 + 3136*1024+1024 + 1024*10+10, as DeepOBS counts it
    assert sum(p.numel() for p in model.parameters()) == 832 + 51_264 + 3_212_288 + 10_250
    assert model(data.x_train).shape == (4, 10)
    # DeepOBS's initialisation: biases 0.05, weights N(0, 0.05) truncated at two standard deviations
    assert all(torch.all(m.bias == 0.05) for m in convs + dense)
    w = dense[0].weight.detach()
    assert w.abs().max() <= 0.1 and 0.04 < float(w.std()) < 0.05


# ---- resnet18 on CIFAR-100 ----------------------------------------------------------------------------

def test_cifar100_is_read_with_torchvision_and_has_100_classes(tmp_path, monkeypatch):
    folder = write_cifar100(tmp_path, n_train=24, n_test=12)
    trust_files(monkeypatch, folder)
    task = get_task("resnet18")
    data = task.load(task.config(dataset="cifar100", data_dir=str(tmp_path), val_size=10))
    assert data.x_train.shape == (24, 3, 32, 32) and data.x_val.shape == (10, 3, 32, 32)
    assert data.num_classes == 100
    with open(folder / "train", "rb") as f:
        labels = pickle.load(f)["fine_labels"]
    assert data.y_train.tolist() == labels
    # image i's red channel was written as its label: after per-channel standardisation the red
    # channel is an increasing function of the label, constant over each image
    red = data.x_train[:, 0]
    assert torch.all(red.amax(dim=(1, 2)) == red.amin(dim=(1, 2)))
    order = torch.argsort(torch.tensor(labels), stable=True)
    assert torch.all(red[order, 0, 0].diff() >= 0)
    model = task.build_model(task.config(dataset="cifar100"), data)
    assert model(data.x_val[:2]).shape == (2, 100)


def test_missing_cifar100_says_how_to_get_it(tmp_path):
    task = get_task("resnet18")
    with pytest.raises(UserError, match=r"CIFAR-100 not found in .*cifar-100-python.*--download"):
        task.load(task.config(dataset="cifar100", data_dir=str(tmp_path)))


def test_synthetic_images_have_cifar10s_shape_are_seeded_and_say_so():
    task = get_task("resnet18")
    data = task.load(task.config(dataset="synthetic", train_size=12, val_size=5))
    assert data.x_train.shape == (12, 3, 32, 32) and data.x_val.shape == (5, 3, 32, 32)
    assert data.y_train.dtype == torch.int64 and 0 <= int(data.y_train.min()) and int(data.y_train.max()) < 10
    assert "SYNTHETIC" in data.description
    again = task.load(task.config(dataset="synthetic", train_size=12, val_size=5))
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_val, data.y_val)
