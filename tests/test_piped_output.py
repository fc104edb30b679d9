"""Output read through a pipe (CI logs, `| less`, `> file`) keeps whole table cells.

rich assumes 80 columns when stdout is not a terminal and then cuts cells ("AdamR…",
"lr=0.00…"); the CLI gives such output a wide console instead.
"""

from __future__ import annotations

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
