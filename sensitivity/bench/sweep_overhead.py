"""Benchmarks: one AdamRAG step against torch Adam's, and a sweep against its bare training loop.

A library module: ``adamrag-sens bench optimizer`` (in :mod:`sensitivity.cli`) wraps
:func:`bench_optimizer` and prints :func:`results_table`; ``adamrag-sens bench sweep`` wraps
:func:`bench_sweep` (and :func:`bench_gpu_packing` on CUDA), described at that function.

Optimizer step. Each row times one ``step()`` of
``torch.optim.Adam`` and of :class:`~sensitivity.optim.AdamRAG` on the same parameters and gradients,
with the same implementation path (for-each against for-each, fused against ``Adam(fused=True)``,
for-loop against for-loop), after warm-up, as the median over many steps; the two optimizers are
timed in alternating rounds so that a change in machine load hits both.

Memory-traffic accounting (bytes per parameter, float32, grads already computed): Adam reads the
parameter, its gradient, m and v and writes the parameter, m and v: 7 x 4 = 28 B. AdamRAG also reads
and writes the ravine buffer d: 9 x 4 = 36 B (ratio 1.29). Step counters and scalars are ignored.
"Floor" is that traffic divided by the copy bandwidth measured in the same run on a buffer of the
parameter set's size (bytes read + written per second); "GB/s" is the traffic divided by the
measured step time.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from rich.table import Table

from sensitivity.errors import UserError
from sensitivity.optim.adamrag import AdamRAG
from sensitivity.train import resolve_device

__all__ = ["bench_optimizer", "parameter_shapes", "results_table", "SIZES", "PATHS", "NOTE"]

SIZES = ("tiny", "resnet18", "200m")
"""Parameter sets: ``tiny`` (tests), ``resnet18`` (CIFAR ResNet-18, 11.2M), ``200m`` (201M)."""

PATHS = ("foreach", "fused", "forloop")
BYTES_PER_PARAM = {"adam": 28, "adamrag": 36}
"""float32 bytes moved per parameter and step (see the module docstring)."""


def parameter_shapes(size: str) -> list[tuple[int, ...]]:
    """Shapes of the named parameter set.

    ``resnet18``: torchvision's ResNet-18 with 10 classes and the CIFAR stem (3x3 conv1, no max-pool),
    62 tensors, 11,173,962 parameters. ``200m``: 24 matrices (4096, 2048) and 24 vectors (2048,) as
    in a transformer's linear layers and norms, 201,375,744 parameters. ``tiny``: 5 small tensors.

    Raises:
        UserError: an unknown size.
    """
    if size == "tiny":
        return [(64, 32), (64,), (16, 8, 3, 3), (10, 7), (3,)]
    if size == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
        model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        return [tuple(p.shape) for p in model.parameters()]
    if size == "200m":
        return [(4096, 2048)] * 24 + [(2048,)] * 24
    raise UserError(f"unknown parameter set {size!r}; choose from {', '.join(SIZES)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(step: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Seconds of ``n`` single calls, each from an idle device to its completion."""
    out = []
    if device.type == "cuda":
        for _ in range(n):
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            out.append(time.perf_counter() - t0)
    return out


