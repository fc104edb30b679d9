"""The SQLite file checked is the file SQLAlchemy opens, whatever the URL's
encoding; a journal with a torn record is read up to it, and never appended to."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.errors import UserError
from sensitivity.storage import journal_damage, normalize_storage_url, open_storage, sqlite_path

ONE_PROCESS = True  # its tests share one journal of a real sweep (tests/conftest.py)

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()
Q = ["--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1"]
TORN = '\n{"op_code": 7, "trial_id": 0, "ste'


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- kind 1: the file checked is the file opened --------------------------------------------------

@pytest.mark.parametrize("url", ["sqlite:////tmp/x/a%20b/s.db", "sqlite:///rel/a%2520b.db?timeout=3",
                                 "sqlite:////tmp/q%3F%23b/s.db", "sqlite:///plain.db", "sqlite:///a b/c.db"])
def test_sqlite_path_is_sqlalchemys(url):
    assert sqlite_path(url) == Path(make_url(url).database)


@pytest.mark.parametrize("name", ["a%20b", "50%", "a b", "q?#b", "x%3Fy"])
def test_bare_path_names_itself(tmp_path, name):
    path = tmp_path / name / "s.db"
    assert sqlite_path(normalize_storage_url(str(path))) == path


@pytest.mark.slow  # a sweep then its report
def test_percent_encoded_url_opens_and_checks_the_decoded_file(tmp_path):
    """The issue's input: folder a%20b exists; the URL's %20 means a space, as SQLAlchemy reads it."""
    (tmp_path / "a%20b").mkdir()
    url = f"sqlite:///{tmp_path}/a%20b/s.db"
    result = runner.invoke(app, ["sweep", "--storage", url, *Q])
    assert result.exit_code == 0, result.output
    assert [p for p in _tree(tmp_path) if not p.endswith(("-wal", "-shm"))] == ["a b", "a b/s.db", "a%20b"]
    assert list((tmp_path / "a%20b").iterdir()) == []  # no stray a%20b/s.db
    assert "studies" in {r[0] for r in sqlite3.connect(tmp_path / "a b" / "s.db").execute(
        "SELECT name FROM sqlite_master WHERE type='table'")}
    report = runner.invoke(app, ["report", "--storage", url, "--study", "digits-mlp", "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.output


def test_checks_act_on_the_decoded_file(tmp_path):
    """A text file at the decoded path is refused; an Optuna database at the encoded path is not the one meant."""
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "s.db").write_text("not a database\n")
    before = _sha(tmp_path / "a b" / "s.db")
    result = runner.invoke(app, ["sweep", "--storage", f"sqlite:///{tmp_path}/a%20b/s.db", *Q])
    assert result.exit_code == 2 and "a b/s.db is not an SQLite database" in result.stderr
    assert _sha(tmp_path / "a b" / "s.db") == before and _tree(tmp_path) == ["a b", "a b/s.db"]


@pytest.mark.slow  # a sweep then its report
def test_report_reads_a_database_whose_folder_needs_uri_escapes(tmp_path):
    """The read-only check opens SQLite by URI, where ? and # and % must be escaped."""
    folder = tmp_path / "q?#b%41"
    folder.mkdir()
    db = folder / "s.db"
    assert runner.invoke(app, ["sweep", "--storage", str(db), *Q]).exit_code == 0
    assert db.exists()
    before = _sha(db)
    result = runner.invoke(app, ["report", "--storage", str(db), "--study", "digits-mlp", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert _sha(db) == before


# ---- kind 2: torn journals ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("journal") / "t.log"
    assert runner.invoke(app, ["sweep", "--storage", str(path), *Q]).exit_code == 0
    return path


def _torn_copy(journal: Path, folder: Path, tail: str = TORN) -> Path:
    path = folder / "t.log"
    path.write_bytes(journal.read_bytes() + tail.encode())
    return path


def test_journal_damage_finds_the_first_bad_line(journal, tmp_path):
    whole = journal.read_bytes()
    lines = whole.count(b"\n")
    assert journal_damage(journal) is None
    assert journal_damage(_torn_copy(journal, tmp_path)) == (lines + 1, len(whole))
    assert journal_damage(_torn_copy(journal, tmp_path, '{"op_code": 7')) == (lines + 1, len(whole))
    assert journal_damage(_torn_copy(journal, tmp_path, 'not json\n{"op_code": 0}\n')) == (lines + 1, len(whole))


@pytest.mark.parametrize("tail", [TORN, *(pytest.param(tail, marks=pytest.mark.slow)  # a whole report each: one in the quick loop
                                     for tail in ('{"op_code": 7, "trial_id"', "\n", '[1, 2]\n'))])
def test_report_reads_up_to_a_torn_record_with_one_warning_line(journal, tmp_path, tail):
    path = _torn_copy(journal, tmp_path, tail)
    before = _sha(path)
    result = runner.invoke(app, ["report", "--storage", str(path), "--study", "digits-mlp", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: journal file") and "damaged at line" in lines[0]
    assert "|2|" not in result.stdout and "trials" in result.stdout
    summary = (tmp_path / "r" / "summary.csv").read_text().splitlines()
    assert summary[1].split(",")[2] == "2"  # both trials read
    assert _sha(path) == before


@pytest.mark.parametrize("command", [["sweep", *Q[:3], "1e-3,1e-2,3e-2", *Q[4:]], ["worker", "--study", "digits-mlp"]])
def test_writers_refuse_a_torn_journal_and_leave_it_untouched(journal, tmp_path, command):
    path = _torn_copy(journal, tmp_path)
    before = _sha(path)
    result = runner.invoke(app, [command[0], "--storage", str(path), *command[1:]])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    size = len(journal.read_bytes())
    assert len(lines) == 1 and f"truncate -s {size} " in lines[0], lines
    assert _sha(path) == before
    path.write_bytes(path.read_bytes()[:size])  # the repair the message gives
    assert runner.invoke(app, [command[0], "--storage", str(path), *command[1:]]).exit_code == 0


def test_an_append_never_follows_a_record_torn_after_opening(journal, tmp_path):
    path = _torn_copy(journal, tmp_path, "")
    storage = open_storage(str(path))
    study = optuna.load_study(study_name="digits-mlp", storage=storage)
    with path.open("ab") as fh:  # another process crashes mid-write
        fh.write(TORN.encode())
    before = _sha(path)
    with pytest.raises(UserError, match="ends in a torn record"):
        study.set_user_attr("x", 1)
    assert _sha(path) == before
    assert all(json.loads(line) for line in path.read_bytes().splitlines()[:-2])
