"""Local SQLite faults named for what they are, in tests that hold as root too: the decisions from
what the file system says, SQLite's own errors (a read-only connection, a database that cannot
grow, which is how SQLite reports a full disk), the read-only opening of `report`, and a sweep
that meets a full disk while it runs."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.errors import UserError
from sensitivity.storage import is_connection_lost, open_storage, release_storage
from sensitivity.storage.local_faults import folder_problem, local_fault_message, sqlite_fault, write_problem
from sensitivity.storage.sqlite import read_only_choice, read_only_uri
from tests.helpers.sqlite_files import database_digest

SMALL = ["--optimizers", "adam", "--beta1", "0.9", "--epochs", "1", "--train-size", "64", "--val-size", "32"]


def _one_line_without_a_server(text: str) -> None:
    assert "\n" not in text and "server" not in text and "connection" not in text, text


@pytest.mark.parametrize("exists, file_w, folder_w, ro_mount, words", [
    (True, False, True, False, "s.db is not writable"),
    (True, False, False, False, "s.db is not writable"),
    (True, True, False, False, "folder /data/x of SQLite database /data/x/s.db is not writable"),
    (False, True, False, False, "must create the database there"),
    (True, True, True, True, "read-only file system"),
    (False, False, False, True, "read-only file system"),
])
def test_write_problem_names_the_file_or_folder_and_the_fault(exists, file_w, folder_w, ro_mount, words):
    problem = write_problem(Path("/data/x/s.db"), exists=exists, file_writable=file_w, folder_writable=folder_w,
                            read_only_mount=ro_mount)
    assert problem is not None and words in problem and "/data/x" in problem
    _one_line_without_a_server(problem)


def test_a_writable_database_has_no_write_problem():
    assert write_problem(Path("s.db"), exists=True, file_writable=True, folder_writable=True,
                         read_only_mount=False) is None
    assert write_problem(Path("s.db"), exists=False, file_writable=False, folder_writable=True,
                         read_only_mount=False) is None  # a new file: only the folder matters


def test_folder_problem_names_the_part_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    folder = tmp_path / "afile" / "deeper"
    with pytest.raises(OSError) as caught:
        folder.mkdir(parents=True, exist_ok=True)
    line = folder_problem(folder, caught.value)
    assert f"{tmp_path / 'afile'} is a file, not a folder" in line
    assert "read-only" in folder_problem(folder, OSError(errno.EROFS, "Read-only file system"))


def _readonly_error(tmp_path) -> sqlite3.Error:
    """A real 'attempt to write a readonly database' (SQLite enforces mode=ro for root too)."""
    db = tmp_path / "r.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.execute("INSERT INTO t VALUES (1)")
    except sqlite3.Error as err:
        return err
    finally:
        con.close()
    raise AssertionError("a read-only connection wrote")


def _full_error(tmp_path) -> sqlite3.Error:
    """A real 'database or disk is full': the database may not grow past its pages."""
    con = sqlite3.connect(tmp_path / "f.db")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
    try:
        for _ in range(1000):
            con.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))
        con.commit()
    except sqlite3.Error as err:
        return err
    finally:
        con.close()
    raise AssertionError("the database grew past max_page_count")


def _as_optuna_raises_it(err: sqlite3.Error) -> Exception:
    """``err`` wrapped as SQLAlchemy and then Optuna's storage wrap it."""
    try:
        try:
            raise sqlalchemy.exc.OperationalError("INSERT ...", {}, err) from err
        except sqlalchemy.exc.OperationalError as wrapped:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from wrapped
    except optuna.exceptions.StorageInternalError as outer:
        return outer


@pytest.mark.parametrize("make, words", [(_readonly_error, "is not writable"), (_full_error, "disk holding it is full")])
def test_sqlite_faults_are_named_and_never_retried_as_a_lost_server(tmp_path, make, words):
    err = _as_optuna_raises_it(make(tmp_path))
    assert words in sqlite_fault(err)
    assert not is_connection_lost(err)  # no reconnect loop for a local file
    line = local_fault_message(err, f"sqlite:///{tmp_path}/s.db")
    assert line.startswith(f"SQLite database {tmp_path}/s.db {words}") or words in line
    assert f"{tmp_path}/s.db" in line
    _one_line_without_a_server(line)


def test_a_locked_database_is_not_a_local_fault():
    err = _as_optuna_raises_it(sqlite3.OperationalError("database is locked"))
    assert sqlite_fault(err) is None and local_fault_message(err, "sqlite:///s.db") is None


