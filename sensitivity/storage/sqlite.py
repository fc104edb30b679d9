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


def sqlite_tables(path: Path | str) -> set[str]:
    """Names of the tables in an SQLite file, read without writing anything (read-only URI).

    Raises:
        UserError: the file cannot be read as an SQLite database.
    """
    try:
        from urllib.parse import quote

        uri = f"file:{quote(os.path.abspath(path))}?mode=ro"  # SQLite decodes %XX in URIs: escape the path
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as err:
        raise UserError(f"cannot read SQLite database {path} ({err}); give another --storage path") from None


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
