"""bench train: the product's trial loop and a plain PyTorch loop, both timed in one run on the same batch."""

from __future__ import annotations

import statistics

import pytest

from sensitivity.errors import UserError
from sensitivity.bench.training_throughput import bench_train, format_result
from tests.helpers.idx_files import write_fashion_mnist


@pytest.mark.slow
def test_both_loops_are_timed_and_the_ratio_is_theirs():
    result = bench_train("fmnist-cnn", synthetic=True, device="cpu", batch_size=8, steps=2, rounds=2)
    assert len(result.product) == len(result.plain) == 2
    assert all(r > 0 for r in result.product + result.plain)
    assert result.ratio == pytest.approx(statistics.median(result.product) / statistics.median(result.plain))
    lines = format_result(result)
    assert "synthetic" in lines[0] and "(1, 28, 28)" in lines[0]  # synthetic data is labelled as such
    assert "fp32" in lines[1] and "crop+flip" not in lines[1]  # fmnist-cnn does not augment, as DeepOBS
    assert lines[3] == f"ratio product / plain: {result.ratio:.2f}"


@pytest.mark.slow
def test_resnet18_on_synthetic_cifar_shapes():
    result = bench_train("resnet18", synthetic=True, device="cpu", batch_size=4, steps=1, rounds=1)
    assert "(3, 32, 32)" in result.data and result.augmented
    assert result.product[0] > 0 and result.plain[0] > 0


@pytest.mark.slow
def test_real_data_are_named_and_bad_requests_are_user_errors(tmp_path):
    write_fashion_mnist(tmp_path / "fashion-mnist", n_train=16, n_test=8)
    result = bench_train("fmnist-cnn", synthetic=False, device="cpu", batch_size=8, steps=2, rounds=1,
                         config={"data_dir": str(tmp_path), "train_size": None, "val_size": None})
    assert result.data == "Fashion-MNIST (28x28 grey) (real data)"
    with pytest.raises(UserError, match="fewer than --steps 3 x --batch-size 8"):
        bench_train("fmnist-cnn", synthetic=False, device="cpu", batch_size=8, steps=3,
                    config={"data_dir": str(tmp_path), "train_size": None, "val_size": None})
    with pytest.raises(UserError, match="image tasks"):
        bench_train("char-lm", device="cpu")
    with pytest.raises(UserError, match=">= 1"):
        bench_train("resnet18", batch_size=0, device="cpu")


@pytest.mark.slow
def test_bench_train_command_prints_both_rates_and_their_ratio():
    from typer.testing import CliRunner

    from sensitivity.cli import app

    result = CliRunner().invoke(app, ["bench", "train", "--task", "fmnist-cnn", "--synthetic", "--device", "cpu",
                                      "--batch-size", "8", "--steps", "2", "--rounds", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    import sys

    import optuna
    import torch

    header, *lines = result.output.strip().splitlines()
    python = ".".join(map(str, sys.version_info[:3]))
    assert header.startswith(f"python {python}, torch {torch.__version__}, optuna {optuna.__version__}; device cpu")
    assert "data synthetic" in lines[0]
    product = float(lines[1].rsplit(": ", 1)[1].split()[0].replace(",", ""))
    plain = float(lines[2].rsplit(": ", 1)[1].split()[0].replace(",", ""))
    assert lines[3].startswith("ratio product / plain: ")
    # the printed rates are rounded to whole images/s; the ratio is of the unrounded medians
    assert float(lines[3].rsplit(" ", 1)[1]) == pytest.approx(product / plain, rel=0.05, abs=0.02)
    bad = CliRunner().invoke(app, ["bench", "train", "--task", "cartpole", "--device", "cpu"])
    assert bad.exit_code == 2 and "image tasks" in bad.output