def _copy_bandwidth(n_elements: int, device: torch.device, repeats: int = 10) -> float:
    """Bytes read + written per second by a float32 copy of ``n_elements`` (median of repeats)."""
    src = torch.ones(n_elements, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = _time_steps(lambda: dst.copy_(src), repeats, device)
    return 2 * 4 * n_elements / statistics.median(times)


def _path_flags(path: str) -> dict[str, bool]:
    return {"foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}[path]


def _adamrag_path_available(path: str, device: torch.device) -> Optional[str]:
    """None when AdamRAG has this path on this device, else the reason it has not."""
    if path != "fused":
        return None
    if device.type != "cuda":
        return "AdamRAG's fused path is a Triton kernel for CUDA"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    return None


def bench_optimizer(
    device: str = "auto",
    sizes: Sequence[str] | None = None,
    paths: Sequence[str] = PATHS,
    steps: int = 50,
    warmup: int = 10,
    rounds: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time one optimizer step of torch Adam and AdamRAG, path by path.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (resolved as a
            sweep's ``--device``, :func:`sensitivity.train.resolve_device`).
        sizes: parameter sets from :data:`SIZES`; default ``resnet18`` on CPU, ``resnet18, 200m`` on CUDA.
        paths: implementation paths from :data:`PATHS`.
        steps: timed steps per optimizer and row (the median is reported).
        warmup: untimed steps per optimizer first (compilation, allocation, caches).
        rounds: the timed steps are split in this many alternating Adam / AdamRAG rounds.
        seed: seed of the random parameters and gradients.

    Returns:
        one dict per (size, path): ``size``, ``device``, ``path``, ``n_params``, ``n_tensors``,
        ``adam_ms`` and ``adamrag_ms`` (median milliseconds per step; None when a path is not
        available, with the reason in ``note``), ``ratio`` (AdamRAG / Adam), ``adam_floor_ms`` and
        ``adamrag_floor_ms`` (traffic / copy bandwidth), ``copy_gbps``, ``adam_gbps``, ``adamrag_gbps``
        (traffic / step time, 1e9 bytes per second).

    Raises:
        UserError: an unknown device, size or path, non-positive steps, or CUDA asked for but absent.
    """
    dev = resolve_device(device)
    if sizes is None:
        sizes = ("resnet18",) if dev.type == "cpu" else ("resnet18", "200m")
    for path in paths:
        if path not in PATHS:
            raise UserError(f"unknown path {path!r}; choose from {', '.join(PATHS)}")
    if steps < 1 or warmup < 0 or rounds < 1:
        raise UserError(f"need steps >= 1, warmup >= 0 and rounds >= 1 (got {steps}, {warmup}, {rounds})")
    rounds = min(rounds, steps)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        shapes = parameter_shapes(size)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        params = [torch.randn(s, generator=gen).to(dev).requires_grad_() for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dev) * 1e-3
        n_params = sum(p.numel() for p in params)
        copy_bps = _copy_bandwidth(n_params, dev)
        for path in paths:
            row: dict[str, Any] = {
                "size": size,
                "device": str(dev),
                "path": path,
                "n_params": n_params,
                "n_tensors": len(params),
                "copy_gbps": copy_bps / 1e9,
                "adam_floor_ms": 1e3 * BYTES_PER_PARAM["adam"] * n_params / copy_bps,
                "adamrag_floor_ms": 1e3 * BYTES_PER_PARAM["adamrag"] * n_params / copy_bps,
                "note": "",
            }
            flags = _path_flags(path)
            adam = torch.optim.Adam(params, lr=1e-4, **flags)
            why_not = _adamrag_path_available(path, dev)
            rag = None if why_not else AdamRAG(params, lr=1e-4, **flags)
            for _ in range(warmup):
                adam.step()
            if rag is not None:
                try:  # a missing compiler or driver for Triton is reported in the row, not fatal
                    for _ in range(max(warmup, 1)):
                        rag.step()
                    _sync(dev)
                except Exception as err:  # noqa: BLE001 - reported in the table and the JSON
                    why_not = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    rag = None
            row["note"] = why_not or ""
            _sync(dev)
            times: dict[str, list[float]] = {"adam": [], "adamrag": []}
            per_round = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
            for k in per_round:
                times["adam"] += _time_steps(adam.step, k, dev)
                if rag is not None:
                    times["adamrag"] += _time_steps(rag.step, k, dev)
            for name in ("adam", "adamrag"):
                if times[name]:
                    sec = statistics.median(times[name])
                    row[f"{name}_ms"] = 1e3 * sec
                    row[f"{name}_gbps"] = BYTES_PER_PARAM[name] * n_params / sec / 1e9
                else:
                    row[f"{name}_ms"] = None
                    row[f"{name}_gbps"] = None
            row["ratio"] = row["adamrag_ms"] / row["adam_ms"] if row["adamrag_ms"] is not None else None
            rows.append(row)
            del adam, rag
        del params
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _fmt(x: Optional[float], spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def results_table(rows: list[dict[str, Any]]) -> Table:
    """A rich table of :func:`bench_optimizer` rows (reasons for n/a cells go in the caption)."""
    device = rows[0]["device"] if rows else ""
    notes = sorted({f"{r['path']}: {r['note']}" for r in rows if r["note"]})
    table = Table(
        title=f"One optimizer step on {device}, median ms",
        caption="; ".join(notes) if notes else None,
    )
    for col in ("size", "path", "Adam", "AdamRAG", "ratio", "floor", "GB/s"):
        table.add_column(col, justify="left" if col in ("size", "path") else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            f"{r['size']} {r['n_params'] / 1e6:.1f}M",
            r["path"],
            _fmt(r["adam_ms"]),
            _fmt(r["adamrag_ms"]),
            _fmt(r["ratio"], ".2f"),
            f"{_fmt(r['adam_floor_ms'])}/{_fmt(r['adamrag_floor_ms'])}",
            f"{_fmt(r['adam_gbps'], '.0f')}/{_fmt(r['adamrag_gbps'], '.0f')}",
        )
    return table


NOTE = (
    "ratio = AdamRAG / Adam on the same path. floor and GB/s: Adam/AdamRAG, counting 28 and 36 bytes per "
    "float32 parameter (Adam reads p, g, m, v and writes p, m, v; AdamRAG also reads and writes d); "
    "floor = bytes / copy bandwidth measured in this run."
)
"""How to read :func:`results_table` (printed under it)."""


# ---- the sweep benchmark: what a sweep costs beyond its training ------------------------------------

BARE_LOOP = r"""
import json, sys, time
t0 = time.perf_counter()
from sensitivity.tasks import get_task
from sensitivity.train import resolve_device, train_trial

job = json.load(open(sys.argv[1]))
task, config, device = get_task(job["task"]), job["config"], resolve_device(job["device"])
trials = []
for point in job["points"]:
    hp = {k: v for k, v in point.items() if k not in ("optimizer", "seed")}
    start = time.perf_counter()
    result = train_trial(task, config, point["optimizer"], hp, seed=int(point["seed"]), epochs=int(config["epochs"]),
                         device=device, divergence_factor=job["divergence_factor"])
    trials.append({"seconds": time.perf_counter() - start, "steps": result.steps, "throughput": result.throughput})
json.dump({"trials": trials, "in_process_s": time.perf_counter() - t0}, open(sys.argv[2], "w"))
"""
"""The bare loop :func:`bench_sweep` compares a sweep with: ``train_trial`` called for each point in
one fresh process, nothing stored (argv: a job JSON file, the output JSON file)."""


@dataclasses.dataclass
class SweepRun:
    """One timed run of the sweep command, and one of the bare loop over the same points.

    Attributes:
        sweep_s, bare_s: wall seconds of each whole process (Python start included).
        sweep_cpu_s, bare_cpu_s: user + system CPU seconds of each process (its children included).
        training_s: seconds spent inside ``train_trial`` in the bare loop (the training itself).
        sweep_training_s: the same as the sweep stored it (sum of the trials' ``wall_time_s``).
        startup_s: sweep process start to its first trial's start (imports, checks, queueing).
        bookkeeping_ms: per trial, in trial order, the time between consecutive trial starts not
            spent in ``train_trial`` (taking the next point, recording the result, the progress bar).
        images: training images the sweep's trials processed (steps x batch size).
        span_s: first trial start to last trial end in the sweep.
        trials: trials the sweep completed.
        tail_s: the sweep's last trial end to the end of its process (summary, report hint, exit).
    """

    sweep_s: float
    bare_s: float
    sweep_cpu_s: float
    bare_cpu_s: float
    training_s: float
    sweep_training_s: float
    startup_s: float
    bookkeeping_ms: list[float]
    images: int = 0
    span_s: float = 0.0
    trials: int = 0
    tail_s: float = 0.0

    @property
    def ratio(self) -> float:
        """sweep / bare, wall time."""
        return self.sweep_s / self.bare_s

    @property
    def cpu_ratio(self) -> float:
        """sweep / bare, CPU time."""
        return self.sweep_cpu_s / self.bare_cpu_s

    def bookkeeping_at(self, end: str) -> float:
        """Median bookkeeping (ms per trial) over the first or last tenth of the trials (10 to 100 trials)."""
        values = self.bookkeeping_ms
        if not values:
            return math.nan
        k = max(1, min(100, max(10, len(values) // 10), len(values)))
        return statistics.median(values[:k] if end == "start" else values[-k:])


@dataclasses.dataclass
class SweepBench:
    """What :func:`bench_sweep` measured: the setting and one :class:`SweepRun` per round."""

    description: str
    sweep_args: list[str]
    points: int
    runs: list[SweepRun]

    def median(self, name: str) -> float:
        """Median over the rounds of a :class:`SweepRun` field or property."""
        return statistics.median(getattr(r, name) for r in self.runs)


def _sweep_spec(task: str, points: int | None, device: str, epochs: int | None, train_size: int | None,
                val_size: int | None, batch_size: int | None, optimizers: Sequence[str] | None,
                dataset: str | None, seeds_of: dict[str, float] | None = None) -> tuple[Any, list[str]]:
    """The StudySpec of the benchmarked sweep and the sweep flags that say the same.

    ``seeds_of``: one point (``lr``, ``beta1``) repeated with ``points`` seeds instead of a random study.
    """
    from sensitivity.study.spec import StudySpec

    base = StudySpec()
    opts = tuple(optimizers) if optimizers else base.optimizers
    args = ["--task", task, "--optimizers", ",".join(opts), "--device", device]
    fields: dict[str, Any] = {"task": task, "optimizers": opts, "device": device}
    if seeds_of is not None and points is not None:
        args += ["--lr", str(seeds_of["lr"]), "--beta1", str(seeds_of["beta1"]), "--seeds", str(points)]
        fields.update(lr=(seeds_of["lr"],), beta1=(seeds_of["beta1"],), seeds=points)
        points = None
    if points is not None:
        if points < 1:
            raise UserError(f"--points {points} must be >= 1")
        n_trials = -(-points // len(opts))  # random points per optimizer, rounded up
        args += ["--sampler", "random", "--n-trials", str(n_trials)]
        fields.update(sampler="random", n_trials=n_trials)
    for flag, name, value in (("--epochs", "epochs", epochs), ("--train-size", "train_size", train_size),
                              ("--val-size", "val_size", val_size), ("--batch-size", "batch_size", batch_size),
                              ("--dataset", "dataset", dataset)):
        if value is not None:
            args += [flag, str(value)]
            fields[name] = value
    return dataclasses.replace(base, **fields).validate(), args


def _storage_for(kind: str, folder: str, round_index: int) -> tuple[str, str]:
    """(storage URL or path, study name) of a fresh database for one round."""
    import uuid

    if kind == "sqlite":
        return f"sqlite:///{folder}/bench-{round_index}.db", "bench"
    if kind == "journal":
        return f"{folder}/bench-{round_index}.log", "bench"
    if "://" in kind:  # a server: a fresh study in it
        return kind, f"bench-{uuid.uuid4().hex[:12]}"
    raise UserError(f"--storage {kind!r}: use sqlite, journal, or a database URL (postgresql://...)")


def _run_child(cmd: list[str], log_path: str, env: dict[str, str]) -> tuple[float, float, float]:
    """Run ``cmd`` to its end; (wall-clock start as epoch seconds, wall seconds, CPU seconds).

    Raises:
        UserError: the command failed (the end of its output is in the message).
    """
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    epoch_start, start = time.time(), time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code != 0:
        with open(log_path) as fh:
            tail = " | ".join(line.strip() for line in fh.read().strip().splitlines()[-3:])
        raise UserError(f"benchmarked command failed with exit code {code}: {tail}")
    return epoch_start, wall, cpu


def _stored_timings(storage: str, study_name: str, epoch_start: float, batch_size: int) -> dict[str, Any]:
    """Training, bookkeeping and span of the trials a benchmarked sweep stored (read-only)."""
    import optuna
    from optuna.trial import TrialState

    from sensitivity.storage import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, read_only=True))
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                    key=lambda t: t.datetime_start)
    starts = [t.datetime_start.timestamp() for t in trials]
    walls = [float(t.user_attrs.get("wall_time_s") or 0.0) for t in trials]
    gaps = [1e3 * (starts[i + 1] - starts[i] - walls[i]) for i in range(len(trials) - 1)]
    ends = [t.datetime_complete.timestamp() for t in trials]
    return {
        "trials": len(trials),
        "sweep_training_s": sum(walls),
        "startup_s": (starts[0] - epoch_start) if trials else math.nan,
        "bookkeeping_ms": gaps,
        "images": sum(int(t.user_attrs.get("steps") or 0) for t in trials) * batch_size,
        "span_s": (max(ends) - min(starts)) if trials else math.nan,
        "last_end": max(ends) if trials else math.nan,
    }


def bench_sweep(task: str = "digits-mlp", points: int | None = None, device: str = "cpu",
                epochs: int | None = None, train_size: int | None = None, val_size: int | None = None,
                batch_size: int | None = None, optimizers: Sequence[str] | None = None,
                storage: str = "sqlite", repeat: int = 3, dataset: str | None = None,
                extra_sweep_args: Sequence[str] = (), bare: bool = True, seeds_of: dict[str, float] | None = None,
                on_run: Callable[[int, SweepRun], None] | None = None) -> SweepBench:
    """Time a sweep against the bare training loop it runs, alternating the two ``repeat`` times.

    Each round runs (a) ``adamrag-sens sweep`` as a user runs it (a fresh process, a fresh
    database) and (b) the same points as bare :func:`~sensitivity.train.train_trial` calls in one
    fresh process (:data:`BARE_LOOP`), both with this process's environment. Comparing medians of
    rounds that alternate keeps a change in machine load from favouring one side.

    Args:
        task, device, epochs, train_size, val_size, batch_size, optimizers, dataset: the sweep's
            flags (default: the default study, 108 digits-mlp points, on the CPU).
        points: a random study of about this many points (rounded up to a multiple of the
            optimizers) instead of the default grid.
        storage: ``sqlite`` (a fresh file per round), ``journal`` (a fresh journal file), or a
            database URL (a fresh study in it per round).
        repeat: rounds.
        extra_sweep_args: more flags for the sweep (e.g. ``--gpus 0 --trials-per-gpu 4``).
        seeds_of: instead of a random study, one point (``{"lr": ..., "beta1": ...}``) with
            ``points`` seeds (every trial the same work, none diverging: for throughput).
        bare: also run the bare loop (False: the sweep only; ratios are then NaN).
        on_run: called with (round index, run) after each round.

    Returns:
        A :class:`SweepBench`.

    Raises:
        UserError: bad arguments (as the sweep would refuse them), or a benchmarked process failed.
    """
    import json
    import os
    import sys
    import tempfile

    from sensitivity.study.space import plan_points
    from sensitivity.study.spec import STORAGE_ENV

    if repeat < 1:
        raise UserError(f"--repeat {repeat} must be >= 1")
    spec, args = _sweep_spec(task, points, device, epochs, train_size, val_size, batch_size, optimizers, dataset,
                             seeds_of)
    resolve_device(device)
    plan = plan_points(spec)
    config = spec.task_config()
    env = dict(os.environ)
    runs: list[SweepRun] = []
    with tempfile.TemporaryDirectory(prefix="adamrag-sens-bench-") as folder:
        job = os.path.join(folder, "bare.json")
        with open(job, "w") as fh:
            json.dump({"task": spec.task, "config": config, "device": device, "points": plan,
                       "divergence_factor": spec.divergence_factor}, fh)
        for r in range(repeat):
            url, name = _storage_for(storage, folder, r)
            cmd = [sys.executable, "-m", "sensitivity.cli", "sweep", *args, *extra_sweep_args, "--study", name]
            sweep_env = {**env, STORAGE_ENV: url}  # the sweep's --storage, kept off the command line (a URL may hold a password)
            epoch_start, sweep_s, sweep_cpu = _run_child(cmd, os.path.join(folder, f"sweep-{r}.txt"), sweep_env)
            stored = _stored_timings(url, name, epoch_start, int(config.get("batch_size", 1)))
            stored["tail_s"] = epoch_start + sweep_s - stored.pop("last_end")
            bare_s = bare_cpu = training = math.nan
            if bare:
                out = os.path.join(folder, f"bare-{r}.json")
                _, bare_s, bare_cpu = _run_child([sys.executable, "-c", BARE_LOOP, job, out],
                                                 os.path.join(folder, f"bare-{r}.txt"), env)
                with open(out) as fh:
                    training = sum(t["seconds"] for t in json.load(fh)["trials"])
            run = SweepRun(sweep_s=sweep_s, bare_s=bare_s, sweep_cpu_s=sweep_cpu, bare_cpu_s=bare_cpu,
                           training_s=training, **stored)
            runs.append(run)
            if on_run is not None:
                on_run(r, run)
    where = storage if "://" not in storage else storage.split("://", 1)[0]
    desc = (f"{spec.task}, {len(plan)} points ({spec.sampler}), {config['epochs']} epochs, {device}, {where}, "
            f"{repeat} round(s) alternating sweep and bare loop")
    return SweepBench(description=desc, sweep_args=args + list(extra_sweep_args), points=len(plan), runs=runs)


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
    import json
    import os
    import sys
    import tempfile

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
    spec, _ = _sweep_spec(task, None, device, epochs, train_size, val_size, ceiling_batch, ("adam",), dataset)
    config = spec.task_config()
    with tempfile.TemporaryDirectory(prefix="adamrag-sens-bench-") as folder:
        job, out = os.path.join(folder, "ceiling.json"), os.path.join(folder, "ceiling-out.json")
        with open(job, "w") as fh:
            json.dump({"task": task, "config": config, "device": device, "divergence_factor": spec.divergence_factor,
                       "points": [{"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "seed": 0}]}, fh)
        _run_child([sys.executable, "-c", BARE_LOOP, job, out], os.path.join(folder, "ceiling.txt"), dict(os.environ))
        with open(out) as fh:
            ceiling = float(json.load(fh)["trials"][0]["throughput"])
    for row in rows:
        row["share"] = row["img_per_s"] / ceiling if ceiling > 0 else math.nan
    desc = (f"{task} ({dataset or 'default data'}), {config['epochs']} epochs of {config.get('train_size') or 'all'} "
            f"images per trial, {trials_each} trials per worker, GPU {gpu}")
    return GpuPacking(rows=rows, ceiling_img_per_s=ceiling, ceiling_batch=ceiling_batch, description=desc)


def sweep_table(result: SweepBench) -> Table:
    """A rich table of :func:`bench_sweep`'s rounds and their medians."""
    k = _edge_count(result)
    table = Table(
        title=f"bench sweep: {result.description}",
        caption=(f"s: wall seconds of each fresh process; ratio: sweep / bare (wall, and CPU = user + system); "
                 f"train: seconds inside train_trial in the bare loop; start: sweep start to its first trial; "
                 f"ms/trial: bookkeeping between consecutive trial starts (median over the first and the last "
                 f"{k} trials). Sweep flags: {' '.join(result.sweep_args)}"),
    )
    for col in ("round", "sweep s", "bare s", "ratio", "CPU ratio", "train s", "start s",
                f"ms/trial first {k}", f"last {k}"):
        table.add_column(col, justify="right")

    def cells(get: Callable[[str], float]) -> list[str]:
        return [_fmt(get("sweep_s"), ".2f"), _fmt(get("bare_s"), ".2f"), _fmt(get("ratio"), ".3f"),
                _fmt(get("cpu_ratio"), ".3f"), _fmt(get("training_s"), ".2f"), _fmt(get("startup_s"), ".2f"),
                _fmt(get("bookkeeping_start"), ".2f"), _fmt(get("bookkeeping_end"), ".2f")]

    def getter(run: SweepRun) -> Callable[[str], float]:
        extra = {"bookkeeping_start": run.bookkeeping_at("start"), "bookkeeping_end": run.bookkeeping_at("end")}
        return lambda name: extra[name] if name in extra else getattr(run, name)

    for i, run in enumerate(result.runs):
        table.add_row(str(i + 1), *cells(getter(run)))
    if len(result.runs) > 1:
        table.add_row("median", *cells(lambda name: statistics.median(getter(r)(name) for r in result.runs)))
    return table


def _edge_count(result: SweepBench) -> int:
    n = len(result.runs[0].bookkeeping_ms) if result.runs else 0
    return max(1, min(100, max(10, n // 10), n)) if n else 0


def sweep_summary(result: SweepBench) -> list[str]:
    """The lines under :func:`sweep_table`: the ratio, the training time, the bookkeeping per trial."""
    med = result.median
    k = _edge_count(result)
    start = statistics.median(r.bookkeeping_at("start") for r in result.runs)
    end = statistics.median(r.bookkeeping_at("end") for r in result.runs)
    rounds = f"median of {len(result.runs)} rounds" if len(result.runs) > 1 else "one round"
    return [
        f"sweep / bare loop: {med('ratio'):.3f} wall, {med('cpu_ratio'):.3f} CPU ({rounds}; both whole fresh processes)",
        f"training (train_trial): {med('training_s'):.2f} s in the bare loop, {med('sweep_training_s'):.2f} s in the "
        f"sweep; the sweep took {med('sweep_s'):.2f} s: {med('startup_s'):.2f} s before its first trial, "
        f"{med('tail_s'):.2f} s after its last",
        f"bookkeeping per trial (between consecutive trial starts, not training): {start:.2f} ms over the first {k} "
        f"trials, {end:.2f} ms over the last {k} (of {result.points})",
    ]


def packing_table(result: GpuPacking) -> Table:
    """A rich table of :func:`bench_gpu_packing`: aggregate img/s per K and its share of the ceiling."""
    table = Table(title=f"bench sweep --trials-per-gpu: {result.description}",
                  caption=f"ceiling: {result.ceiling_img_per_s:,.0f} img/s (one process, batch {result.ceiling_batch}, bf16)")
    for col in ("trials per GPU", "trials", "images", "span s", "aggregate img/s", "of ceiling"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in result.rows:
        table.add_row(str(row["trials_per_gpu"]), str(row["trials"]), f"{row['images']:,}", _fmt(row["span_s"], ".1f"),
                      f"{row['img_per_s']:,.0f}", _fmt(100 * row["share"], ".0f") + " %")
    return table
