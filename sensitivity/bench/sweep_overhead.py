"""The sweep-overhead benchmark: what a sweep costs beyond its training.

``adamrag-sens bench sweep`` wraps :func:`bench_sweep` and prints :func:`sweep_table` and the lines
of :func:`sweep_summary`. Each round runs ``adamrag-sens sweep`` as a user runs it (a fresh process,
a fresh database), then the same points as bare ``train_trial`` calls in one fresh process
(:mod:`sensitivity.bench.bare_loop`); the ratio of the two, and the bookkeeping between
consecutive trials, are what the sweep adds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.table import Table

from sensitivity.bench import bare_loop
from sensitivity.bench.printout import fmt
from sensitivity.bench.timing import run_process
from sensitivity.errors import UserError, value_error
from sensitivity.storage import ledger_support, open_storage, release_storage
from sensitivity.study.members import population_size_for
from sensitivity.study.space import plan_points
from sensitivity.study.spec import STORAGE_ENV, StudySpec, parse_population
from sensitivity.train import resolve_device


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
    ledger: str = ""
    """Which trial ledger the sweep's storage got, and why (:meth:`sensitivity.storage.LedgerSupport.line`)."""
    runs_as: str = ""
    """Which path the sweep's worker ran, and why (:func:`sensitivity.study.members.population_size_for`):
    populations of K, or one by one; the bare loop always runs one by one."""

    def median(self, name: str) -> float:
        """Median over the rounds of a :class:`SweepRun` field or property."""
        return statistics.median(getattr(r, name) for r in self.runs)


def sweep_spec(task: str, points: int | None, device: str, epochs: int | None, train_size: int | None,
                val_size: int | None, batch_size: int | None, optimizers: Sequence[str] | None,
                dataset: str | None, seeds_of: dict[str, float] | None = None,
                population: str | None = None) -> tuple[Any, list[str]]:
    """The StudySpec of the benchmarked sweep and the sweep flags that say the same.

    ``seeds_of``: one point (``lr``, ``beta1``) repeated with ``points`` seeds instead of a random study.
    ``population``: the sweep's ``--population`` text (None: its default, auto).
    """
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
            raise value_error("--points", points, "must be >= 1", "108")
        n_trials = -(-points // len(opts))  # random points per optimizer, rounded up
        args += ["--sampler", "random", "--n-trials", str(n_trials)]
        fields.update(sampler="random", n_trials=n_trials)
    if population is not None:
        args += ["--population", population]
        fields["population"] = parse_population(population)
    for flag, name, value in (("--epochs", "epochs", epochs), ("--train-size", "train_size", train_size),
                              ("--val-size", "val_size", val_size), ("--batch-size", "batch_size", batch_size),
                              ("--dataset", "dataset", dataset)):
        if value is not None:
            args += [flag, str(value)]
            fields[name] = value
    return dataclasses.replace(base, **fields).validate(), args


def _storage_for(kind: str, folder: str, round_index: int) -> tuple[str, str]:
    """(storage URL or path, study name) of a fresh database for one round."""
    if kind == "sqlite":
        return f"sqlite:///{folder}/bench-{round_index}.db", "bench"
    if kind == "journal":
        return f"{folder}/bench-{round_index}.log", "bench"
    if "://" in kind:  # a server: a fresh study in it
        return kind, f"bench-{uuid.uuid4().hex[:12]}"
    raise UserError(f"--storage {kind!r}: use sqlite, journal, or a database URL (postgresql://...)")


def _stored_timings(storage: str, study_name: str, epoch_start: float, batch_size: int) -> dict[str, Any]:
    """Training, bookkeeping and span of the trials a benchmarked sweep stored (read-only)."""
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
                population: str | None = None, on_run: Callable[[int, SweepRun], None] | None = None) -> SweepBench:
    """Time a sweep against the bare training loop it runs, alternating the two ``repeat`` times.

    Each round runs (a) ``adamrag-sens sweep`` as a user runs it (a fresh process, a fresh
    database) and (b) the same points as bare :func:`~sensitivity.train.train_trial` calls in one
    fresh process (:mod:`sensitivity.bench.bare_loop`), both with this process's environment. Comparing medians of
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
        population: the sweep's ``--population`` (None: auto, populations where the task declares
            them); the bare loop runs the same points one by one whatever it is, so the ratio of a
            sweep with populations is theirs against the one-by-one loop.
        on_run: called with (round index, run) after each round.

    Returns:
        A :class:`SweepBench`.

    Raises:
        UserError: bad arguments (as the sweep would refuse them), or a benchmarked process failed.
    """
    if repeat < 1:
        raise value_error("--repeat", repeat, "must be >= 1", "3")
    spec, args = sweep_spec(task, points, device, epochs, train_size, val_size, batch_size, optimizers, dataset,
                             seeds_of, population)
    resolve_device(device)
    runs_as = population_size_for(spec)[1]  # what the sweep's worker decides, decided here the same way
    plan = plan_points(spec)
    config = spec.task_config()
    env = dict(os.environ)
    runs: list[SweepRun] = []
    ledger = ""
    with tempfile.TemporaryDirectory(prefix="adamrag-sens-bench-") as folder:
        job = os.path.join(folder, "bare.json")
        with open(job, "w") as fh:
            json.dump({"task": spec.task, "config": config, "device": device, "points": plan,
                       "divergence_factor": spec.divergence_factor}, fh)
        for r in range(repeat):
            url, name = _storage_for(storage, folder, r)
            cmd = [sys.executable, "-m", "sensitivity.cli", "sweep", *args, *extra_sweep_args, "--study", name]
            sweep_env = {**env, STORAGE_ENV: url}  # the sweep's --storage, kept off the command line (a URL may hold a password)
            epoch_start, sweep_s, sweep_cpu = run_process(cmd, os.path.join(folder, f"sweep-{r}.txt"), sweep_env)
            stored = _stored_timings(url, name, epoch_start, int(config.get("batch_size", 1)))
            if not ledger:
                ledger = _ledger_line(url)
            stored["tail_s"] = epoch_start + sweep_s - stored.pop("last_end")
            bare_s = bare_cpu = training = math.nan
            if bare:
                out = os.path.join(folder, f"bare-{r}.json")
                _, bare_s, bare_cpu = run_process(bare_loop.command(job, out), os.path.join(folder, f"bare-{r}.txt"),
                                                  env)
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
    return SweepBench(description=desc, sweep_args=args + list(extra_sweep_args), points=len(plan), runs=runs,
                      ledger=ledger, runs_as=runs_as)


