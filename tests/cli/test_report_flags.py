"""`adamrag-sens report` mistakes: one line, exit 2, no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app

ONE_PROCESS = True  # its cases share one swept study (tests/conftest.py)

runner = CliRunner()


@pytest.fixture(scope="module")
def _swept_folder(tmp_path_factory):
    """A folder whose default storage holds a finished two-trial sweep (made once: every case only reads it)."""
    folder = tmp_path_factory.mktemp("report-flags")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ADAMRAG_SENS_STORAGE", raising=False)
        mp.chdir(folder)
        result = runner.invoke(app, ["sweep", "--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9",
                                     "--epochs", "1"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture()
def small_study(_swept_folder, monkeypatch):
    monkeypatch.chdir(_swept_folder)
    return _swept_folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tolerance", "-1"], "--tolerance -1 must be a finite number >= 0"),
        (["--tolerance", "nan"], "must be a finite number >= 0"),
        (["--tolerance", "1"], "--tolerance 1 must lie in [0, 1)"),
        (["--tolerance", "2"], "--tolerance 2 must lie in [0, 1)"),
        (["--relative-tolerance", "-0.1"], "--relative-tolerance -0.1 must be a finite number >= 0"),
        (["--lr-axis", "warped"], "--lr-axis 'warped' is not an lr axis; use nominal or effective"),
        (["--format", "png,gif"], "unknown figure format gif"),
        (["--out", "a-file.txt"], "is a file; give a folder"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/x"], "cannot open Optuna storage"),
        (["--study", "nope"], "no study named 'nope'"),
    ],
)
def test_report_mistakes_are_one_line_and_exit_2(small_study, args, message):
    (small_study / "a-file.txt").write_text("keep me")
    result = runner.invoke(app, ["report", "--study", "digits-mlp", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert (small_study / "a-file.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", ["report", "compare"])
def test_help_shows_the_thresholds_real_defaults(command):
    """--tolerance's help showed no default (the option's value is None, which the report reads as
    DEFAULT_TAU); both thresholds now show the default the report applies."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "[default: (0.05: keep at least 95% of the improvement)]" in text
    assert "[default: (0.01 for an accuracy, 0.1 for any other metric)]" in text


def test_the_defaults_the_help_shows_are_the_reports():
    from sensitivity.cli.options import RELATIVE_TOLERANCE_DEFAULT, TOLERANCE_DEFAULT
    from sensitivity.report.metrics import default_tolerance
    from sensitivity.report.tolerance import DEFAULT_TAU

    tau = float(TOLERANCE_DEFAULT.split(":")[0])
    assert tau == DEFAULT_TAU and f"keep at least {100 * (1 - tau):g}%" in TOLERANCE_DEFAULT
    assert RELATIVE_TOLERANCE_DEFAULT == (f"{default_tolerance('val_acc'):g} for an accuracy, "
                                          f"{default_tolerance('val_loss'):g} for any other metric")