@pytest.mark.parametrize("error, wal, expected", [
    (None, 0, "ro"), (None, 100, "ro"),
    ("unable to open database file", 0, "immutable"),
    ("attempt to write a readonly database", 0, "immutable"),
])
def test_read_only_choice(error, wal, expected):
    assert read_only_choice(Path("/ro/s.db"), error, wal) == expected


def test_read_only_choice_refuses_to_skip_a_write_ahead_log_that_holds_changes():
    with pytest.raises(UserError, match=r"s\.db-wal holds changes"):
        read_only_choice(Path("/ro/s.db"), "unable to open database file", 4096)
    with pytest.raises(UserError, match="file is not a database"):
        read_only_choice(Path("/ro/s.db"), "file is not a database", 0)


def _stored_study(path: Path, journal_mode: str) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    storage.engine.dispose()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA journal_mode={journal_mode}")
    con.close()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_reading_opens_mode_ro_and_changes_nothing(tmp_path, journal_mode):
    db = tmp_path / "s.db"
    _stored_study(db, journal_mode)
    before = database_digest(db), sorted(p.name for p in tmp_path.iterdir())
    assert read_only_uri(db).endswith("?mode=ro")
    store = open_storage(f"sqlite:///{db}", read_only=True)
    trials = store.get_all_trials(store.get_study_id_from_name("s"))
    with pytest.raises(optuna.exceptions.StorageInternalError) as refused:  # the connection itself cannot write
        store.create_new_study([optuna.study.StudyDirection.MINIMIZE], "other")
    assert "is not writable" in sqlite_fault(refused.value)
    release_storage(store)
    assert len(trials) == 3
    assert (database_digest(db), sorted(p.name for p in tmp_path.iterdir())) == before


def test_reading_falls_back_to_immutable_where_mode_ro_cannot_open(tmp_path, monkeypatch):
    """As in a read-only folder, where SQLite cannot create the -shm of a WAL file (simulated: root
    can create it anywhere): the study is read immutable=1, whole."""
    from sensitivity.storage import sqlite as sqlite_module

    db = tmp_path / "s.db"
    _stored_study(db, "wal")
    probe = sqlite_module._probe
    monkeypatch.setattr(sqlite_module, "_probe",
                        lambda uri: "unable to open database file" if "immutable" not in uri else probe(uri))
    assert read_only_uri(db).endswith("?mode=ro&immutable=1")
    store = open_storage(f"sqlite:///{db}", read_only=True)
    assert len(store.get_all_trials(store.get_study_id_from_name("s"))) == 3
    release_storage(store)


def test_a_sweep_that_fills_the_disk_stops_at_once_naming_it_and_loses_nothing(tmp_path):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    first = CliRunner().invoke(app, ["sweep", *SMALL, "--lr", "1e-2", "--storage", url, "--study", "s"])
    assert first.exit_code == 0, (first.stdout, first.stderr, first.exception)

    def full(dbapi, _record):  # every new connection: the database may not grow (SQLITE_FULL)
        dbapi.execute(f"PRAGMA max_page_count = {dbapi.execute('PRAGMA page_count').fetchone()[0]}")

    event.listen(Engine, "connect", full)
    try:
        done = CliRunner().invoke(app, ["sweep", *SMALL, "--lr", "1e-3,3e-3,1e-1,3e-1,1,3", "--seeds", "3",
                                        "--storage", url, "--study", "s"])
    finally:
        event.remove(Engine, "connect", full)
    assert done.exit_code == 2, (done.stdout, done.stderr, done.exception)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(db) in lines[0] and "disk holding it is full" in lines[0], lines
    assert "server" not in lines[0] and "connection" not in lines[0]
    con = sqlite3.connect(db)
    try:
        complete = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    finally:
        con.close()
    assert complete >= 1  # the first sweep's trial (and any finished before the disk filled) kept
    store = open_storage(url, read_only=True)
    assert store.get_study_id_from_name("s") is not None
    release_storage(store)


def test_the_report_names_a_local_fault_met_while_reading(tmp_path, monkeypatch):
    from sensitivity.report import load_trials

    db = tmp_path / "s.db"
    _stored_study(db, "wal")
    store = open_storage(f"sqlite:///{db}", read_only=True)

    def failing(_name):
        raise _as_optuna_raises_it(sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(store, "get_study_id_from_name", failing)
    with pytest.raises(UserError, match=r"disk I/O error") as refused:
        load_trials(store, "s")
    _one_line_without_a_server(str(refused.value))
    release_storage(store)
