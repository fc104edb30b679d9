"""Tables on a narrow terminal break text at spaces, or inside a word only at a sensible place
(after a hyphen between words, a slash, an underscore, before a parenthesis); no cell is cut.

`adamrag-sens tasks` at 80 columns printed "scikit-learn' | s", "(nats/example | )",
"dataset-fashi | on-mnist" and "den | se(1024)": rich folds a word wider than its column at the
column's width. Every table the CLI prints now goes through terminal.fit_table, which sizes the
columns to their words and wraps the cells itself, or stacks the table (one block per row) when
the columns cannot all be that wide.
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.table import Table

from sensitivity.cli import terminal
from sensitivity.cli.terminal import _BREAK, fit_table

LONG = "DeepOBS fmnist_2c2d: conv5x5(32)-pool-conv5x5(64)-pool-dense(1024)-10 on real Fashion-MNIST"
CELLS = [
    ["digits-mlp\nMLP (64-128-128-10) on scikit-learn's 1,797 real 8x8 digits", "val_loss (nats/example), minimized",
     "Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist); --download when online", "1e-3"],
    ["fmnist-cnn\n" + LONG, "policy_entropy (nats), maximized", "--dataset cifar10,cifar100,fashion-mnist", "-0.5"],
]


def _table() -> Table:
    table = Table(title="a table", show_lines=True)
    for header in ("name", "metrics (first: default objective)", "data", "value"):
        table.add_column(header)
    table.columns[-1].no_wrap = True  # numbers: never wrapped
    for row in CELLS:
        table.add_row(*row)
    return table


def _check_wrapped(original: str, wrapped: str, width: int) -> None:
    """``wrapped`` is ``original`` with line breaks at spaces or at a :data:`_BREAK` place only,
    every line at most ``width`` cells: nothing cut, no word split elsewhere."""
    allowed = {m.start() for m in _BREAK.finditer(original)} | {i for i, c in enumerate(original) if c == "\n"}
    pos = 0
    lines = wrapped.split("\n")
    for n, line in enumerate(lines):
        assert len(line) <= width, (line, width)
        assert original[pos:pos + len(line)] == line, (original, wrapped)
        pos += len(line)
        if n == len(lines) - 1:
            break
        if original[pos] in " \n":
            pos += 1
            while original[pos] == " ":
                pos += 1
        else:
            assert pos in allowed, f"split inside a word: {original[pos - 8:pos]!r} | {original[pos:pos + 8]!r}"
    assert pos == len(original), (original, wrapped)


@pytest.mark.parametrize("width", [200, 120, 80, 60, 40])
def test_each_cell_breaks_at_spaces_or_sensible_places_and_fits(width):
    fitted = fit_table(_table(), width)
    stacked = len(fitted.columns) == 2
    for r, row in enumerate(CELLS):
        for c, original in enumerate(row):
            if stacked:
                cell = list(fitted.columns[1].cells)[r * len(row) + c]
                column = fitted.columns[1]
            else:
                cell, column = list(fitted.columns[c].cells)[r], fitted.columns[c]
            _check_wrapped(original, cell.plain, column.width)
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(fitted)
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= width and "…" not in out.getvalue()
    shown = "\n".join(lines)
    for row in CELLS:  # rich wrapped nothing further: every cell line is on a line of the output
        for original in row:
            for word in re.findall(r"\S+", original):
                for piece in _BREAK.split(word):
                    assert piece in shown, (piece, width)


def test_a_narrow_table_keeps_its_columns_and_a_very_narrow_one_is_stacked():
    assert len(fit_table(_table(), 120).columns) == 4
    stacked = fit_table(_table(), 40)
    assert len(stacked.columns) == 2 and not stacked.show_header
    names = [cell.plain for cell in stacked.columns[0].cells]
    assert [name.replace("\n", " ") for name in names[:4]] == ["name", "metrics (first: default objective)", "data",
                                                              "value"]


def test_a_number_column_is_never_wrapped():
    fitted = fit_table(_table(), 80)
    assert [cell.plain for cell in fitted.columns[3].cells] == ["1e-3", "-0.5"]


def _pieces_of(text: str) -> set[str]:
    words = re.findall(r"[^\s│┃┏┓┗┛┡┩┣┫━─┌┐└┘├┤┬┴┼╇╈╋┳┻]+", text)
    return {piece for word in words for piece in _BREAK.split(word) if piece}


def _in_process(monkeypatch, command: str, columns: int) -> str:
    """``adamrag-sens COMMAND`` on a terminal ``columns`` wide, in this process (the console's width
    is set as the terminal sets it at start-up)."""
    from typer.testing import CliRunner

    from sensitivity.cli import app

    monkeypatch.setattr(terminal.console, "width", columns)
    result = CliRunner().invoke(app, [command], env={"COLUMNS": str(columns)}, terminal_width=columns)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("command", ["tasks", "optimizers"])
def test_cli_tables_at_80_and_60_columns_and_piped_split_no_word(run_cli, monkeypatch, command):
    wide = _in_process(monkeypatch, command, 1000)
    outs = {columns: _in_process(monkeypatch, command, columns) for columns in (80, 60)}
    monkeypatch.delenv("COLUMNS", raising=False)  # piped, no COLUMNS: the width the CLI picks for itself
    code, outs[terminal._PIPED_WIDTH], err = run_cli(command)
    assert code == 0, err
    for columns, out in outs.items():
        assert "…" not in out
        assert max(map(len, out.splitlines())) <= columns
        missing = _pieces_of(wide) - _pieces_of(out)
        assert not missing, (columns, sorted(missing)[:10])
