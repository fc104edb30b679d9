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
