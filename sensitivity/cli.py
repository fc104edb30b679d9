"""The ``adamrag-sens`` command line (Typer). Each command parses flags, calls one library
function and prints what it returns: ``sweep`` -> :func:`sensitivity.study.sweep.run_sweep`,
``worker`` -> :func:`~sensitivity.study.sweep.join_study` and
:func:`~sensitivity.study.sweep.run_worker`, ``report`` -> :func:`sensitivity.report.build_report`,
``compare`` -> :func:`sensitivity.report.compare.build_compare`,
``bench optimizer`` -> :func:`sensitivity.bench.bench_optimizer`. Flag defaults are
:class:`~sensitivity.study.spec.StudySpec`'s.

Mistakes a user can fix arrive here as :class:`~sensitivity.errors.UserError` and leave as one
line on stderr with exit code 2. Ctrl-C stores the running trial as failed and exits 130; running
the same command again resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape as rich_escape

from sensitivity.errors import UserError

# Long lines (commands to copy) never wrap mid-word. Piped or redirected, rich would assume 80
# columns and cut table cells to "AdamR…"; a file or a pipe has no width, so tables print whole.
_PIPED_WIDTH = 200
console = Console(stderr=False, soft_wrap=True, width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else _PIPED_WIDTH)
err_console = Console(stderr=True)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")  # click's, as Typer vendors it


class _OneLineUsageErrors(typer.core.TyperGroup):
    """A flag Typer cannot parse (``--epochs abc``, an unknown flag) is one line on stderr and exit 2,
    like every other mistake, instead of a usage box."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        self._args = list(args)  # the command line as given, to quote a value the parser refuses
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare command prints its help
                raise
            failed = err.ctx if err.ctx is not None else ctx
            where = failed.command_path
            lists = "the commands" if hasattr(failed.command, "list_commands") else "the flags"  # a group
            message = " ".join(err.format_message().split())
            given = self._given_value(getattr(err, "param", None))
            if given is not None and repr(given) not in message:
                message += f" (got {given!r})"
            err_console.print(f"[bold red]error:[/] {rich_escape(message)} (`{where} --help` lists {lists})",
                              highlight=False, soft_wrap=True, markup=True)
            raise typer.Exit(2) from None

    def _given_value(self, param: Any) -> str | None:
        """The value given on the command line for the option ``param`` (its last occurrence), if any."""
        opts = getattr(param, "opts", None) or []
        value = None
        args = getattr(self, "_args", [])
        for i, arg in enumerate(args):
            name, eq, inline = arg.partition("=")
            if name in opts:
                value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
        return value


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="adamrag-sens",
    help="Learning-rate and momentum sensitivity of deep-learning optimizers (AdamRAG, Adam, NAG, Lion).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring paragraph wraps to the terminal, as Markdown joins its lines
)

from sensitivity.study.spec import DEFAULT_STORAGE, STORAGE_ENV, StudySpec  # noqa: E402

_DEFAULT = StudySpec()
"""The defaults of every sweep flag: the spec's, written once there."""


