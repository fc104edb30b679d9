"""The ``tasks`` and ``optimizers`` commands: what can be swept, as tables. ``tasks --measure``
also times one trial of each built-in task (:func:`sensitivity.bench.task_times.measure_tasks`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from sensitivity.cli.edge import user_errors
from sensitivity.cli.options import Command
from sensitivity.cli.terminal import console, err_console, print_table, terminal_text
from sensitivity.errors import UserError

app = typer.Typer(rich_markup_mode="markdown")


@app.command(cls=Command)
@user_errors
def tasks(
    measure: Annotated[bool, typer.Option("--measure", help="Also time one trial of each built-in task at its default budget on this machine (Adam, lr 1e-3; minutes).")] = False,
    device: Annotated[str, typer.Option(help="Device for --measure.")] = "cpu",
) -> None:
    """List the workloads: metrics and direction, data source, default budget, time per trial.

    Installed packages' tasks (entry-point group adamrag_sens.tasks) follow the built-ins; your own
    module works too: `sweep --task package.module:factory`.
    """
    from sensitivity.tasks import TASKS, entry_point_tasks, get_task

    measured = _measure(device) if measure else {}
    table = Table(title="tasks (sweep --task NAME)", show_lines=True)
    for col in ("name", "metrics (first: default objective)", "data", "default budget", "time per trial"):
        table.add_column(col)

    def row(name: str, t: Any, source: str = "") -> None:
        # every cell from a task's own declaration is text, never rich markup: a description
        # holding "[/]" or "[bold red]" is printed as written (and cannot break the table)
        esc = terminal_text
        metrics = "\n".join(f"{m.name} ({m.unit}), {m.direction}d" for m in t.metrics)
        data = t.data_source + (f"; --dataset {', '.join(t.datasets)}" if len(t.datasets) > 1 else "")
        timing = esc(str(t.cpu_trial_time or "not measured"))
        if name in measured:
            timing = measured[name] + "\n" + timing
        table.add_row(f"{esc(name)}\n[dim]{esc(str(t.description))}[/]", esc(metrics), esc(data + source),
                      esc(str(t.budget())), timing)

    def broken(name: str, target: str, reason: str) -> None:
        table.add_row(terminal_text(name), "", terminal_text(f"entry point {target}"), "",
                      f"[red]broken:[/] {terminal_text(reason)}")

    for t in TASKS.values():
        row(t.name, t)
    for name, target in entry_point_tasks().items():  # the installed package's own declaration
        if name.strip().lower() in TASKS:  # `--task NAME` reaches the built-in: this one can never run
            broken(name, target, f"shadows the built-in task {name.strip().lower()!r}; rename the entry point "
                                 f"in its package's metadata, or use --task {target}")
            continue
        try:
            row(name, get_task(name), f"\n(entry point {target})")
        except UserError as err:  # listed, with why it cannot run, so the list itself never fails
            broken(name, target, str(err))
    print_table(table)


def _measure(device: str) -> dict[str, str]:
    """Task name -> the measured cell of the table; a task whose data are missing is named on stderr."""
    from sensitivity.bench.printout import header
    from sensitivity.bench.task_times import measure_tasks

    measured = measure_tasks(device)
    console.print(header(device), highlight=False)
    cells = {}
    for name, took in measured.items():
        if took.skipped:
            err_console.print(f"{name}: not measured ({took.skipped})", highlight=False, soft_wrap=True, markup=False)
        else:
            cells[name] = f"{took.wall_s:.1f} s here, {took.cpu_s:.1f} CPU s ({device}, measured now)"
    return cells


@app.command(cls=Command)
def optimizers() -> None:
    """List the optimizers, what beta1/beta2 (and any hyperparameter of their own, such as AdamRAG's
    gamma) mean for each, whether their weight decay is coupled or decoupled, and their default search ranges."""
    from sensitivity.catalog import OPTIMIZERS, WEIGHT_DECAY_KINDS

    table = Table(title="optimizers")
    for col in ("name", "hyperparameters", "default lr range", "defaults", "beta1", "beta2", "other hyperparameters",
                "weight decay", "source"):
        table.add_column(col)
    for o in OPTIMIZERS.values():
        table.add_row(
            o.name, ", ".join(o.hyperparameters), f"{o.lr_range[0]:g} .. {o.lr_range[1]:g}",
            ", ".join(f"{k}={v:g}" for k, v in o.defaults.items()), o.beta1_meaning, o.beta2_meaning,
            "\n".join(f"{name}: {meaning}" for name, meaning in o.other_meanings.items()) or "(none)",
            WEIGHT_DECAY_KINDS[o.weight_decay_kind], o.source,
        )
    print_table(table)
