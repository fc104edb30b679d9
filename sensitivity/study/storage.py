"""Opening Optuna storage safely: SQLite (default), any RDB URL, or a journal file.

Checks happen before anything is written: a path that is not an SQLite database, a URL Optuna
cannot parse, or a server that does not answer gives a :class:`UserError` and leaves the file as
it was. SQLite databases are switched to write-ahead logging with a long busy timeout, so that
several local worker processes share one file without "database is locked" failures.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna

from sensitivity.errors import UserError

HEARTBEAT_INTERVAL_S = 20
"""How often a running trial records that its worker is alive (seconds)."""
GRACE_PERIOD_S = 60
"""A RUNNING trial whose heartbeat is older than this is failed and re-queued (seconds)."""
SQLITE_BUSY_TIMEOUT_S = 120

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    rest = url[len("sqlite:///") :]
    if rest in ("", ":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def normalize_storage_url(storage: str) -> str:
    """A bare file path becomes a URL: ``x.db``/``x.sqlite`` -> ``sqlite:///x.db``; URLs pass through."""
    if "://" in storage:
        return storage
    path = Path(storage)
    if path.suffix in (".log", ".jsonl", ".journal"):
        return storage
    return f"sqlite:///{storage}"


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists but is not an SQLite database (nothing is written).

    Raises:
        UserError: the path is a folder, unreadable, or not an SQLite file.
    """
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a database file, e.g. --storage sqlite:///{path}/studies.db")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as err:
        raise UserError(f"cannot read storage file {path} ({err.strerror}); check its permissions") from None
    if head != _SQLITE_MAGIC:
        raise UserError(f"{path} is not an SQLite database; give another --storage path (the file was left untouched)")


def _enable_wal(path: Path) -> None:
    """Switch an SQLite file to WAL journaling (persistent in the file; readers never block writers)."""
    con = sqlite3.connect(str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def open_storage(storage: str, *, create: bool = True, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open ``storage`` as an Optuna storage object.

    Args:
        storage: ``sqlite:///path.db`` (relative paths from the working directory), any
            SQLAlchemy URL Optuna supports (``postgresql://user@host/db``, ``mysql+pymysql://...``),
            a path ending in ``.log``/``.jsonl``/``.journal`` for Optuna's JournalStorage, or a
            bare path (treated as SQLite).
        create: when False, a SQLite or journal file that does not exist is an error instead
            of being created (for commands that only read).
        heartbeat: record heartbeats for running trials, so that trials of a killed worker are
            detected (RDB storages only; journal storage supports them too).

    Raises:
        UserError: malformed URL, a file that is not a database, a missing file with
            ``create=False``, or a server that cannot be reached. Nothing has been written then.
    """
    url = normalize_storage_url(storage)
    hb = {"heartbeat_interval": HEARTBEAT_INTERVAL_S, "grace_period": GRACE_PERIOD_S} if heartbeat else {}
    if "://" not in url:  # journal file
        path = Path(url)
        if not create and not path.exists():
            raise UserError(f"journal file {path} does not exist; check --storage")
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as err:  # noqa: BLE001 - any parse error of a foreign file
            raise UserError(f"cannot open journal file {path} ({err}); give another --storage path") from None
    sqlite_path = _sqlite_path(url)
    engine_kwargs = {}
    if sqlite_path is not None:
        check_sqlite_file(sqlite_path)
        if not sqlite_path.exists():
            if not create:
                raise UserError(f"no database at {sqlite_path}; run `adamrag-sens sweep` first or check --storage")
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        _enable_wal(sqlite_path)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif url.startswith("sqlite://"):
        pass
    elif url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"):
        raise UserError(
            f"storage URL {storage!r} has an unknown scheme; use sqlite:///path.db, postgresql://user@host/db, "
            f"or a journal file path ending in .log"
        )
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's terms since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy/driver errors have many types
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot open storage {storage!r} ({reason}); check the URL, the server and its credentials") from None
