"""The optimizer benchmark: structure of its rows and its command line (never its timings)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from sensitivity.bench.optimizer_step import bench_optimizer, parameter_shapes
from sensitivity.cli import app
from sensitivity.errors import UserError


@pytest.mark.slow
def test_resnet18_shapes_are_the_cifar_resnet18_parameter_set():
    shapes = parameter_shapes("resnet18")
    assert len(shapes) == 62
    assert shapes[0] == (64, 3, 3, 3)  # CIFAR stem
    assert shapes[-2:] == [(10, 512), (10,)]
    # torchvision's 11,181,642 for 10 classes, minus the 7x7 stem's 64*3*(49 - 9) weights
    assert sum(math.prod(s) for s in shapes) == 11_181_642 - 64 * 3 * 40


def test_bench_rows_have_positive_times_and_consistent_ratios():
    rows = bench_optimizer(device="cpu", sizes=["tiny"], paths=["foreach", "forloop", "fused"], steps=4, warmup=1)
    assert [r["path"] for r in rows] == ["foreach", "forloop", "fused"]
    n = sum(math.prod(s) for s in parameter_shapes("tiny"))
    for r in rows:
        assert r["size"] == "tiny" and r["device"] == "cpu" and r["n_params"] == n and r["n_tensors"] == 5
        assert r["adam_ms"] > 0 and r["copy_gbps"] > 0
        assert r["adamrag_floor_ms"] == pytest.approx(r["adam_floor_ms"] * 36 / 28)
    for r in rows[:2]:
        assert r["adamrag_ms"] > 0
        assert r["ratio"] == pytest.approx(r["adamrag_ms"] / r["adam_ms"])
        assert r["adamrag_gbps"] == pytest.approx(36 * n / (r["adamrag_ms"] / 1e3) / 1e9)
    fused = rows[2]
    assert fused["adamrag_ms"] is None and fused["ratio"] is None and "CUDA" in fused["note"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sizes=["1b"]), "unknown parameter set"),
        (dict(paths=["compiled"]), "unknown path"),
        (dict(device="tpu"), "unknown device"),
        (dict(steps=0), "steps"),
    ],
)
def test_bench_refuses_bad_arguments_with_a_user_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        bench_optimizer(**{"device": "cpu", "sizes": ["tiny"], **kwargs})


def test_bench_command_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        ["bench", "optimizer", "--device", "cpu", "--sizes", "tiny", "--paths", "foreach", "--steps", "3", "--warmup", "1",
         "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ratio" in result.output and "foreach" in result.output
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["adamrag_ms"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_bench_command_without_cuda_exits_2_with_one_line():
    result = CliRunner().invoke(app, ["bench", "optimizer", "--device", "cuda"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA GPU is visible" in lines[0]  # the sweep's device resolver and message