def _ledger_line(url: str) -> str:
    """Which trial ledger the benchmarked sweep's storage ``url`` got (checked after the sweep ran)."""
    storage = open_storage(url, read_only=True)
    try:
        return ledger_support(storage).line()
    finally:
        release_storage(storage)



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
        return [fmt(get("sweep_s"), ".2f"), fmt(get("bare_s"), ".2f"), fmt(get("ratio"), ".3f"),
                fmt(get("cpu_ratio"), ".3f"), fmt(get("training_s"), ".2f"), fmt(get("startup_s"), ".2f"),
                fmt(get("bookkeeping_start"), ".2f"), fmt(get("bookkeeping_end"), ".2f")]

    together = result.runs_as.startswith("populations")  # members start together: no gap between trials to measure

    def getter(run: SweepRun) -> Callable[[str], float]:
        extra = {"bookkeeping_start": math.nan if together else run.bookkeeping_at("start"),
                 "bookkeeping_end": math.nan if together else run.bookkeeping_at("end")}
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
    together = result.runs_as.startswith("populations")
    path = f"; the sweep ran {result.runs_as}, the bare loop one by one" if result.runs_as else ""
    bookkeeping = (
        "bookkeeping per trial: not measured between trial starts (the members of a population start together; "
        "the sweep's whole cost is in the ratio)" if together else
        f"bookkeeping per trial (between consecutive trial starts, not training): {start:.2f} ms over the first {k} "
        f"trials, {end:.2f} ms over the last {k} (of {result.points})")
    return [
        f"sweep / bare loop: {med('ratio'):.3f} wall, {med('cpu_ratio'):.3f} CPU ({rounds}; both whole fresh processes"
        f"{path})",
        f"training (train_trial): {med('training_s'):.2f} s in the bare loop, {med('sweep_training_s'):.2f} s in the "
        f"sweep; the sweep took {med('sweep_s'):.2f} s: {med('startup_s'):.2f} s before its first trial, "
        f"{med('tail_s'):.2f} s after its last",
        bookkeeping,
        *([result.ledger] if result.ledger else []),
    ]
