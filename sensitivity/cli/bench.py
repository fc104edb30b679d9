"""The ``bench`` commands: each runs one benchmark of :mod:`sensitivity.bench` and prints what it
measured in this one run (times, and their ratios), the results headed by a line naming the versions
and the device (printed once the arguments have been accepted, so a refusal stays one line). The CLI is the only room that imports :mod:`sensitivity.bench`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sensitivity.cli import terminal
from sensitivity.cli.edge import user_errors
from sensitivity.cli.options import (BatchSize, BenchDevice, Command, Epochs, Group, JsonOut, TrainSize, ValSize,
                                     comma_list)
from sensitivity.cli.terminal import console
from sensitivity.errors import UserError

app = typer.Typer(help="Benchmarks: AdamRAG's optimizer step against torch Adam's; the trial loop's training "
                       "throughput against a plain PyTorch loop; a sweep against its bare training loop.",
                  no_args_is_help=True, rich_markup_mode="markdown", cls=Group)


def _print_header(device: str) -> None:
    """The versions and the device (resolved first, so that an absent one is one error line)."""
    from sensitivity.bench.printout import header
    from sensitivity.train import resolve_device

    console.print(header(str(resolve_device(device))), highlight=False)


def _write_json(path: Optional[Path], data: Any) -> None:
    if path is None:
        return
    try:
        path.write_text(json.dumps(data, indent=2, default=float))
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror}); give another --json path") from None


@app.command("optimizer", cls=Command)
@user_errors
def bench_optimizer_command(
    device: BenchDevice = "auto",
    sizes: Annotated[Optional[str], typer.Option(help="Comma-separated parameter sets: tiny, resnet18 (11.2M), 200m. Default: resnet18 on CPU, resnet18,200m on CUDA.")] = None,
    paths: Annotated[str, typer.Option(help="Comma-separated paths: foreach, fused, forloop.")] = "foreach,fused,forloop",
    steps: Annotated[int, typer.Option(help="Timed steps per optimizer and row (>= 1); the median is reported.")] = 50,
    warmup: Annotated[int, typer.Option(help="Untimed steps per optimizer first (>= 0).")] = 10,
    json_out: JsonOut = None,
) -> None:
    """Time one step of AdamRAG and torch Adam (same path) and print the times and their ratio."""
    from sensitivity.bench import optimizer_step

    size_list = tuple(s.strip() for s in sizes.split(",") if s.strip()) if sizes is not None else None
    path_list = tuple(s.strip() for s in paths.split(",") if s.strip())
    rows = optimizer_step.bench_optimizer(device=device, sizes=size_list, paths=path_list, steps=steps, warmup=warmup)
    _print_header(device)
    terminal.print_table(optimizer_step.results_table(rows))
    console.print(optimizer_step.NOTE)
    if json_out:
        from sensitivity.bench.printout import header

        _write_json(json_out, {"versions": header(device), "torch": _torch_version(), "rows": rows})


def _torch_version() -> str:
    import torch

    return torch.__version__


@app.command("train", cls=Command)
@user_errors
def bench_train_command(
    task: Annotated[str, typer.Option(help="Image task: resnet18 or fmnist-cnn.")] = "resnet18",
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Random images of the data set's shape instead of the real data (labelled synthetic in the output).")] = False,
    dataset: Annotated[Optional[str], typer.Option(help="Data set (shape) to use, e.g. cifar10, cifar100, fashion-mnist (default: the task's).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the real data (without --synthetic).")] = None,
    device: BenchDevice = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per step, both loops.")] = 128,
    steps: Annotated[Optional[int], typer.Option(help="Timed steps per round and loop (default 50 on CUDA, 4 on the CPU).")] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Alternating timed rounds of each loop; medians are reported (default 2 on CUDA, 6 on the CPU, where one round's noise is a few percent).")] = None,
) -> None:
    """Images per second of this product's trial loop and of a plain PyTorch loop, and their ratio."""
    from sensitivity.bench.training_throughput import bench_train, format_result

    config = {k: v for k, v in (("dataset", dataset), ("data_dir", str(data_dir) if data_dir else None)) if v is not None}
    result = bench_train(task, synthetic=synthetic, device=device, batch_size=batch_size, steps=steps, rounds=rounds,
                         config=config)
    _print_header(device)
    for line in format_result(result):
        console.print(line, highlight=False)


