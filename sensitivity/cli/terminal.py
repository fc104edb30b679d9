"""What the command line shows on the terminal: the two consoles (results on stdout, errors and
notices on stderr), the sweep's progress bar, the lines that end a sweep, tables fitted to the
terminal's width (:func:`print_table`), and the report's summary table sized to the terminal."""

from __future__ import annotations

import copy
import logging
import os
import re
import sys
from typing import Any

from rich.cells import cell_len, chop_cells
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text

# Long lines (commands to copy) never wrap mid-word. Piped or redirected, rich would assume 80
# columns and cut table cells to "AdamR…"; a file or a pipe has no width, so tables print whole.
_PIPED_WIDTH = 200
# User text (task and study names, paths, descriptions, a user's error messages) reaches both
# consoles: no ":name:" in it becomes an emoji, and where a line carries rich markup of its own the
# user text in it passes through rich.markup.escape (other lines print with markup=False).
console = Console(stderr=False, soft_wrap=True, emoji=False,
                  width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else _PIPED_WIDTH)
err_console = Console(stderr=True, emoji=False)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but tab and newline: ESC starts a terminal escape sequence (colours, a
cleared screen, a changed window title), CR rewrites the line."""


def terminal_text(text: object) -> str:
    """User text as a console line shows it, character for character: control characters (an
    escape sequence, a carriage return) replaced by U+FFFD, rich markup (``[bold]``, ``[/]``)
    escaped. For text placed inside a line that carries markup of its own."""
    return rich_escape(_CONTROL.sub("\ufffd", str(text)))


def plain_text(text: object) -> str:
    """User text for a line printed without markup (``markup=False``): control characters (an
    escape sequence that would recolour the terminal, a carriage return) replaced by U+FFFD, the
    rest shown as it is."""
    return _CONTROL.sub("\ufffd", str(text))


class NoticeLines(logging.Handler):
    """What the library logs for the user to know (``sensitivity.storage.NOTICES``: a journal read only up
    to a torn record) as one ``warning:`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[bold yellow]warning:[/] {terminal_text(record.getMessage())}", highlight=False, soft_wrap=True)


_notices = logging.getLogger("sensitivity.notices")  # = sensitivity.storage.NOTICES, without importing Optuna here
_notices.addHandler(NoticeLines())
_notices.propagate = False



def quiet_optuna() -> None:
    """Optuna's log shows warnings only, not a line per trial (the progress bar says that)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)


class SweepProgress:
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

        esc = terminal_text
        console.print(f"study [bold]{esc(str(result.study_name))}[/] in {esc(str(mask_storage(result.storage)))}  "
                      f"task {esc(str(spec.task))}  optimizers {','.join(spec.optimizers)}  sampler {spec.sampler}  "
                      f"{plan_counts(result.start)}  on {where}"
                      + (f", {esc(str(result.runs_as))}" if result.runs_as else ""), highlight=False)
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
        console.print(f"trial #{failure.number} failed ({format_params(failure.params)}): {plain_text(failure.error)}; {then}",
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


def plan_counts(start: Any) -> str:
    """``12 points (7 complete, 4 queued earlier, 1 queued now)``: where every planned point stands
    as a sweep starts (a :class:`~sensitivity.study.queue.PlanStart`), each counted once, so the
    counts add up to the total. The points queued (earlier, now, again) are what this sweep runs;
    those running elsewhere finish in their own process. Counts of 0 are left out, but complete."""
    counts = ((start.running, "running elsewhere"), (start.waiting, "queued earlier"),
              (start.queued - start.failed_before, "queued now"),
              (start.failed_before, "queued again after a failed or interrupted trial"))
    parts = [f"{start.complete} complete", *(f"{n} {what}" for n, what in counts if n)]
    return f"{start.total} points ({', '.join(parts)})"


def progress_bar() -> Progress:
    """The sweep's rich progress bar on :data:`console` (started by :class:`SweepProgress`)."""
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



_BREAK = re.compile(r"(?<=[\w)]-)(?=[A-Za-z(])|(?<=/)(?=\S)|(?<=[A-Za-z]_)(?=[A-Za-z])|(?<=,)(?=[^\s\d])|(?<=\w)(?=\()")
"""Where a word too long for its column may break, besides the spaces: after a hyphen between
words (``Fashion-|MNIST``, ``pool-|dense``, not ``1e-3`` or ``CIFAR-100``), after a slash
(``nats/|example``), after an underscore between letters (``policy_|entropy``), after a comma
that a word follows, and before an opening parenthesis (``dense|(1024)``)."""

_WORD = re.compile(r"\S+")


def _pieces(word: str) -> list[str]:
    """``word`` cut at the places it may break (:data:`_BREAK`)."""
    return [piece for piece in _BREAK.split(word) if piece]


def _longest_piece(text: str, breakable: bool) -> int:
    """The narrowest width ``text`` wraps to without cutting a piece: its longest line when it may
    not wrap, else its longest word, or piece of a word (:data:`_BREAK`)."""
    if not breakable:
        return max((cell_len(line) for line in text.split("\n")), default=0)
    return max((cell_len(piece) for word in _WORD.findall(text) for piece in _pieces(word)), default=0)


def _line_breaks(line: str, width: int) -> list[int]:
    """Offsets at which to break ``line`` (no newline in it) to fit ``width``: at spaces, inside a
    word that does not fit on a line of its own at the places :data:`_BREAK` allows, and only where
    a piece is wider than ``width`` at the width itself."""
    breaks: list[int] = []
    used = 0  # cells on the current line
    for match in _WORD.finditer(line):
        start, word = match.start(), match.group()
        if used and used + 1 + cell_len(word) <= width:  # fits after a space
            used += 1 + cell_len(word)
            continue
        if used:
            breaks.append(start)
            used = 0
        offset = start
        for piece in (_pieces(word) if cell_len(word) > width else [word]):
            for part in chop_cells(piece, width) if cell_len(piece) > width else [piece]:  # a last resort
                if used and used + cell_len(part) > width:
                    breaks.append(offset)
                    used = 0
                used += cell_len(part)
                offset += len(part)
    return breaks


def _wrapped(cell: Any, width: int, breakable: bool) -> Any:
    """``cell`` (markup text or a rich Text) as a Text broken into lines of at most ``width`` cells
    (see :func:`_line_breaks`), its styles kept; anything else as it is."""
    if isinstance(cell, str):
        cell = console.render_str(cell)
    if not isinstance(cell, Text) or not breakable:
        return cell
    lines = []
    for line in cell.split("\n", allow_blank=True):
        for part in line.divide(_line_breaks(line.plain, width)):
            part.rstrip()
            lines.append(part)
    return Text("\n").join(lines)


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return console.render_str(cell).plain if isinstance(cell, str) else ""


def _fit(natural: list[int], least: list[int], room: int) -> list[int] | None:
    """Column widths summing to at most ``room``: each column's ``natural`` width, the widest cut
    first, none below its ``least``; None when the ``least`` widths do not fit."""
    if sum(least) > room:
        return None
    widths = list(natural)
    while sum(widths) > room:
        i = max((i for i, w in enumerate(widths) if w > least[i]), key=lambda i: widths[i])
        widths[i] -= 1
    return widths


def fit_table(table: Table, width: int | None = None) -> Table:
    """``table`` laid out for a terminal ``width`` cells wide (default: the console's), so that no
    word is cut or split at a random place (rich folds a word wider than its column mid-word,
    ``den|se(1024)``, or cuts it to ``den…``).

    Each column gets its natural width, the widest narrowed first, but never below its longest
    word, or piece of a word at a sensible break (:data:`_BREAK`); a ``no_wrap`` column (numbers)
    keeps its width. The cells are then wrapped there. When the columns do not fit even so, the
    table is stacked: one block per row, each cell on a line of its own under the column's name.
    """
    width = width or console.width
    columns = table.columns
    headers = [_plain(column.header) for column in columns]
    cells = [list(column.cells) for column in columns]
    texts = [[_plain(cell) for cell in column] for column in cells]
    breakable = [not column.no_wrap for column in columns]
    natural = [max(cell_len(line) for text in [header, *column] for line in text.split("\n"))
               for header, column in zip(headers, texts)]
    least = [max([_longest_piece(header, True)] + [_longest_piece(text, wraps) for text in column])
             for header, column, wraps in zip(headers, texts, breakable)]
    widths = _fit(natural, least, width - (3 * len(columns) + 1))  # a border and a space either side of each column
    fitted = copy.copy(table)
    fitted.columns, fitted.rows = [], []
    if widths is not None:
        for column, w in zip(columns, widths):
            fitted.add_column(_wrapped(column.header, w, True), justify=column.justify, style=column.style,
                              header_style=column.header_style, vertical=column.vertical, width=w,
                              no_wrap=column.no_wrap, overflow="fold")
        for r, row in enumerate(table.rows):
            fitted.add_row(*(_wrapped(column[r], w, wraps) for column, w, wraps in zip(cells, widths, breakable)),
                           style=row.style, end_section=row.end_section)
        return fitted
    # stacked: the column names in a narrow column (a third of the room at most, unless a word needs
    # more), the values in the rest; a word wider than that is folded, which takes a terminal of
    # fewer than about 30 columns
    room = width - 7
    name_w = max(max(_longest_piece(header, True) for header in headers),
                 min(max(map(cell_len, headers)), room // 3))
    value_w = max(1, room - name_w)
    fitted.show_header = False
    fitted.add_column(style="bold", width=name_w, overflow="fold")
    fitted.add_column(width=value_w, overflow="fold")
    for r in range(len(table.rows)):
        for i, column in enumerate(columns):
            fitted.add_row(_wrapped(column.header, name_w, True), _wrapped(cells[i][r], value_w, True),
                           end_section=i == len(columns) - 1)
    return fitted


def print_table(table: Table) -> None:
    """Print ``table`` on :data:`console`, fitted to the terminal's width (:func:`fit_table`)."""
    console.print(fit_table(table))


def format_params(params: dict[str, Any]) -> str:
    """``optimizer=adam lr=0.001 beta1=0.9``: a trial's parameters on one line."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def ran_line(ran: int, diverged: int, prog: Any) -> str:
    """``ran N trials (D diverged); C of T points complete`` and the failed, if any."""
    line = f"ran {ran} trials ({diverged} diverged); {prog.complete} of {prog.total} points complete"
    if prog.failed:
        line += f"; {prog.failed} failed (listed below): run the same command again to retry them"
    return line


def print_failures(failures: list[Any]) -> None:
    """One line per planned point whose trial failed (retries used up), with its error."""
    for f in failures:
        err_console.print(f"failed: trial #{f.number} {format_params(f.params)}: {plain_text(f.error)}", highlight=False,
                          markup=False, soft_wrap=True)


def print_outcome(result: Any, metric: str) -> None:
    """The lines that end a sweep, from its :class:`~sensitivity.study.sweep.SweepResult`."""
    prog = result.progress
    if result.complete_before == result.planned:
        console.print(f"nothing to run: all {result.planned} points of study {result.study_name!r} are complete",
                      highlight=False, markup=False)
    elif result.workers is None:
        console.print(ran_line(result.ran, result.diverged, prog), highlight=False)
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
            err_console.print(f"worker {index} was killed by signal {signum}; its running trial(s) were failed when "
                              f"their heartbeats went stale and their points queued again", highlight=False, soft_wrap=True)
    print_failures(result.failures)
    if result.best:
        console.print(best_line(result.best, metric), highlight=False, markup=False)


def best_line(best: dict[str, Any], metric: str) -> str:
    """``best val_loss 0.1128: trial #42 optimizer=nag ...``, saying when that trial diverged (then
    every trial did) or ended worse than it started (its value is clipped at the initial one)."""
    note = ""
    if best.get("diverged"):
        note = f" (diverged: {best.get('diverged_reason') or 'training blew up'}; every trial diverged)"
    elif best.get("final") is not None and best["final"] == best["final"] and best["final"] != best["value"]:
        note = f" (clipped at the initial value: the final {metric} was {best['final']:.4g})"
    return f"best {metric} {best['value']:.4f}{note}: trial #{best['number']} {format_params(best['params'])}"


_CLI_COLUMNS = {"optimizer": "optimizer", "trials": "trials", "best ": "best", "best lr": "best lr",
                "tolerance width": "width (dec)", "relative width": "rel. width (dec)",
                "good share lr x beta1": "share lr x beta1", "LR sensitivity": "LR sens.", "diverged": "diverged"}


_CLI_DROP_ORDER = ("rel. width (dec)", "LR sens.", "trials", "share lr x beta1", "best")
"""Columns of the terminal summary left out first when the terminal is too narrow for all of them."""


def print_summary_table(readable: Any, title: str, caption: str = "") -> None:
    """A compact rich table of the readable summary: the columns a terminal has room for, point values
    only (the bounds are in the report and the CSV)."""
    shown = []
    for c in readable.columns:
        prefix = "best lr" if c == "best lr" else next((p for p in _CLI_COLUMNS if c.startswith(p)), None)
        if prefix is not None:
            shown.append((c, _CLI_COLUMNS[prefix]))
    cells = {short: [str(row[c]).split(" [")[0] or "-" for _, row in readable.iterrows()] for c, short in shown}
    shown_cells = {short: [terminal_text(v) for v in values] for short, values in cells.items()}  # text, not markup
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
    table = Table(title=terminal_text(title), caption=terminal_text(caption) if caption else None)
    for short, width in widths.items():
        table.add_column(short, justify="left" if short == "optimizer" else "right", width=width,
                         overflow="fold")
    for i in range(len(readable)):
        table.add_row(*(shown_cells[short][i] for short in widths))
    console.print(table)
