"""The ``adamrag-sens`` application: the Typer group that holds the command groups (one module
each: :mod:`~sensitivity.cli.sweep`, :mod:`~sensitivity.cli.report`,
:mod:`~sensitivity.cli.listing`, :mod:`~sensitivity.cli.bench`) and :func:`main`, the console
entry point."""

from __future__ import annotations

import sys
from typing import Any

import typer

from sensitivity.cli import bench, listing, report, sweep
from sensitivity.cli.edge import OneLineUsageErrors, teardown_skipped

app = typer.Typer(
    cls=OneLineUsageErrors,
    name="adamrag-sens",
    help="Learning-rate and momentum sensitivity of deep-learning optimizers (AdamRAG, Adam, NAG, Lion).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring paragraph wraps to the terminal, as Markdown joins its lines
)
app.add_typer(sweep.app)  # sweep, worker
app.add_typer(report.app)  # report, compare
app.add_typer(listing.app)  # tasks, optimizers
app.add_typer(bench.app, name="bench")


def main() -> None:
    """The ``adamrag-sens`` console entry point: the Typer app, and after ``sweep`` and ``worker``
    an exit without the interpreter's teardown (every record is committed by then; see
    :func:`sensitivity.study.worker_process.end_process`). Other commands exit normally."""
    try:
        app()
        code: Any = 0
    except SystemExit as done:
        code = done.code
    if not teardown_skipped():
        sys.exit(code)
    from sensitivity.study.worker_process import end_process

    end_process(code)