@app.command("sweep", cls=Command)
@user_errors
def bench_sweep_command(
    task: Annotated[str, typer.Option(help="Workload of the benchmarked sweep.")] = "digits-mlp",
    points: Annotated[Optional[int], typer.Option(help="A random study of about N points (rounded up to a multiple of the optimizers) instead of the default grid (108 points).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (as the sweep's --device).")] = "cpu",
    epochs: Epochs = None,
    train_size: TrainSize = None,
    val_size: ValSize = None,
    batch_size: BatchSize = None,
    optimizers: Annotated[Optional[str], typer.Option(help="Comma-separated optimizers (default: the sweep's).")] = None,
    storage: Annotated[str, typer.Option(help="sqlite (a fresh file each round), journal (a fresh journal file), or a database URL (a fresh study in it).")] = "sqlite",
    repeat: Annotated[int, typer.Option(help="Rounds; each runs the sweep, then the bare loop; medians are quoted.")] = 3,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="resnet18: random tensors of CIFAR-10's shape (throughput only).")] = False,
    trials_per_gpu: Annotated[Optional[str], typer.Option(help="With --device cuda: worker processes per GPU to compare, e.g. 1,2,4,8; prints aggregate img/s for each and the one-process batch-512 bf16 ceiling.")] = None,
    population: Annotated[Optional[str], typer.Option(help="The sweep's --population: K, 1 or auto (default: auto, populations where the task declares them); the bare loop runs the same points one by one.")] = None,
    json_out: JsonOut = None,
) -> None:
    """Time a sweep against the same trainings as bare train_trial calls; print the ratio and the bookkeeping per trial.

    Each round runs `adamrag-sens sweep` as a user runs it (a fresh process and database), then
    the same points as bare train_trial calls in one fresh process. With --device cuda
    --trials-per-gpu K,...: aggregate training throughput of K trials sharing GPU 0, for each K.
    """
    terminal.quiet_optuna()
    dataset = None
    if synthetic:
        if task != "resnet18":
            raise UserError(f"--synthetic is for --task resnet18 (random tensors of CIFAR-10's shape), not {task!r}")
        dataset = "synthetic"
    if trials_per_gpu is not None:
        if not device.startswith("cuda"):
            raise UserError(f"--trials-per-gpu compares worker processes sharing a GPU; add --device cuda (not {device!r})")
        try:
            ks = [int(k) for k in trials_per_gpu.split(",") if k.strip()]
        except ValueError:
            raise UserError(f"--trials-per-gpu {trials_per_gpu!r} is not a list of counts; give e.g. 1,2,4,8") from None
        _bench_gpu_packing(ks, device, task, dataset, epochs, train_size, val_size, batch_size, json_out)
        return
    from sensitivity.bench import sweep_overhead

    result = sweep_overhead.bench_sweep(
        task=task, points=points, device=device, epochs=epochs, train_size=train_size, val_size=val_size,
        batch_size=batch_size, optimizers=comma_list(optimizers), storage=storage, repeat=repeat, dataset=dataset,
        population=population, on_run=lambda r, run: console.print(
            f"  round {r + 1}: sweep {run.sweep_s:.2f} s, bare loop {run.bare_s:.2f} s, ratio {run.ratio:.3f} "
            f"(CPU {run.sweep_cpu_s:.2f} / {run.bare_cpu_s:.2f} s)", highlight=False),
    )
    print_sweep_result(result, device)
    _write_json(json_out, {**dataclasses.asdict(result), "ratio": result.median("ratio"),
                           "cpu_ratio": result.median("cpu_ratio")})


def print_sweep_result(result: Any, device: str) -> None:
    """What ``bench sweep`` prints after its rounds: the versions, the table of rounds, then one line
    per finding of :func:`sensitivity.bench.sweep_overhead.sweep_summary` (a new finding is a new
    line there)."""
    from sensitivity.bench import sweep_overhead

    _print_header(device)
    terminal.print_table(sweep_overhead.sweep_table(result))
    for line in sweep_overhead.sweep_summary(result):
        console.print(line, highlight=False)


def _bench_gpu_packing(ks: list[int], device: str, task: str, dataset: Optional[str], epochs: Optional[int],
                       train_size: Optional[int], val_size: Optional[int], batch_size: Optional[int],
                       json_out: Optional[Path]) -> None:
    from sensitivity.bench import gpu_packing

    gpu = int(device.split(":", 1)[1]) if ":" in device else 0
    packing = gpu_packing.bench_gpu_packing(
        ks, gpu=gpu, task=task, dataset=dataset, epochs=epochs or 3,
        train_size=train_size, val_size=val_size or 2_000, batch_size=batch_size,
        on_row=lambda row: console.print(
            f"  K={row['trials_per_gpu']}: {row['trials']} trials, {row['img_per_s']:,.0f} img/s aggregate "
            f"({row['images']:,} images in {row['span_s']:.1f} s)", highlight=False),
    )
    _print_header(f"cuda:{gpu}")
    terminal.print_table(gpu_packing.packing_table(packing))
    if dataset == "synthetic":
        console.print("data: SYNTHETIC random tensors of CIFAR-10's shape; throughput only")
    _write_json(json_out, dataclasses.asdict(packing))
