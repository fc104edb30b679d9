"""The flags that more than one command takes, each declared once as an ``Annotated`` alias
(Typer's way): the report and compare settings, the storage a report reads, the devices and sizes of
the benchmarks, a JSON output file. A command's own flags are declared in its signature. Also how
every command's help shows what a flag takes (:class:`Command`, :class:`Group`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

from sensitivity.study.spec import COUNT_EXAMPLES, LIST_EXAMPLES, OTHER_EXAMPLES, STORAGE_ENV

_PASSWORD = "password: PGPASSWORD, ~/.pgpass, or the whole URL in the environment variable"

ReportStorage = Annotated[str, typer.Option(
    envvar=STORAGE_ENV, help=f"Storage URL holding the study ({_PASSWORD}).")]
JoinStorage = Annotated[str, typer.Option(
    envvar=STORAGE_ENV, help=f"Storage URL of the study to join (e.g. postgresql://user@host/db; {_PASSWORD}).")]
CompareStorage = Annotated[list[str], typer.Option(
    envvar=STORAGE_ENV, help="Storage URL: one for every study, or one per --study in the same order (repeat the "
                             f"flag; {_PASSWORD}).")]

TOLERANCE_DEFAULT = "0.05: keep at least 95% of the improvement"
"""What ``--tolerance`` is when not given, as its help shows it: the report's
:data:`~sensitivity.report.tolerance.DEFAULT_TAU` (not imported here: the report package loads
pandas and Optuna, which ``--help`` does without; a test checks that the two agree)."""
RELATIVE_TOLERANCE_DEFAULT = "0.01 for an accuracy, 0.1 for any other metric"
"""What ``--relative-tolerance`` is when not given, as its help shows it: the report's
:func:`~sensitivity.report.metrics.default_tolerance` of the metric (a test checks that they agree)."""

Tolerance = Annotated[Optional[float], typer.Option(
    help="Tolerance width threshold: the fraction tau of the achievable improvement (from the initial value L0 to "
         "the best L*) a run may lose. Computed with --relative-tolerance too (both widths are reported).",
    show_default=TOLERANCE_DEFAULT)]
RelativeTolerance = Annotated[Optional[float], typer.Option(
    "--relative-tolerance",
    help="Relative width threshold: within this fraction of the best loss (0.1 = 10%), or within this much of "
         "the best accuracy (0.01 = 1 point).",
    show_default=RELATIVE_TOLERANCE_DEFAULT)]
LrAxis = Annotated[str, typer.Option(
    "--lr-axis", help="lr axis of curves and widths: nominal, or effective (lr/(1-gamma) AdamRAG, lr/(1-beta1) "
                      "NAG/SGD, lr Adam/Lion).")]
FigureFormats = Annotated[str, typer.Option(
    "--format", help="Figure file formats, comma-separated, from png, svg, pdf (the HTML always embeds PNGs).")]

Epochs = Annotated[Optional[int], typer.Option(help="Epochs per trial (default: the task's).")]
TrainSize = Annotated[Optional[int], typer.Option(help="Use the first N training examples (default: the task's).")]
ValSize = Annotated[Optional[int], typer.Option(help="Use the first N validation examples (default: the task's).")]
BatchSize = Annotated[Optional[int], typer.Option(help="Mini-batch size (default: the task's).")]

BenchDevice = Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda or cuda:N.")]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the measurements to this JSON file.")]


_NOT_SWEEP_EXAMPLES = {"--tolerance": "0.05", "--relative-tolerance": "0.1", "--threads": "2", "--steps": "20",
                       "--rounds": "6", "--points": "24"}
"""Examples of the numeric flags of report, compare, worker and bench (the sweep's are in study.spec)."""


def flag_example(param: Any) -> str:
    """``--epochs 10``: a value the option ``param`` (a click parameter) takes, to quote when Typer
    cannot parse the one given, or "" when there is none to give (not an option, or a text option).

    The sweep's own examples (:data:`~sensitivity.study.spec.COUNT_EXAMPLES`,
    :data:`~sensitivity.study.spec.LIST_EXAMPLES`, :data:`~sensitivity.study.spec.OTHER_EXAMPLES`) come
    first, then those of the other commands' flags, then the option's own numeric default."""
    opts = [o for o in getattr(param, "opts", None) or [] if o.startswith("--")]
    if not opts:
        return ""
    flag = opts[0]
    for table in (COUNT_EXAMPLES, LIST_EXAMPLES, OTHER_EXAMPLES, _NOT_SWEEP_EXAMPLES):
        if flag in table:
            return f"{flag} {table[flag]}"
    default = getattr(param, "default", None)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return f"{flag} {default:g}"
    return ""


def comma_list(text: Optional[str]) -> Optional[tuple[str, ...]]:
    """``"Adam, nag"`` -> ``("adam", "nag")``; None stays None."""
    if text is None:
        return None
    return tuple(p.strip().lower() for p in text.split(",") if p.strip())


_LIST_OF = re.compile(r"<list\[(.+)\]>")


def _placeholders_as_typed(params: list[Any], ctx: Any) -> list[Any]:
    """``params`` with each value placeholder of the help saying what one occurrence of the flag takes.

    Typer's rich help writes every option's type after it, flags included (``--download <bool>``,
    ``--help <bool>``), which reads as if the flag took ``true`` or ``false``; and a repeatable
    option's list type (``--study <list[str]>``), which reads as if it took a list. A flag shows
    no placeholder (an empty metavar), a repeatable option the type of one value (``<str>``).
    """
    for param in params:
        if not isinstance(param, typer.core.TyperOption) or param.metavar is not None:
            continue
        if param.is_flag or param.count:
            param.metavar = ""
        elif param.multiple:
            shown = param.display_type(ctx)
            one = _LIST_OF.fullmatch(shown)
            param.metavar = f"<{one.group(1)}>" if one else shown
    return params


class Command(typer.core.TyperCommand):
    """Every ``adamrag-sens`` command (``@app.command(cls=Command)``): its help shows a flag without
    a value placeholder and a repeatable option with the type of one value."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _placeholders_as_typed(super().get_params(ctx), ctx)


class Group(typer.core.TyperGroup):
    """A command group (``typer.Typer(cls=Group)``): its own flags (``--help``) shown as
    :class:`Command` shows them."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _placeholders_as_typed(super().get_params(ctx), ctx)
