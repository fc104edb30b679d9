"""The GPU-packing benchmark: aggregate training throughput of K trials sharing one GPU, for each K,
against the ceiling of one process training at a large batch.

``adamrag-sens bench sweep --device cuda --trials-per-gpu K,...`` wraps :func:`bench_gpu_packing`
and prints :func:`packing_table`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table

from sensitivity.bench import bare_loop
from sensitivity.bench.printout import fmt
from sensitivity.bench.sweep_overhead import sweep_spec, bench_sweep
from sensitivity.bench.timing import run_process
from sensitivity.errors import UserError
from sensitivity.train import resolve_device


@dataclasses.dataclass
class GpuPacking:
    """What :func:`bench_gpu_packing` measured.

    Attributes:
        rows: per K (worker processes on the GPU): ``trials_per_gpu``, ``trials``, ``images``
            (training images of all trials), ``span_s`` (first trial start to last trial end),
            ``img_per_s`` (aggregate: images / span, evaluation and bookkeeping included) and
            ``share`` (img_per_s / ceiling).
        ceiling_img_per_s: one process training at ``ceiling_batch`` (the training loop's own
            throughput, evaluation excluded).
        ceiling_batch: that batch size.
        description: the setting, for the printout.
    """

    rows: list[dict[str, Any]]
    ceiling_img_per_s: float
    ceiling_batch: int
    description: str


def bench_gpu_packing(trials_per_gpu: Sequence[int] = (1, 2, 4, 8), gpu: int = 0, task: str = "resnet18",
                      dataset: str | None = "synthetic", epochs: int | None = 3, train_size: int | None = None,
                      val_size: int | None = 2_000, batch_size: int | None = None, trials_each: int = 2,
                      ceiling_batch: int = 512,
                      on_row: Callable[[dict[str, Any]], None] | None = None) -> GpuPacking:
    """Aggregate training throughput of K concurrent trials on one GPU, for each K, and the ceiling.

    For each K a sweep runs with ``--gpus GPU --trials-per-gpu K`` (K worker processes sharing the
    GPU, each trial with its own batch size), ``trials_each`` trials per worker, all Adam at lr 1e-3
    with different seeds (the same work each, none diverging); its
    aggregate throughput is every trial's training images over the span from the first trial's
    start to the last one's end. The ceiling is one process training one trial at batch
    ``ceiling_batch`` (bf16 autocast and channels_last, as every CUDA trial), from the bare loop.

    Raises:
        UserError: no CUDA GPU, a GPU number that is not there, K < 1, or a failed run.
    """
    ks = [int(k) for k in trials_per_gpu]
    if not ks or min(ks) < 1:
        raise UserError(f"--trials-per-gpu {','.join(map(str, ks))}: give counts >= 1, e.g. 1,2,4,8")
    device = f"cuda:{gpu}"
    resolve_device(device)
    rows = []
    for k in ks:
        result = bench_sweep(task=task, points=k * trials_each, device="cuda", epochs=epochs, train_size=train_size,
                             val_size=val_size, batch_size=batch_size, optimizers=("adam",), dataset=dataset,
                             repeat=1, bare=False, seeds_of={"lr": 1e-3, "beta1": 0.9},
                             extra_sweep_args=["--gpus", str(gpu), "--trials-per-gpu", str(k)])
        run = result.runs[0]
        row = {"trials_per_gpu": k, "trials": run.trials, "images": run.images, "span_s": run.span_s,
               "img_per_s": run.images / run.span_s if run.span_s > 0 else math.nan}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    spec, _ = sweep_spec(task, None, device, epochs, train_size, val_size, ceiling_batch, ("adam",), dataset)
    config = spec.task_config()
    with tempfile.TemporaryDirectory(prefix="adamrag-sens-bench-") as folder:
        job, out = os.path.join(folder, "ceiling.json"), os.path.join(folder, "ceiling-out.json")
        with open(job, "w") as fh:
            json.dump({"task": task, "config": config, "device": device, "divergence_factor": spec.divergence_factor,
                       "points": [{"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "seed": 0}]}, fh)
        run_process(bare_loop.command(job, out), os.path.join(folder, "ceiling.txt"), dict(os.environ))
        with open(out) as fh:
            ceiling = float(json.load(fh)["trials"][0]["throughput"])
    for row in rows:
        row["share"] = row["img_per_s"] / ceiling if ceiling > 0 else math.nan
    desc = (f"{task} ({dataset or 'default data'}), {config['epochs']} epochs of {config.get('train_size') or 'all'} "
            f"images per trial, {trials_each} trials per worker, GPU {gpu}")
    return GpuPacking(rows=rows, ceiling_img_per_s=ceiling, ceiling_batch=ceiling_batch, description=desc)


def packing_table(result: GpuPacking) -> Table:
    """A rich table of :func:`bench_gpu_packing`: aggregate img/s per K and its share of the ceiling."""
    table = Table(title=f"bench sweep --trials-per-gpu: {result.description}",
                  caption=f"ceiling: {result.ceiling_img_per_s:,.0f} img/s (one process, batch {result.ceiling_batch}, bf16)")
    for col in ("trials per GPU", "trials", "images", "span s", "aggregate img/s", "of ceiling"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in result.rows:
        table.add_row(str(row["trials_per_gpu"]), str(row["trials"]), f"{row['images']:,}", fmt(row["span_s"], ".1f"),
                      f"{row['img_per_s']:,.0f}", fmt(100 * row["share"], ".0f") + " %")
    return table
