"""`adamrag-sens optimizers`: each column holds what its header says.

AdamRAG's row said "gamma is the Ravine extrapolation coefficient" in the beta2 column. An
optimizer's own hyperparameters (beyond lr, beta1, beta2, weight decay) now have their own column.
"""

from __future__ import annotations

from typer.testing import CliRunner

from sensitivity.catalog import COMMON_HYPERPARAMETERS, OPTIMIZERS, WEIGHT_DECAY_KINDS
from sensitivity.cli import app, terminal


def test_the_catalog_says_what_each_hyperparameter_means_under_its_own_name():
    for name, info in OPTIMIZERS.items():
        own = [hp for hp in info.hyperparameters if hp not in COMMON_HYPERPARAMETERS]
        assert list(info.other_meanings) == own, name
        for hp in ("beta1", "beta2"):
            meaning = getattr(info, f"{hp}_meaning")
            assert (meaning == "(none)") == (hp not in info.hyperparameters), (name, hp)
            others = [h for h in info.hyperparameters if h not in (hp, "lr")]
            assert not any(h in meaning for h in others), (name, hp, meaning)  # about hp only
    assert OPTIMIZERS["adamrag"].other_meanings == {"gamma": "Ravine extrapolation coefficient"}


def _rows(out: str) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows, cells joined over their wrapped lines."""
    lines = out.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("┃")).strip("┃").split("┃")]
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0]:
            rows.append(cells)
        else:  # a continuation line of the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
    return header, rows


def test_each_column_of_the_optimizers_table_holds_what_its_header_says(monkeypatch):
    # The CLI's console takes its width when the module is imported (an earlier test in this
    # process may have imported it at 80 columns): set it, so that the table is in columns.
    monkeypatch.setattr(terminal.console, "width", 400)
    result = CliRunner().invoke(app, ["optimizers"], env={"COLUMNS": "400"}, terminal_width=400)
    assert result.exit_code == 0, result.output
    header, rows = _rows(result.stdout)
    assert header[:8] == ["name", "hyperparameters", "default lr range", "defaults", "beta1", "beta2",
                          "other hyperparameters", "weight decay"]
    by_name = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(by_name) == set(OPTIMIZERS)
    for name, info in OPTIMIZERS.items():
        row = by_name[name]
        assert row["beta1"] == info.beta1_meaning and row["beta2"] == info.beta2_meaning, row
        assert "gamma" not in row["beta1"] + row["beta2"]
        assert row["weight decay"] == WEIGHT_DECAY_KINDS[info.weight_decay_kind], row
        for hp, meaning in info.other_meanings.items():
            assert f"{hp}: {meaning}" in row["other hyperparameters"]
    assert by_name["adamrag"]["other hyperparameters"] == "gamma: Ravine extrapolation coefficient"
    assert by_name["adamw"]["weight decay"].startswith("decoupled") and by_name["adam"]["weight decay"].startswith("coupled")
    assert by_name["adam"]["other hyperparameters"] == "(none)"
