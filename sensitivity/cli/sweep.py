"""The ``sweep`` and ``worker`` commands: run (or resume) a study, alone or as one of several
processes. ``sweep`` -> :func:`sensitivity.study.sweep.run_sweep`, its flags (or a study
definition, :mod:`sensitivity.study.definition`) made into a
:class:`~sensitivity.study.spec.StudySpec`; ``worker`` ->
:func:`sensitivity.study.worker_process.join_as_worker` and
:func:`~sensitivity.study.sweep.run_worker`. Flag defaults are the spec's."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sensitivity.cli import terminal
from sensitivity.cli.edge import end_without_teardown, user_errors
from sensitivity.cli.options import BatchSize, Command, Epochs, JoinStorage, TrainSize, ValSize, comma_list
from sensitivity.cli.terminal import console
from sensitivity.study.definition import read_study_definition
from sensitivity.study.spec import STORAGE_ENV, StudySpec

app = typer.Typer(rich_markup_mode="markdown")

_DEFAULT = StudySpec()
"""The defaults of every sweep flag: the spec's, written once there."""

_FROM_THE_COMMAND_LINE = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
"""Where a flag's value came from when a study definition does not replace it: the user gave it."""


_POPULATION_HELP = ("Train up to K queued points of one optimizer together as one batched model (each still its "
                    "own trial, with the same values): K, 1 (one by one) or auto (the task's declared size where "
                    "its model can be batched, else 1).")


@app.command(cls=Command)
@user_errors
def sweep(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", help="A study definition (TOML, keys = these flags with _ for -, e.g. studies/default.toml); flags given here override it.")] = None,
    task: Annotated[str, typer.Option(help="Workload: a name from `adamrag-sens tasks`, an installed entry point, or your own package.module:factory or path/file.py:factory.")] = _DEFAULT.task,
    optimizers: Annotated[str, typer.Option(help="Comma-separated optimizer names (see `adamrag-sens optimizers`).")] = ",".join(_DEFAULT.optimizers),
    sampler: Annotated[str, typer.Option(help="grid (cartesian product), random (seeded) or qmc (scrambled Sobol).")] = _DEFAULT.sampler,
    lr: Annotated[Optional[str], typer.Option(help="Learning rates, e.g. 1e-4,1e-3,1e-2 (grid values; random/qmc: min and max bound the range). Default: each optimizer's own log-spaced grid.")] = None,
    lr_points: Annotated[int, typer.Option(help="Points of each optimizer's default lr grid (log-spaced over its range).")] = _DEFAULT.lr_points,
    beta1: Annotated[Optional[str], typer.Option(help="beta1 values (momentum for NAG), e.g. 0.8,0.9,0.95 (the default).")] = None,
    beta2: Annotated[Optional[str], typer.Option(help="beta2 values (default: each optimizer's default, 0.999 Adam-type, 0.99 Lion).")] = None,
    gamma: Annotated[Optional[str], typer.Option(help="AdamRAG extrapolation coefficients gamma in [0, 1) (default 0.5).")] = None,
    weight_decay: Annotated[Optional[str], typer.Option("--weight-decay", help="Weight decay values (default: none swept).")] = None,
    n_trials: Annotated[int, typer.Option(help="random/qmc: points per optimizer and seed.")] = _DEFAULT.n_trials,
    epochs: Epochs = None,
    seeds: Annotated[int, typer.Option(help="Repeat every point with seeds 0..N-1 (same for every optimizer).")] = _DEFAULT.seeds,
    metric: Annotated[Optional[str], typer.Option(help="Objective: one of the task's metrics (see `adamrag-sens tasks`), in its own direction. Default: the task's first (val_loss; return for cartpole).")] = _DEFAULT.metric,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = _DEFAULT.device,
    storage: Annotated[str, typer.Option(envvar=STORAGE_ENV, help="Optuna storage: sqlite:///file.db, postgresql://user@host/db (password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable), or a journal file path (*.log).")] = _DEFAULT.storage,
    study: Annotated[Optional[str], typer.Option(help="Study name (default: the task, plus the dataset when not the default).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Dataset for tasks that have several (resnet18: cifar10, cifar100, fashion-mnist).")] = None,
    text_file: Annotated[Optional[Path], typer.Option(help="char-lm: train on this UTF-8 text file (default: Python standard-library sources, see `adamrag-sens tasks`).")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Learning-rate schedule (resnet18, fmnist-cnn, char-lm): constant, cosine or step; the swept lr is the peak.")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Epochs of linear lr warm-up before the schedule (default 0).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder holding the data sets (default ./data).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download missing data with torchvision (needs internet).")] = _DEFAULT.download,
    train_size: TrainSize = None,
    val_size: ValSize = None,
    batch_size: BatchSize = None,
    divergence_factor: Annotated[float, typer.Option(help="A run diverges when its training loss or a parameter is non-finite, or its epoch training loss exceeds this multiple of the initial loss (cartpole: policy collapse instead, see `adamrag-sens tasks`).")] = _DEFAULT.divergence_factor,
    precise_bn: Annotated[Optional[int], typer.Option("--precise-bn", help="Before each evaluation, recompute BatchNorm running statistics on N training batches (precise BN; 0: off; default: the task's, 8 for resnet18). No effect on models without BatchNorm.")] = None,
    sampler_seed: Annotated[int, typer.Option(help="Seed of the random/qmc point generator.")] = _DEFAULT.sampler_seed,
    workers: Annotated[int, typer.Option(help="Trials at once on this machine: N worker processes (each with cpus/N torch threads).")] = 1,
    gpus: Annotated[Optional[str], typer.Option(help="GPUs to spread workers over, e.g. 0,1 (one process per GPU and trial slot).")] = None,
    trials_per_gpu: Annotated[int, typer.Option(help="With --gpus: worker processes per GPU (len(gpus) x K workers in all).")] = 1,
    population: Annotated[str, typer.Option(help=_POPULATION_HELP)] = "auto",
) -> None:
    """Run (or resume) a sensitivity sweep: one Optuna trial per training run.

    Other processes or machines can help with the same study: `adamrag-sens worker --storage URL --study NAME`.
    """
    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    if config is not None:  # the file's values for the flags not given; every key is checked
        from_file = read_study_definition(config)
        flags.update({key: value for key, value in from_file.items()
                      if _source(ctx, key) not in _FROM_THE_COMMAND_LINE})
    end_without_teardown()  # every record is committed as it is made: see sensitivity.cli.app.main
    terminal.quiet_optuna()
    _run_sweep(flags, storage_from_environment=_source(ctx, "storage") == "ENVIRONMENT")


