"""SQLite files shared by several processes: the guard that refuses a file that is not an Optuna
database, write-ahead logging, and transactions that take the write lock at once (``BEGIN IMMEDIATE``).

Python's ``sqlite3`` driver opens no transaction for a ``SELECT``, so Optuna's ``SELECT ... FOR
UPDATE`` then ``UPDATE`` that moves a queued trial from WAITING to RUNNING is not atomic on SQLite:
with four processes popping one queue, about one trial in ten was taken twice (optuna/optuna#4002,
and Optuna's FAQ "sqlite_concurrency"). With ``BEGIN IMMEDIATE`` each transaction holds the write
lock from its first statement, the pop is atomic, and waiting writers queue on the busy timeout
instead of failing with "database is locked". Readers are never blocked by the WAL.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sensitivity.errors import UserError
from sensitivity.storage._optuna import optuna_tables

SQLITE_BUSY_TIMEOUT_S = 300
"""How long an SQLite writer waits for the lock before "database is locked" (seconds)."""

_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists but is not an Optuna SQLite database (nothing is written).

    Raises:
        UserError: the path is a folder, unreadable, not an SQLite file, or an SQLite database
            of another program (tables of its own, and not Optuna's ``studies`` and ``trials``).
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
    tables = sqlite_tables(path)  # another program's database must not get Optuna's tables
    # Only Optuna's tables, but not all of them yet: another process is creating them right now.
    if tables and not {"studies", "trials"} <= tables and not tables <= optuna_tables():
        raise UserError(
            f"{path} is an SQLite database of another program (no Optuna tables); give another --storage path "
            f"(the file was left untouched)"
        )


def _probe(uri: str) -> str | None:
    """None when the database at the sqlite3 URI ``uri`` can be read, else SQLite's error text."""
    try:
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a WAL file fails here, not at connect
        finally:
            con.close()
    except sqlite3.Error as err:
        return str(err)
    return None


def read_only_choice(path: Path, ro_error: str | None, wal_bytes: int) -> str:
    """How to open ``path`` for reading only, decided from what opening it ``mode=ro`` said.

    Args:
        ro_error: SQLite's error opening the file with ``mode=ro`` (None: it opened).
        wal_bytes: size of the write-ahead log ``<path>-wal`` (0 when there is none).

    Returns:
        ``"ro"``, or ``"immutable"`` when a WAL-mode file could not be opened ("unable to open
        database file", or "attempt to write a readonly database" as SQLite 3.4x says it) because SQLite cannot
        create its shared-memory file ``<path>-shm`` (a read-only folder or mount) and no write-ahead
        log holds changes: opened ``immutable=1``, SQLite reads the file as it is, without locks
        (sqlite.org/uri.html, sqlite.org/wal.html "Read-Only Databases").

    Raises:
        UserError: the file cannot be read; or a write-ahead log holds changes that only a
            connection able to create ``-shm`` may read (an immutable reader would miss them).
    """
    if ro_error is None:
        return "ro"
    if not any(k in ro_error.lower() for k in ("unable to open", "readonly database")):  # SQLITE_CANTOPEN, SQLITE_READONLY_CANTINIT
        raise UserError(f"cannot read SQLite database {path} ({ro_error}); give another --storage path")
    if wal_bytes > 0:
        raise UserError(
            f"cannot read SQLite database {path}: its write-ahead log {path.name}-wal holds changes not yet in the "
            f"database, and SQLite cannot create {path.name}-shm beside it (the folder {path.parent} is read-only); "
            f"make the folder writable for one run, or copy the database with its -wal file to a writable folder")
    return "immutable"


def read_only_uri(path: Path | str) -> str:
    """An sqlite3 URI that opens ``path`` for reading only (``file:...?mode=ro``), with
    ``immutable=1`` where :func:`read_only_choice` says so. Nothing is created or written; a WAL-mode
    database in a read-only folder is readable this way (nothing else can be writing it there).

    Raises:
        UserError: the file cannot be read (see :func:`read_only_choice`).
    """
    from urllib.parse import quote

    path = Path(path)
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"  # SQLite decodes %XX in URIs: escape the path
    error = _probe(uri)
    wal = Path(f"{path}-wal")
    choice = read_only_choice(path, error, wal.stat().st_size if error is not None and wal.exists() else 0)
    if choice == "ro":
        return uri
    uri += "&immutable=1"
    error = _probe(uri)
    if error is not None:
        raise UserError(f"cannot read SQLite database {path} ({error}); give another --storage path")
    return uri


def sqlite_tables(path: Path | str) -> set[str]:
    """Names of the tables in an SQLite file, read without writing anything (:func:`read_only_uri`).

    Raises:
        UserError: the file cannot be read as an SQLite database.
    """
    uri = read_only_uri(path)
    try:
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as err:
        raise UserError(f"cannot read SQLite database {path} ({err}); give another --storage path") from None


def read_only_engine_kwargs(path: Path) -> dict[str, Any]:
    """SQLAlchemy ``create_engine`` arguments whose connections read ``path`` only, through
    :func:`read_only_uri` (SQLAlchemy's URL would decode ``%XX`` in the path; a ``creator`` takes
    the URI as it is)."""
    uri = read_only_uri(path)
    return {"creator": lambda: sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S,
                                               check_same_thread=False)}


def enable_wal(path: Path) -> None:
    """Switch an SQLite file to WAL journaling (persistent in the file; readers never block writers).

    Two processes opening a new file at the same moment may both try the switch. SQLite then
    answers one of them "database is locked" at once, without waiting on the busy timeout (both
    hold a read lock and want the write lock: waiting would deadlock, sqlite.org/c3ref/busy_handler.html);
    that one tries again until the busy timeout, and usually finds the file switched already.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.01
    while True:
        con = sqlite3.connect(str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        finally:
            con.close()
        time.sleep(pause)
        pause = min(2 * pause, 0.5)


SQLITE_DEFERRED = "adamrag_sens_deferred"
"""Execution option of a connection whose SQLite transactions only read: plain ``BEGIN``."""


def begin_immediate(engine: Any) -> None:
    """Make every transaction on ``engine`` (SQLite) start with ``BEGIN IMMEDIATE`` (SQLAlchemy's
    documented recipe for pysqlite): the driver's own implicit transactions are turned off and each
    transaction takes the write lock at once, so a read-then-update is atomic."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN from the sqlite3 module
        # WAL + synchronous=NORMAL: no fsync per commit; a killed process loses nothing, a power
        # cut at most the last commits, and the file never corrupts (sqlite.org/wal.html).
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # reads that asked for it (the ledger's look-ups) take no write lock
        deferred = connection.get_execution_options().get(SQLITE_DEFERRED)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are dropped
