"""The ``report`` and ``compare`` commands: a stored study (or several) -> figures, tables and
pages. ``report`` -> :func:`sensitivity.report.build_report`, ``compare`` ->
:func:`sensitivity.report.compare.build_compare`; their shared flags are checked once here. Neither
imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sensitivity.cli import terminal
from sensitivity.cli.edge import user_errors
from sensitivity.cli.options import (Command, CompareStorage, FigureFormats, LrAxis, RelativeTolerance, ReportStorage,
                                     Tolerance)
from sensitivity.cli.terminal import console
from sensitivity.errors import UserError, value_error
from sensitivity.study.spec import DEFAULT_STORAGE

app = typer.Typer(rich_markup_mode="markdown")


_TOLERANCE_EXAMPLE = "0.05 (keep 95% of the improvement)"


def check_report_options(tolerance: Optional[float], relative_tolerance: Optional[float], lr_axis: str,
                         fmt: str) -> tuple[str, ...]:
    """Check the flags report and compare share; return the figure formats.

    Raises:
        UserError: a negative or infinite threshold, a --tolerance of 1 or more, an unknown lr axis or figure format.
    """
    from sensitivity.report.effective_lr import LR_AXES
    from sensitivity.report.build import FIGURE_FORMATS

    for flag, value, example in (("--tolerance", tolerance, _TOLERANCE_EXAMPLE),
                                 ("--relative-tolerance", relative_tolerance, "0.1 (within 10% of the best loss)")):
        if value is not None and not (value >= 0 and value < float("inf")):
            raise value_error(flag, f"{value:g}", "must be a finite number >= 0", example)
    if tolerance is not None and tolerance >= 1:  # tau = 1 keeps 0% of the improvement: every run that improved at all
        raise value_error("--tolerance", f"{tolerance:g}", "must lie in [0, 1): it is the share of the improvement over "
                          "the initial value a run may lose", _TOLERANCE_EXAMPLE)
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


@app.command(cls=Command)
@user_errors
def report(
    storage: ReportStorage = DEFAULT_STORAGE,
    study: Annotated[str, typer.Option(help="Study name.")] = "digits-mlp",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default reports/STUDY).")] = None,
    tolerance: Tolerance = None,
    relative_tolerance: RelativeTolerance = None,
    lr_axis: LrAxis = "nominal",
    fmt: FigureFormats = "png",
) -> None:
    """Write figures, CSV tables, report.md and report.html from a stored study."""
    terminal.quiet_optuna()
    from sensitivity.report import build_report
    from sensitivity.report.prose import summary_table

    formats = check_report_options(tolerance, relative_tolerance, lr_axis, fmt)
    out_dir = out or Path("reports") / study
    _check_out(out_dir)
    try:
        paths = build_report(storage, study, out_dir, tolerance=tolerance, relative_tolerance=relative_tolerance,
                             lr_axis=lr_axis, formats=formats)
    except OSError as err:  # a folder that cannot be created or written
        raise UserError(f"cannot write the report to {out_dir} ({err.strerror or err}); give another --out folder") from None
    analysis = paths.analysis
    bounds = analysis.bootstrap
    terminal.print_summary_table(summary_table(analysis.summary, metric=analysis.settings.metric,
                                               lr_axis=analysis.settings.lr_axis),
                                 f"study {study}: summary (definitions in report.html)",
                                 "95% seed-bootstrap bounds: report.html, summary.csv (*_low, *_high)" if bounds else "")
    console.print(terminal.plain_text("findings: " + " ".join(paths.findings)), highlight=False, markup=False)
    console.print(terminal.plain_text(f"report written to {paths.out_dir}/ (open {paths.report_html})"), markup=False)


@app.command(cls=Command)
@user_errors
def compare(
    storage: CompareStorage = [DEFAULT_STORAGE],  # noqa: B006 - Typer copies a list default
    study: Annotated[list[str], typer.Option(help="A study to compare; repeat for each (--study A --study B).")] = [],  # noqa: B006
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("reports") / "compare",
    tolerance: Tolerance = None,
    relative_tolerance: RelativeTolerance = None,
    lr_axis: LrAxis = "nominal",
    fmt: FigureFormats = "png",
) -> None:
    """Compare several studies (tasks): a table per task and optimizer, performance profiles, a grid of lr curves."""
    terminal.quiet_optuna()
    from sensitivity.report.compare import build_compare, pair_refs

    formats = check_report_options(tolerance, relative_tolerance, lr_axis, fmt)
    refs = pair_refs(storage, study)
    _check_out(out)
    try:
        paths = build_compare(refs, out, tolerance=tolerance, relative_tolerance=relative_tolerance,
                              lr_axis=lr_axis, formats=formats)
    except OSError as err:
        raise UserError(f"cannot write the comparison to {out} ({err.strerror or err}); give another --out folder") from None
    console.print(terminal.plain_text("findings: " + " ".join(paths.findings)), highlight=False, markup=False)
    console.print(terminal.plain_text(f"comparison written to {paths.out_dir}/ (open {paths.compare_html})"), markup=False)