def _source(ctx: typer.Context, name: str) -> str | None:
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None)


def spec_from_flags(flags: dict[str, Any]) -> StudySpec:
    """The validated :class:`~sensitivity.study.spec.StudySpec` of ``sweep``'s flag values (text
    as given: comma-separated lists, names in any case).

    Raises:
        UserError: a value the spec refuses (one line naming the flag).
    """
    from sensitivity.study.spec import parse_floats, parse_population

    f = flags
    return StudySpec(
        task=f["task"], optimizers=comma_list(f["optimizers"]) or (), sampler=f["sampler"].lower(),
        lr=parse_floats("--lr", f["lr"]), lr_points=f["lr_points"], beta1=parse_floats("--beta1", f["beta1"]),
        beta2=parse_floats("--beta2", f["beta2"]), gamma=parse_floats("--gamma", f["gamma"]),
        weight_decay=parse_floats("--weight-decay", f["weight_decay"]), n_trials=f["n_trials"], seeds=f["seeds"],
        epochs=f["epochs"], metric=f["metric"], device=f["device"], storage=f["storage"], study_name=f["study"],
        dataset=f["dataset"], data_dir=str(f["data_dir"]) if f["data_dir"] else None, download=f["download"],
        train_size=f["train_size"], val_size=f["val_size"], batch_size=f["batch_size"],
        text_file=str(f["text_file"]) if f["text_file"] else None,
        schedule=f["schedule"].lower() if f["schedule"] else None, warmup_epochs=f["warmup_epochs"],
        divergence_factor=f["divergence_factor"], precise_bn=f["precise_bn"], sampler_seed=f["sampler_seed"],
        population=parse_population(f["population"]),
    ).validate()


