"""Output read through a pipe (CI logs, `| less`, `> file`) keeps whole table cells.

rich assumes 80 columns when stdout is not a terminal and then cuts cells ("AdamR…",
"lr=0.00…"); the CLI gives such output a wide console instead.
"""

from __future__ import annotations

import pytest

from sensitivity.catalog import OPTIMIZERS


def test_optimizers_table_is_whole_when_piped(run_cli, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, err = run_cli("optimizers")
    assert code == 0, err
    assert "…" not in out
    for name in OPTIMIZERS:
        assert f"│ {name} " in out
    assert "lr=0.001, beta1=0.9," in out  # adamrag's defaults, uncut


def test_columns_set_by_the_user_still_wins(run_cli):
    code, out, err = run_cli("optimizers", env={"COLUMNS": "60"})
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 60


@pytest.mark.slow  # two sweep processes
def test_a_resumed_sweep_shows_the_stored_best_not_only_this_runs(run_cli, tmp_path):
    db = f"sqlite:///{tmp_path / 'studies.db'}"
    flags = ("--optimizers", "adam", "--beta1", "0.9", "--epochs", "2", "--storage", db)
    code, first, err = run_cli("sweep", "--lr", "1e-2", *flags)
    assert code == 0, err
    stored = next(line for line in first.splitlines() if line.startswith("best val_loss")).split()[2].rstrip(":")
    # the new point learns almost nothing (lr 1e-6): the running best is still the stored one
    code, out, err = run_cli("sweep", "--lr", "1e-2,1e-6", *flags)
    assert code == 0, err
    bar = next(line for line in out.splitlines() if "2/2 trials" in line)
    assert f"best {stored}" in bar, bar


@pytest.mark.slow
def test_help_at_80_columns_shows_every_default_whole():
    """A terminal of 80 columns: no default is cut short with an ellipsis (the storage URL was, while
    a two-name --download/--no-download flag widened the option column)."""
    from typer.testing import CliRunner

    from sensitivity.cli import app

    for command in ("sweep", "worker", "report", "compare", "tasks", "bench train", "bench sweep"):
        result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert "…" not in result.output, (command, result.output)
        assert max(map(len, result.output.splitlines())) <= 80
    sweep = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "80"}).output
    assert "sqlite:///studies/adamrag-sens.db" in sweep


@pytest.mark.slow  # three report processes: about 8 s
def test_report_summary_in_a_narrow_terminal_never_cuts_a_value(tmp_path, run_cli):
    """At 80 (or 60) columns the summary cut values ("3.16e…" for both 3.16e-3 and 3.16e-1) and names
    ("AdamR…"); now every value shown is whole and the columns that do not fit are named as left out."""
    import re

    from sensitivity.study.spec import StudySpec
    from sensitivity.study.sweep import run_sweep

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(optimizers=("adamrag", "adam", "nag", "lion"), lr=(3.16e-3, 3.16e-1), beta1=(0.9,), epochs=1,
                     train_size=64, val_size=64, storage=url, study_name="narrow")
    run_sweep(spec)
    for columns in (200, 80, 60):
        code, out, err = run_cli("report", "--storage", url, "--study", "narrow", "--out", str(tmp_path / f"r{columns}"),
                                 env={"COLUMNS": str(columns)})
        assert code == 0, err
        table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
        assert "…" not in "\n".join(table)
        assert max(map(len, table)) <= columns
        rows = {line.split("│")[1].strip(): line for line in table if line.startswith("│")}
        assert set(rows) == {"AdamRAG", "Adam", "NAG", "Lion"}
        assert all(re.search(r"│ +(3\.16e-[13]) │", line) for line in rows.values())  # best lr, whole
        left_out = "left out for the terminal's width" in out
        assert left_out == (columns == 60), out  # 8 columns fit in 80, not in 60


@pytest.mark.slow
def test_tasks_and_optimizers_tables_at_80_columns_break_long_words_instead_of_cutting_them(run_cli):
    for command in ("tasks", "optimizers"):
        code, out, err = run_cli(command, env={"COLUMNS": "80"})
        assert code == 0, err
        assert "…" not in out, out
        assert max(len(line) for line in out.splitlines()) <= 80


def test_the_progress_bar_at_80_columns_keeps_counts_best_and_times_whole(monkeypatch):
    """At 80 columns the bar read '108/… trials … 0:00:… 0:00:…'; now only the current trial's
    description may be cut, never the counts, the best or the times."""
    import io

    from rich.console import Console

    from sensitivity.cli import terminal

    for width in (80, 100, 200):
        monkeypatch.setattr(terminal, "console", Console(file=io.StringIO(), width=width, color_system=None))
        bar = terminal.progress_bar()
        progress = terminal.SweepProgress(bar, "minimize")
        progress.start(1000, 999, 0.1234)
        progress.on_trial_start(1107, {"optimizer": "adamrag", "lr": 0.00316, "beta1": 0.95})
        shown = Console(file=io.StringIO(), width=width, color_system=None)
        shown.print(bar.make_tasks_table(bar.tasks))
        bar.stop()
        [line] = shown.file.getvalue().splitlines()
        assert len(line) <= width
        assert line.rstrip().endswith("999/1000 trials  best 0.1234 0:00:00 -:--:--"), line
        assert line.startswith("#1107 adamrag lr=0.00316"), line