class _NoticeLines(logging.Handler):
    """What the library logs for the user to know (``sensitivity.storage.NOTICES``: a journal read only up
    to a torn record) as one ``warning:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        err_console.print(f"[bold yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


_notices = logging.getLogger("sensitivity.notices")  # = sensitivity.storage.NOTICES, without importing Optuna here
_notices.addHandler(_NoticeLines())
_notices.propagate = False


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError into one red line and exit 2; Ctrl-C into a resume hint and exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished trials are stored; run the same command again to resume")
            raise typer.Exit(130) from None
        except Exception as err:
            from sensitivity.storage import RECONNECT_PAUSES_S, is_connection_lost, scrub_secrets

            if not is_connection_lost(err):
                raise
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            reason = scrub_secrets(" ".join(str(getattr(cause, "orig", None) or cause).split())[:160])
            err_console.print(f"[bold red]error:[/] lost the connection to the study's storage and could not reconnect "
                              f"within {sum(RECONNECT_PAUSES_S):.0f} s ({reason}); finished trials are stored: run the "
                              f"same command again once the server is back", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)


def _csv(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    return tuple(p.strip().lower() for p in text.split(",") if p.strip())


class _Progress:
    """Rich progress bar: trials done of planned, the current trial, the running best."""

    def __init__(self, progress: Any, direction: str, spec: Any = None) -> None:
        self.progress = progress
        self.spec = spec
        self.task_id = None
        self.best: float | None = None
        minimize = direction == "minimize"
        self.better = (lambda a, b: a < b) if minimize else (lambda a, b: a > b)

    def start(self, total: int, complete: int, best: float | None = None) -> None:
        """Show the bar: ``complete`` of ``total`` planned points done, ``best`` the best objective
        already stored (a resumed study's), None when there is none (nothing is drawn before)."""
        self.best = best
        self.progress.start()
        self.task_id = self.progress.add_task("starting", total=total, completed=complete,
                                              best="-" if best is None else f"{best:.4f}")

    def on_plan(self, result: Any) -> None:
        """The sweep is prepared: print what it holds and where it runs, then show the bar."""
        spec = self.spec
        where = f"{result.workers.count} worker processes" if result.workers is not None else "this process"
        from sensitivity.storage import mask_storage

        console.print(f"study [bold]{result.study_name}[/] in {mask_storage(result.storage)}  task {spec.task}  "
                      f"optimizers {','.join(spec.optimizers)}  sampler {spec.sampler}  {result.planned} points "
                      f"({result.complete_before} complete, {result.queued} queued now)  on {where}", highlight=False)
        if result.complete_before < result.planned:
            self.start(result.planned, result.complete_before, result.progress.best if result.progress else None)

    def on_trial_start(self, number: int, params: dict[str, Any]) -> None:
        desc = f"#{number} {params['optimizer']} lr={params['lr']:.3g}"
        if "beta1" in params:
            desc += f" b1={params['beta1']:g}"
        self.progress.update(self.task_id, description=desc)

    def on_trial_end(self, number: int, params: dict[str, Any], value: float, result: Any) -> None:
        if not result.diverged and (self.best is None or self.better(value, self.best)):
            self.best = value
        best = "-" if self.best is None else f"{self.best:.4f}"
        self.progress.update(self.task_id, advance=1, best=best)

    def on_trial_fail(self, failure: Any, retry: int | None) -> None:
        from sensitivity.study.sweep import MAX_RETRIES

        then = f"retry {retry} of {MAX_RETRIES} queued" if retry else "no retry left; the sweep goes on"
        console.print(f"trial #{failure.number} failed ({_format_params(failure.params)}): {failure.error}; {then}",
                      highlight=False, markup=False)
        if self.task_id is not None and not retry:
            self.progress.update(self.task_id, advance=1)

    def on_wait(self, running: int) -> None:
        self.progress.update(self.task_id, description=f"waiting for {running} trial(s) of other workers")

    def on_poll(self, prog: Any, workers_alive: int) -> None:
        """Multi-worker display, read from storage: points complete, trials running, best so far."""
        best = "-" if prog.best is None else f"{prog.best:.4f}"
        desc = f"{workers_alive} workers, {prog.running} running" if workers_alive else "workers done"
        self.progress.update(self.task_id, completed=prog.complete, description=desc, best=best)


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from rich.table import Column

    # the counts, the best and the two times (about 48 characters) are never cut; the current trial's
    # description and the bar share what is left, the description cut first in a narrow terminal
    room = console.width - 48
    described = min(34, max(12, room - 4))
    return Progress(
        TextColumn(f"[bold]{{task.description:<{described}}}",
                   table_column=Column(max_width=described, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=max(3, min(40, room - described))),
        MofNCompleteColumn(),
        TextColumn("trials  best {task.fields[best]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a scheduler stopping the job) ends a sweep or worker as Ctrl-C does: cleanly; a stop
    request is remembered, so it is not lost when Python swallows the first KeyboardInterrupt."""
    from sensitivity import interrupt

    interrupt.install()


def _format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


@app.command()
@user_errors
def sweep(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="A study definition (TOML, keys = these flags with _ for -, e.g. studies/default.toml); flags given here override it."),
    task: str = typer.Option(_DEFAULT.task, help="Workload: a name from `adamrag-sens tasks`, an installed entry point, or your own package.module:factory or path/file.py:factory."),
    optimizers: str = typer.Option(",".join(_DEFAULT.optimizers), help="Comma-separated optimizer names (see `adamrag-sens optimizers`)."),
    sampler: str = typer.Option(_DEFAULT.sampler, help="grid (cartesian product), random (seeded) or qmc (scrambled Sobol)."),
    lr: Optional[str] = typer.Option(None, help="Learning rates, e.g. 1e-4,1e-3,1e-2 (grid values; random/qmc: min and max bound the range). Default: each optimizer's own log-spaced grid."),
    lr_points: int = typer.Option(_DEFAULT.lr_points, help="Points of each optimizer's default lr grid (log-spaced over its range)."),
    beta1: Optional[str] = typer.Option(None, help="beta1 values (momentum for NAG), e.g. 0.8,0.9,0.95 (the default)."),
    beta2: Optional[str] = typer.Option(None, help="beta2 values (default: each optimizer's default, 0.999 Adam-type, 0.99 Lion)."),
    gamma: Optional[str] = typer.Option(None, help="AdamRAG extrapolation coefficients gamma in [0, 1) (default 0.5)."),
    weight_decay: Optional[str] = typer.Option(None, "--weight-decay", help="Weight decay values (default: none swept)."),
    n_trials: int = typer.Option(_DEFAULT.n_trials, help="random/qmc: points per optimizer and seed."),
    epochs: Optional[int] = typer.Option(None, help="Epochs per trial (default: the task's)."),
    seeds: int = typer.Option(_DEFAULT.seeds, help="Repeat every point with seeds 0..N-1 (same for every optimizer)."),
    metric: Optional[str] = typer.Option(_DEFAULT.metric, help="Objective: one of the task's metrics (see `adamrag-sens tasks`), in its own direction. Default: the task's first (val_loss; return for cartpole)."),
    device: str = typer.Option(_DEFAULT.device, help="auto, cpu, cuda or cuda:N."),
    storage: str = typer.Option(_DEFAULT.storage, envvar=STORAGE_ENV, help="Optuna storage: sqlite:///file.db, postgresql://user@host/db (password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable), or a journal file path (*.log)."),
    study: Optional[str] = typer.Option(None, help="Study name (default: the task, plus the dataset when not the default)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset for tasks that have several (resnet18: cifar10, cifar100, fashion-mnist)."),
    text_file: Optional[Path] = typer.Option(None, help="char-lm: train on this UTF-8 text file (default: Python standard-library sources, see `adamrag-sens tasks`)."),
    schedule: Optional[str] = typer.Option(None, help="Learning-rate schedule (resnet18, fmnist-cnn, char-lm): constant, cosine or step; the swept lr is the peak."),
    warmup_epochs: Optional[float] = typer.Option(None, help="Epochs of linear lr warm-up before the schedule (default 0)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding the data sets (default ./data)."),
    download: bool = typer.Option(_DEFAULT.download, "--download", help="Download missing data with torchvision (needs internet)."),
    train_size: Optional[int] = typer.Option(None, help="Use the first N training examples."),
    val_size: Optional[int] = typer.Option(None, help="Use the first N validation examples."),
    batch_size: Optional[int] = typer.Option(None, help="Mini-batch size (default: the task's)."),
    divergence_factor: float = typer.Option(_DEFAULT.divergence_factor, help="A run diverges when its training loss or a parameter is non-finite, or its epoch training loss exceeds this multiple of the initial loss (cartpole: policy collapse instead, see `adamrag-sens tasks`)."),
    precise_bn: Optional[int] = typer.Option(None, "--precise-bn", help="Before each evaluation, recompute BatchNorm running statistics on N training batches (precise BN; 0: off; default: the task's, 8 for resnet18). No effect on models without BatchNorm."),
    sampler_seed: int = typer.Option(_DEFAULT.sampler_seed, help="Seed of the random/qmc point generator."),
    workers: int = typer.Option(1, help="Trials at once on this machine: N worker processes (each with cpus/N torch threads)."),
    gpus: Optional[str] = typer.Option(None, help="GPUs to spread workers over, e.g. 0,1 (one process per GPU and trial slot)."),
    trials_per_gpu: int = typer.Option(1, help="With --gpus: worker processes per GPU (len(gpus) x K workers in all)."),
) -> None:
    """Run (or resume) a sensitivity sweep: one Optuna trial per training run.

    Other processes or machines can help with the same study: `adamrag-sens worker --storage URL --study NAME`.
    """
    if config is not None:  # run again with the file's values for the flags not given
        values = {**ctx.params, **_read_study_definition(ctx, config), "config": None}
        return sweep(ctx, **values)
    global _skip_teardown
    _skip_teardown = True  # every record is committed as it is made: see main()
    _quiet_optuna()
    _sigterm_as_interrupt()
    from sensitivity.study.parallel import plan_local_workers
    from sensitivity.study.spec import parse_floats
    from sensitivity.study.sweep import run_sweep

    spec = StudySpec(
        task=task, optimizers=_csv(optimizers) or (), sampler=sampler.lower(),
        lr=parse_floats("--lr", lr), lr_points=lr_points, beta1=parse_floats("--beta1", beta1),
        beta2=parse_floats("--beta2", beta2), gamma=parse_floats("--gamma", gamma),
        weight_decay=parse_floats("--weight-decay", weight_decay), n_trials=n_trials, seeds=seeds,
        epochs=epochs, metric=metric, device=device, storage=storage, study_name=study, dataset=dataset,
        data_dir=str(data_dir) if data_dir else None, download=download, train_size=train_size,
        val_size=val_size, batch_size=batch_size, text_file=str(text_file) if text_file else None,
        schedule=schedule.lower() if schedule else None, warmup_epochs=warmup_epochs,
        divergence_factor=divergence_factor, precise_bn=precise_bn, sampler_seed=sampler_seed,
    ).validate()
    launch = plan_local_workers(workers, gpus, trials_per_gpu, spec.device)
    bar = _progress_bar()
    try:
        result = run_sweep(spec, callbacks=_Progress(bar, _direction(spec), spec), workers=launch)
    finally:
        if bar.live.is_started:
            bar.stop()
    _print_outcome(result, spec.objective_metric)
    for line in _report_command(storage, result.study_name, ctx.get_parameter_source("storage")):
        console.print(line, highlight=False)
    if result.failures or (result.outcome is not None and result.outcome.failed):
        raise typer.Exit(1)


def _report_command(storage: str, study_name: str, source: Any) -> list[str]:
    """The lines that tell how to write the report: a command to copy that never holds a password.

    A storage taken from the environment variable stays there (the command has no ``--storage``
    and works in the same shell). A storage given with a password on the command line is printed
    without it, with a note on how to supply it.
    """
    import shlex

    from sensitivity.storage import has_password, storage_without_password

    if getattr(source, "name", None) == "ENVIRONMENT":
        return [f"report: adamrag-sens report --study {shlex.quote(study_name)}  (storage from {STORAGE_ENV})"]
    lines = [f"report: adamrag-sens report --storage {shlex.quote(storage_without_password(storage))} "
             f"--study {shlex.quote(study_name)}"]
    if has_password(storage):
        libpq = "PGPASSWORD or ~/.pgpass, or " if storage.lower().startswith("postgres") else ""
        lines.append(f"(the password is not shown: supply it with {libpq}the whole URL in {STORAGE_ENV} "
                     f"and no --storage)")
    return lines


def _read_study_definition(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """Values of a TOML study definition for the flags not given on the command line.

    Each value goes through the flag's own type conversion (lists become comma-separated text
    first), so a file and the command line accept and refuse the same things.

    Raises:
        UserError: unreadable file, TOML syntax error, unknown key, or a value of the wrong type.
    """
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read study definition {path} ({err.strerror}); check --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"study definition {path} is not valid TOML ({err}); fix the file") from None
    params = {p.name: p for p in ctx.command.params if p.name not in ("config",)}
    unknown = sorted(set(data) - set(params))
    if unknown:
        raise UserError(f"study definition {path}: unknown key(s) {', '.join(unknown)}; "
                        f"keys are the sweep flags with _ for -, e.g. {', '.join(list(params)[:6])}")
    values = {}
    for key, value in data.items():
        source = ctx.get_parameter_source(key)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            continue  # the command line wins
        _check_definition_type(path, key, value)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        try:
            values[key] = params[key].process_value(ctx, value)
        except Exception as err:  # noqa: BLE001 - click.BadParameter and friends
            raise UserError(f"study definition {path}: {key} = {value!r} is invalid ({err}); fix the file") from None
    return values


_NUMBER_LIST_KEYS = ("lr", "beta1", "beta2", "gamma", "weight_decay")
_TEXT_LIST_KEYS = ("optimizers",)
_INT_LIST_KEYS = ("gpus",)


def _toml_kind(value: Any) -> str:
    return {bool: "a boolean", int: "a whole number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), f"a {type(value).__name__}")


def _flag_kinds() -> dict[str, str]:
    """``sweep``'s flags by name -> ``"integer"``, ``"float"``, ``"boolean"`` or ``"text"``, from
    the annotations of the function (the types Typer converts the command line to)."""
    import inspect
    import typing

    hints = typing.get_type_hints(inspect.unwrap(sweep), globalns=globals())
    kinds = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kinds[name] = {int: "integer", float: "float", bool: "boolean"}.get(args[0], "text")
    return kinds


def _check_definition_type(path: Path, key: str, value: Any) -> None:
    """Refuse a TOML value whose type is not the flag's: TOML's true is not 1, "3" is not 3.

    Raises:
        UserError: one line naming the file, the key, the value's type and the type wanted.
    """
    kind = _flag_kinds().get(key, "text")

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if key in _NUMBER_LIST_KEYS:
        ok = is_number(value) or isinstance(value, str) or (
            isinstance(value, list) and bool(value) and all(is_number(v) for v in value))
        wanted, example = "a number or a list of numbers", f"{key} = [0.9, 0.95]"
    elif key in _TEXT_LIST_KEYS:
        ok = isinstance(value, str) or (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value))
        wanted, example = "a name or a list of names", f'{key} = ["adamrag", "adam"]'
    elif key in _INT_LIST_KEYS:
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        wanted, example = "a GPU number or a list of them", f"{key} = [0, 1]"
    elif kind == "boolean":
        ok, wanted, example = isinstance(value, bool), "true or false", f"{key} = true"
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted, example = "a whole number", f"{key} = 3"
    elif kind == "float":
        ok, wanted, example = is_number(value), "a number", f"{key} = 5.0"
    else:  # text and paths
        ok, wanted, example = isinstance(value, str), "a string", f'{key} = "..."'
    if not ok:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise UserError(f"study definition {path}: {key} = {shown} is {_toml_kind(value)}, but {key} takes "
                        f"{wanted} (e.g. {example}); fix the file")


def _ran_line(ran: int, diverged: int, prog: Any) -> str:
    line = f"ran {ran} trials ({diverged} diverged); {prog.complete} of {prog.total} points complete"
    if prog.failed:
        line += f"; {prog.failed} failed (listed below): run the same command again to retry them"
    return line


def _direction(spec: Any) -> str:
    from sensitivity.tasks import get_task

    return get_task(spec.task).metric(spec.objective_metric).direction


def _print_failures(failures: list[Any]) -> None:
    """One line per planned point whose trial failed (retries used up), with its error."""
    for f in failures:
        err_console.print(f"failed: trial #{f.number} {_format_params(f.params)}: {f.error}", highlight=False,
                          markup=False, soft_wrap=True)


def _print_outcome(result: Any, metric: str) -> None:
    """The lines that end a sweep, from its :class:`~sensitivity.study.sweep.SweepResult`."""
    prog = result.progress
    if result.complete_before == result.planned:
        console.print(f"nothing to run: all {result.planned} points of study {result.study_name!r} are complete")
    elif result.workers is None:
        console.print(_ran_line(result.ran, result.diverged, prog), highlight=False)
    else:
        line = (f"{result.workers.count} workers ({result.workers.threads} torch threads each) completed "
                f"{prog.complete - result.complete_before} points; {prog.complete} of {prog.total} complete "
                f"({prog.diverged} diverged)")
        if prog.failed:
            line += f"; {prog.failed} failed (listed below): run the same command again to retry them"
        console.print(line, highlight=False)
        for index, code in result.outcome.failed:
            err_console.print(f"worker {index} exited with code {code} (its error is printed above)", highlight=False,
                              soft_wrap=True)
        for index, signum in result.outcome.killed:
            err_console.print(f"worker {index} was killed by signal {signum}; its running trial was failed when its "
                              f"heartbeat went stale and its point queued again", highlight=False, soft_wrap=True)
    _print_failures(result.failures)
    if result.best:
        console.print(_best_line(result.best, metric), highlight=False)


def _best_line(best: dict[str, Any], metric: str) -> str:
    """``best val_loss 0.1128: trial #42 optimizer=nag ...``, saying when that trial diverged (then
    every trial did) or ended worse than it started (its value is clipped at the initial one)."""
    note = ""
    if best.get("diverged"):
        note = f" (diverged: {best.get('diverged_reason') or 'training blew up'}; every trial diverged)"
    elif best.get("final") is not None and best["final"] == best["final"] and best["final"] != best["value"]:
        note = f" (clipped at the initial value: the final {metric} was {best['final']:.4g})"
    return f"best {metric} {best['value']:.4f}{note}: trial #{best['number']} {_format_params(best['params'])}"


@app.command()
@user_errors
def worker(
    storage: str = typer.Option(..., envvar=STORAGE_ENV, help="Storage URL of the study to join (e.g. postgresql://user@host/db; password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable)."),
    study: str = typer.Option(..., help="Name of the study to join."),
    device: Optional[str] = typer.Option(None, help="Device for this worker, e.g. cuda:1 (default: the study's)."),
    threads: Optional[int] = typer.Option(None, help="torch intra-op threads for this worker (default: torch's)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="When nothing is queued, stop at once (default: wait for other workers' running trials, and re-run them if their worker dies)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary (for workers started by `sweep --workers`)."),
) -> None:
    """Join a study from another process or machine and run its queued points until none is left.

    The study's plan, task and budget come from storage (written by `adamrag-sens sweep`); this
    machine needs the package, the data and a device.
    """
    global _skip_teardown
    _skip_teardown = True  # every record is committed as it is made: see main()
    _quiet_optuna()
    _sigterm_as_interrupt()
    from sensitivity.study.parallel import stop_when_parent_dies

    stop_when_parent_dies()
    from sensitivity.study.queue import enqueue_missing
    from sensitivity.study.sweep import failed_points, join_study, plan_progress_of, run_worker

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads {threads} must be >= 1")
        import torch

        torch.set_num_threads(threads)
    study_obj, spec, plan = join_study(storage, study, device=device)
    enqueue_missing(study_obj, plan)  # points whose trial failed earlier run again
    if quiet:
        run_worker(study_obj, spec, plan, wait=not no_wait)
        return
    bar = _progress_bar()
    try:
        progress = _Progress(bar, study_obj.direction.name.lower())
        before = plan_progress_of(study_obj, plan)
        progress.start(len(plan), before.complete, before.best)
        ran, diverged = run_worker(study_obj, spec, plan, callbacks=progress, wait=not no_wait)
    finally:
        if bar.live.is_started:
            bar.stop()
    console.print(f"worker ran {ran} trials on study {study!r}", highlight=False)
    console.print(_ran_line(ran, diverged, plan_progress_of(study_obj, plan)), highlight=False)
    failures = failed_points(study_obj, plan)
    _print_failures(failures)
    if failures:
        raise typer.Exit(1)


_TOLERANCE_HELP = ("Tolerance width threshold: the fraction tau of the achievable improvement a run may lose "
                   "(0.05 = keep at least 95% of the improvement from the initial value L0 to the best L*).")
_RELATIVE_HELP = ("Relative width threshold: within this fraction of the best loss (0.1 = 10%), or within this "
                  "much of the best accuracy (0.01 = 1 point). Default: 0.1 for a loss, 0.01 for an accuracy.")
_AXIS_HELP = ("lr axis of curves and widths: nominal, or effective (lr/(1-gamma) AdamRAG, lr/(1-beta1) NAG/SGD, "
              "lr Adam/Lion).")
_FORMAT_HELP = "Figure file formats, comma-separated, from png, svg, pdf (the HTML always embeds PNGs)."


def _report_options(tolerance: Optional[float], relative_tolerance: Optional[float], lr_axis: str,
                    fmt: str) -> tuple[str, ...]:
    """Check the flags report and compare share; return the figure formats."""
    from sensitivity.report.effective_lr import LR_AXES
    from sensitivity.report.build import FIGURE_FORMATS

    for flag, value, example in (("--tolerance", tolerance, "0.05 = keep 95% of the improvement"),
                                 ("--relative-tolerance", relative_tolerance, "0.1 = within 10% of the best loss")):
        if value is not None and not (value >= 0 and value < float("inf")):
            raise UserError(f"{flag} {value} must be a finite number >= 0 (e.g. {example})")
    if lr_axis not in LR_AXES:
        raise UserError(f"--lr-axis {lr_axis!r} is not an lr axis; use nominal or effective")
    formats = tuple(f.strip().lower() for f in fmt.split(",") if f.strip())
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad or not formats:
        raise UserError(f"--format {fmt!r}: unknown figure format {', '.join(bad) or '(none)'}; "
                        f"use a comma-separated list of {', '.join(FIGURE_FORMATS)}")
    return formats


def _check_out(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder for the report (it is created if missing)")


@app.command()
@user_errors
def report(
    storage: str = typer.Option(DEFAULT_STORAGE, envvar=STORAGE_ENV, help="Storage URL holding the study (password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable)."),
    study: str = typer.Option("digits-mlp", help="Study name."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default reports/STUDY)."),
    tolerance: Optional[float] = typer.Option(None, help=_TOLERANCE_HELP),
    relative_tolerance: Optional[float] = typer.Option(None, "--relative-tolerance", help=_RELATIVE_HELP),
    lr_axis: str = typer.Option("nominal", "--lr-axis", help=_AXIS_HELP),
    fmt: str = typer.Option("png", "--format", help=_FORMAT_HELP),
) -> None:
    """Write figures, CSV tables, report.md and report.html from a stored study."""
    _quiet_optuna()
    from sensitivity.report import build_report

    formats = _report_options(tolerance, relative_tolerance, lr_axis, fmt)
    out_dir = out or Path("reports") / study
    _check_out(out_dir)
    try:
        paths = build_report(storage, study, out_dir, tolerance=tolerance, relative_tolerance=relative_tolerance,
                             lr_axis=lr_axis, formats=formats)
    except OSError as err:  # a folder that cannot be created or written
        raise UserError(f"cannot write the report to {out_dir} ({err.strerror or err}); give another --out folder") from None
    from sensitivity.report.prose import summary_table

    analysis = paths.analysis
    bounds = analysis.bootstrap
    _print_table(summary_table(analysis.summary, metric=analysis.settings.metric, lr_axis=analysis.settings.lr_axis),
                 f"study {study}: summary (definitions in report.html)",
                 "95% seed-bootstrap bounds: report.html, summary.csv (*_low, *_high)" if bounds else "")
    console.print("findings: " + " ".join(paths.findings), highlight=False)
    console.print(f"report written to {paths.out_dir}/ (open {paths.report_html})")


_CLI_COLUMNS = {"optimizer": "optimizer", "trials": "trials", "best ": "best", "best lr": "best lr",
                "tolerance width": "width (dec)", "relative width": "rel. width (dec)",
                "good share lr x beta1": "share lr x beta1", "LR sensitivity": "LR sens.", "diverged": "diverged"}


_CLI_DROP_ORDER = ("rel. width (dec)", "LR sens.", "trials", "share lr x beta1", "best")
"""Columns of the terminal summary left out first when the terminal is too narrow for all of them."""


def _print_table(readable, title: str, caption: str = "") -> None:
    """A compact rich table of the readable summary: the columns a terminal has room for, point values
    only (the bounds are in the report and the CSV)."""
    from rich.table import Table

    shown = []
    for c in readable.columns:
        prefix = "best lr" if c == "best lr" else next((p for p in _CLI_COLUMNS if c.startswith(p)), None)
        if prefix is not None:
            shown.append((c, _CLI_COLUMNS[prefix]))
    cells = {short: [str(row[c]).split(" [")[0] or "-" for _, row in readable.iterrows()] for c, short in shown}
    # a value is never cut (3.16e-3 and 3.16e-1 both read "3.16e..." when cut) and a header wraps at
    # its spaces; where the terminal is too narrow for that, the least telling columns are left out
    widths = {short: max([len(v) for v in values] + [max(len(w) for w in short.split())])
              for short, values in cells.items()}
    left_out = []
    for short in _CLI_DROP_ORDER:
        if sum(widths.values()) + 3 * len(widths) + 1 <= console.width:
            break
        if short in widths:
            del widths[short]
            left_out.append(short)
    if left_out:
        caption = "; ".join(filter(None, [caption, f"left out for the terminal's width: {', '.join(left_out)} "
                                                    f"(see report.html)"]))
    table = Table(title=title, caption=caption or None)
    for short, width in widths.items():
        table.add_column(short, justify="left" if short == "optimizer" else "right", width=width,
                         overflow="fold")
    for i in range(len(readable)):
        table.add_row(*(cells[short][i] for short in widths))
    console.print(table)


@app.command()
@user_errors
def compare(
    storage: list[str] = typer.Option([DEFAULT_STORAGE], envvar=STORAGE_ENV, help="Storage URL: one for every study, or one per --study in the same order (repeat the flag; password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable)."),
    study: list[str] = typer.Option([], help="A study to compare; repeat for each (--study A --study B)."),
    out: Path = typer.Option(Path("reports") / "compare", help="Output folder."),
    tolerance: Optional[float] = typer.Option(None, help=_TOLERANCE_HELP),
    relative_tolerance: Optional[float] = typer.Option(None, "--relative-tolerance", help=_RELATIVE_HELP),
    lr_axis: str = typer.Option("nominal", "--lr-axis", help=_AXIS_HELP),
    fmt: str = typer.Option("png", "--format", help=_FORMAT_HELP),
) -> None:
    """Compare several studies (tasks): a table per task and optimizer, performance profiles, a grid of lr curves."""
    _quiet_optuna()
    from sensitivity.report.compare import build_compare, pair_refs

    formats = _report_options(tolerance, relative_tolerance, lr_axis, fmt)
    refs = pair_refs(storage, study)
    _check_out(out)
    try:
        paths = build_compare(refs, out, tolerance=tolerance, relative_tolerance=relative_tolerance,
                              lr_axis=lr_axis, formats=formats)
    except OSError as err:
        raise UserError(f"cannot write the comparison to {out} ({err.strerror or err}); give another --out folder") from None
    console.print("findings: " + " ".join(paths.findings), highlight=False)
    console.print(f"comparison written to {paths.out_dir}/ (open {paths.compare_html})")


@app.command()
@user_errors
def tasks(
    measure: bool = typer.Option(False, "--measure", help="Also time one trial of each built-in task at its default budget on this machine (Adam, lr 1e-3; minutes)."),
    device: str = typer.Option("cpu", help="Device for --measure."),
) -> None:
    """List the workloads: metrics and direction, data source, default budget, time per trial.

    Installed packages' tasks (entry-point group adamrag_sens.tasks) follow the built-ins; your own
    module works too: `sweep --task package.module:factory`.
    """
    from rich.table import Table

    from sensitivity.tasks import TASKS, entry_point_tasks, get_task

    measured = _measure_tasks(device) if measure else {}
    table = Table(title="tasks (sweep --task NAME)", show_lines=True)
    for col in ("name", "metrics (first: default objective)", "data", "default budget", "time per trial"):
        table.add_column(col, overflow="fold")  # a long word breaks; it is never cut
    def row(name, t, source="", timing=None):
        metrics = "\n".join(f"{m.name} ({m.unit}), {m.direction}d" for m in t.metrics)
        data = t.data_source + (f"; --dataset {', '.join(t.datasets)}" if len(t.datasets) > 1 else "")
        timing = timing or t.cpu_trial_time or "not measured"
        if name in measured:
            wall, cpu = measured[name]
            timing = f"{wall:.1f} s here, {cpu:.1f} CPU s ({device}, measured now)\n" + timing
        table.add_row(f"{name}\n[dim]{t.description}[/]", metrics, data + source, t.budget(), timing)

    for t in TASKS.values():
        row(t.name, t)
    for name, target in entry_point_tasks().items():  # the installed package's own declaration
        try:
            row(name, get_task(name), f"\n(entry point {target})")
        except UserError as err:  # listed, with why it cannot run, so the list itself never fails
            table.add_row(name, "", f"entry point {target}", "", f"[red]broken:[/] {rich_escape(str(err))}")
    console.print(table)


def _measure_tasks(device: str) -> dict[str, tuple[float, float]]:
    """(wall seconds, CPU seconds of this process) of one trial of each built-in task at its defaults,
    the data loaded beforehand (a sweep loads them once per process)."""
    import time

    from sensitivity.tasks import TASKS
    from sensitivity.train import load_task_data, resolve_device, train_trial

    dev = resolve_device(device)
    out = {}
    for name, task in TASKS.items():
        config = task.config()
        try:
            load_task_data(task, config, dev)
        except UserError as err:  # e.g. CIFAR-10 not on this machine
            err_console.print(f"{name}: not measured ({err})", highlight=False, soft_wrap=True)
            continue
        wall, cpu = time.perf_counter(), time.process_time()
        train_trial(task, config, "adam", {"lr": 1e-3}, seed=0, epochs=int(config["epochs"]), device=dev,
                    divergence_factor=_DEFAULT.divergence_factor)
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
    return out


@app.command()
def optimizers() -> None:
    """List the optimizers, what beta1/beta2 mean for each, and their default search ranges."""
    from rich.table import Table

    from sensitivity.catalog import OPTIMIZERS

    table = Table(title="optimizers")
    for col in ("name", "hyperparameters", "default lr range", "defaults", "beta1", "beta2", "source"):
        table.add_column(col, overflow="fold")
    for o in OPTIMIZERS.values():
        table.add_row(
            o.name, ", ".join(o.hyperparameters), f"{o.lr_range[0]:g} .. {o.lr_range[1]:g}",
            ", ".join(f"{k}={v:g}" for k, v in o.defaults.items()), o.beta1_meaning, o.beta2_meaning, o.source,
        )
    console.print(table)


bench_app = typer.Typer(help="Benchmarks: AdamRAG's optimizer step against torch Adam's; the trial loop's training throughput against a plain PyTorch loop; a sweep against its bare training loop.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("optimizer")
@user_errors
def bench_optimizer_command(
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu, cuda or cuda:N."),
    sizes: Optional[str] = typer.Option(
        None, help="Comma-separated parameter sets: tiny, resnet18 (11.2M), 200m. Default: resnet18 on CPU, "
        "resnet18,200m on CUDA."
    ),
    paths: str = typer.Option("foreach,fused,forloop", help="Comma-separated paths: foreach, fused, forloop."),
    steps: int = typer.Option(50, min=1, help="Timed steps per optimizer and row; the median is reported."),
    warmup: int = typer.Option(10, min=0, help="Untimed steps per optimizer first."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows to this JSON file."),
) -> None:
    """Time one step of AdamRAG and torch Adam (same path) and print the times and their ratio."""
    from sensitivity import bench

    size_list = tuple(s.strip() for s in sizes.split(",") if s.strip()) if sizes else None
    path_list = tuple(s.strip() for s in paths.split(",") if s.strip())
    rows = bench.bench_optimizer(device=device, sizes=size_list, paths=path_list, steps=steps, warmup=warmup)
    console.print(bench.results_table(rows))
    console.print(bench.NOTE)
    if json_out:
        import json

        import torch

        try:
            json_out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
        except OSError as err:
            raise UserError(f"cannot write {json_out} ({err.strerror}); give another --json path") from None


@bench_app.command("train")
@user_errors
def bench_train_command(
    task: str = typer.Option("resnet18", help="Image task: resnet18 or fmnist-cnn."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Random images of the data set's shape instead of the real data (labelled synthetic in the output)."),
    dataset: Optional[str] = typer.Option(None, help="Data set (shape) to use, e.g. cifar10, cifar100, fashion-mnist (default: the task's)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding the real data (without --synthetic)."),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(128, help="Images per step, both loops."),
    steps: Optional[int] = typer.Option(None, help="Timed steps per round and loop (default 50 on CUDA, 4 on the CPU)."),
    rounds: Optional[int] = typer.Option(None, help="Alternating timed rounds of each loop; medians are reported (default 2 on CUDA, 6 on the CPU, where one round's noise is a few percent)."),
) -> None:
    """Images per second of this product's trial loop and of a plain PyTorch loop, and their ratio."""
    from sensitivity.throughput import bench_train, format_result

    config = {k: v for k, v in (("dataset", dataset), ("data_dir", str(data_dir) if data_dir else None)) if v is not None}
    result = bench_train(task, synthetic=synthetic, device=device, batch_size=batch_size, steps=steps, rounds=rounds,
                         config=config)
    for line in format_result(result):
        console.print(line, highlight=False)


@bench_app.command("sweep")
@user_errors
def bench_sweep_command(
    task: str = typer.Option("digits-mlp", help="Workload of the benchmarked sweep."),
    points: Optional[int] = typer.Option(None, help="A random study of about N points (rounded up to a multiple of the optimizers) instead of the default grid (108 points)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N (as the sweep's --device)."),
    epochs: Optional[int] = typer.Option(None, help="Epochs per trial (default: the task's)."),
    train_size: Optional[int] = typer.Option(None, help="Training examples per trial (default: the task's)."),
    val_size: Optional[int] = typer.Option(None, help="Validation examples (default: the task's)."),
    batch_size: Optional[int] = typer.Option(None, help="Mini-batch size (default: the task's)."),
    optimizers: Optional[str] = typer.Option(None, help="Comma-separated optimizers (default: the sweep's)."),
    storage: str = typer.Option("sqlite", help="sqlite (a fresh file each round), journal (a fresh journal file), or a database URL (a fresh study in it)."),
    repeat: int = typer.Option(3, help="Rounds; each runs the sweep, then the bare loop; medians are quoted."),
    synthetic: bool = typer.Option(False, "--synthetic", help="resnet18: random tensors of CIFAR-10's shape (throughput only)."),
    trials_per_gpu: Optional[str] = typer.Option(None, help="With --device cuda: worker processes per GPU to compare, e.g. 1,2,4,8; prints aggregate img/s for each and the one-process batch-512 bf16 ceiling."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the measurements to this JSON file."),
) -> None:
    """Time a sweep against the same trainings as bare train_trial calls; print the ratio and the bookkeeping per trial.

    Each round runs `adamrag-sens sweep` as a user runs it (a fresh process and database), then
    the same points as bare train_trial calls in one fresh process. With --device cuda
    --trials-per-gpu K,...: aggregate training throughput of K trials sharing GPU 0, for each K.
    """
    _quiet_optuna()
    from sensitivity import bench

    dataset = None
    if synthetic:
        if task != "resnet18":
            raise UserError(f"--synthetic is for --task resnet18 (random tensors of CIFAR-10's shape), not {task!r}")
        dataset = "synthetic"
    opts = _csv(optimizers)
    if trials_per_gpu is not None:
        if not device.startswith("cuda"):
            raise UserError(f"--trials-per-gpu compares worker processes sharing a GPU; add --device cuda (not {device!r})")
        try:
            ks = [int(k) for k in trials_per_gpu.split(",") if k.strip()]
        except ValueError:
            raise UserError(f"--trials-per-gpu {trials_per_gpu!r} is not a list of counts; give e.g. 1,2,4,8") from None
        gpu = int(device.split(":", 1)[1]) if ":" in device else 0
        packing = bench.bench_gpu_packing(
            ks, gpu=gpu, task=task, dataset=dataset, epochs=epochs or 3,
            train_size=train_size, val_size=val_size or 2_000, batch_size=batch_size,
            on_row=lambda row: console.print(
                f"  K={row['trials_per_gpu']}: {row['trials']} trials, {row['img_per_s']:,.0f} img/s aggregate "
                f"({row['images']:,} images in {row['span_s']:.1f} s)", highlight=False),
        )
        console.print(bench.packing_table(packing))
        if dataset == "synthetic":
            console.print("data: SYNTHETIC random tensors of CIFAR-10's shape; throughput only")
        _write_json(json_out, dataclasses.asdict(packing))
        return
    result = bench.bench_sweep(
        task=task, points=points, device=device, epochs=epochs, train_size=train_size, val_size=val_size,
        batch_size=batch_size, optimizers=opts, storage=storage, repeat=repeat, dataset=dataset,
        on_run=lambda r, run: console.print(
            f"  round {r + 1}: sweep {run.sweep_s:.2f} s, bare loop {run.bare_s:.2f} s, ratio {run.ratio:.3f} "
            f"(CPU {run.sweep_cpu_s:.2f} / {run.bare_cpu_s:.2f} s)", highlight=False),
    )
    console.print(bench.sweep_table(result))
    for line in bench.sweep_summary(result):
        console.print(line, highlight=False)
    _write_json(json_out, {**dataclasses.asdict(result), "ratio": result.median("ratio"),
                           "cpu_ratio": result.median("cpu_ratio")})


def _write_json(path: Optional[Path], data: Any) -> None:
    if path is None:
        return
    import json

    try:
        path.write_text(json.dumps(data, indent=2, default=float))
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror}); give another --json path") from None


_skip_teardown = False
"""Set by the commands that end with nothing left to write (``sweep``, ``worker``): see :func:`main`."""


def main() -> None:
    """The ``adamrag-sens`` console entry point: the Typer app, and after ``sweep`` and ``worker``
    an exit without the interpreter's teardown.

    Tearing down torch, Optuna, SQLAlchemy and scikit-learn module by module took about 1.4 s of
    CPU on the 2-core test machine, paid after the last trial for nothing. By then a sweep or worker
    has committed every record (each in its own transaction) and closed its output, so the process
    flushes stdout and stderr and leaves with ``os._exit`` and the command's exit code. SQLite's
    write-ahead log is then folded into the database by the next process that opens it (Optuna's
    and SQLite's normal recovery); nothing is lost. Other commands (``report`` writes files) exit
    normally.
    """
    import os
    import sys

    try:
        app()
        code: Any = 0
    except SystemExit as done:
        code = done.code
    if not _skip_teardown:
        sys.exit(code)
    if code is not None and not isinstance(code, int):  # sys.exit("message"): print it, exit 1
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":  # `python -m sensitivity.cli`: how `sweep --workers` starts its workers
    main()