def _run_sweep(flags: dict[str, Any], storage_from_environment: bool) -> None:
    from sensitivity import interrupt
    from sensitivity.study.parallel import plan_local_workers
    from sensitivity.study.sweep import run_sweep

    interrupt.install()  # SIGTERM (a scheduler stopping the job) ends the sweep as Ctrl-C does
    spec = spec_from_flags(flags)
    launch = plan_local_workers(flags["workers"], flags["gpus"], flags["trials_per_gpu"], spec.device)
    bar = terminal.progress_bar()
    try:
        result = run_sweep(spec, callbacks=terminal.SweepProgress(bar, _direction(spec), spec), workers=launch)
    finally:
        if bar.live.is_started:
            bar.stop()
    terminal.print_outcome(result, spec.objective_metric)
    for line in report_command(flags["storage"], result.study_name, storage_from_environment):
        console.print(line, highlight=False, markup=False)
    if result.failures or (result.outcome is not None and result.outcome.failed):
        raise typer.Exit(1)


def _direction(spec: StudySpec) -> str:
    from sensitivity.tasks import get_task

    return get_task(spec.task).metric(spec.objective_metric).direction


def report_command(storage: str, study_name: str, storage_from_environment: bool) -> list[str]:
    """The lines that tell how to write the report: a command to copy that never holds a password.

    A storage taken from the environment variable stays there (the command has no ``--storage``
    and works in the same shell). A storage given with a password on the command line is printed
    without it, with a note on how to supply it.
    """
    from sensitivity.storage import has_password, storage_without_password

    if storage_from_environment:
        return [f"report: adamrag-sens report --study {shlex.quote(study_name)}  (storage from {STORAGE_ENV})"]
    lines = [f"report: adamrag-sens report --storage {shlex.quote(storage_without_password(storage))} "
             f"--study {shlex.quote(study_name)}"]
    if has_password(storage):
        libpq = "PGPASSWORD or ~/.pgpass, or " if storage.lower().startswith("postgres") else ""
        lines.append(f"(the password is not shown: supply it with {libpq}the whole URL in {STORAGE_ENV} "
                     f"and no --storage)")
    return lines


@app.command(cls=Command)
@user_errors
def worker(
    storage: JoinStorage,
    study: Annotated[str, typer.Option(help="Name of the study to join.")],
    device: Annotated[Optional[str], typer.Option(help="Device for this worker, e.g. cuda:1 (default: the study's).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads for this worker (default: torch's).")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="When nothing is queued, stop at once (default: wait for other workers' running trials, and re-run them if their worker dies).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar or summary.")] = False,
    population: Annotated[Optional[str], typer.Option(help=_POPULATION_HELP + " Default: the study's.")] = None,
) -> None:
    """Join a study from another process or machine and run its queued points until none is left.

    The study's plan, task and budget come from storage (written by `adamrag-sens sweep`); this
    machine needs the package, the data and a device.
    """
    end_without_teardown()  # every record is committed as it is made: see sensitivity.cli.app.main
    terminal.quiet_optuna()
    from sensitivity.study.members import population_size_for
    from sensitivity.study.spec import parse_population
    from sensitivity.study.sweep import failed_points, plan_progress_of, run_worker
    from sensitivity.study.worker_process import join_as_worker

    size = parse_population(population) if population is not None else None  # refused before joining
    study_obj, spec, plan = join_as_worker(storage, study, device=device, threads=threads)
    if population is not None:
        spec = dataclasses.replace(spec, population=size)
    k, runs_as = population_size_for(spec)
    if quiet:
        run_worker(study_obj, spec, plan, wait=not no_wait, population=k)
        return
    console.print(f"worker on study {study!r}: {runs_as}", highlight=False)
    bar = terminal.progress_bar()
    try:
        progress = terminal.SweepProgress(bar, study_obj.direction.name.lower())
        before = plan_progress_of(study_obj, plan)
        progress.start(len(plan), before.complete, before.best)
        ran, diverged = run_worker(study_obj, spec, plan, callbacks=progress, wait=not no_wait, population=k)
    finally:
        if bar.live.is_started:
            bar.stop()
    console.print(f"worker ran {ran} trials on study {study!r}", highlight=False, markup=False)
    console.print(terminal.ran_line(ran, diverged, plan_progress_of(study_obj, plan)), highlight=False)
    failures = failed_points(study_obj, plan)
    terminal.print_failures(failures)
    if failures:
        raise typer.Exit(1)
