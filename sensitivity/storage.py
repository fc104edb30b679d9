"""Optuna storage, the one room that opens it: SQLite (default), any RDB URL, or a journal file.

Both sides call :func:`open_storage`: the study side to create and run studies, the report side
with ``read_only=True`` to read them. Every use of Optuna's private API (a study's storage object,
trial ids, the ``fixed_params`` of a queued trial, the heartbeat interface and its stale-trial
query, and the tables of its RDB schema) is behind a named helper at the end of this module, each
checked against the Optuna version its comment names, so an Optuna upgrade is checked in one place.
The last of them is the trial ledger (:func:`open_ledger`): a worker's per-trial reads and writes,
each one indexed look-up or one transaction, so a trial's bookkeeping does not grow with the study.

Checks happen before anything is written: a path that is not an Optuna database, a URL Optuna
cannot parse, or a server that does not answer gives a :class:`UserError` and leaves the file as
it was.

Secrets: a storage URL may carry a password. :func:`mask_storage` is how every part of the
package shows a storage (the password as ``***``), :func:`storage_without_password` how it writes
one into a command to copy, and :func:`scrub_secrets` masks the password in foreign text (a
driver's error message, an exception recorded with a trial). Nothing here stores the URL.

Several processes share one storage:

* **SQLite**: write-ahead logging, a long busy timeout, and every transaction opened with
  ``BEGIN IMMEDIATE``. Python's ``sqlite3`` driver opens no transaction for a ``SELECT``, so
  Optuna's ``SELECT ... FOR UPDATE`` then ``UPDATE`` that moves a queued trial from WAITING to
  RUNNING is not atomic on SQLite: with four processes popping one queue, about one trial in ten
  was taken twice (optuna/optuna#4002, and Optuna's FAQ "sqlite_concurrency"). With
  ``BEGIN IMMEDIATE`` each transaction holds the write lock from its first statement, the pop is
  atomic, and waiting writers queue on the busy timeout instead of failing with "database is
  locked". Readers are never blocked by the WAL.
* **PostgreSQL / MySQL**: ``SELECT ... FOR UPDATE`` is honoured; a connect timeout makes an
  unreachable server fail in seconds.
* **Journal file** (``*.log``): Optuna's JournalStorage, whose file lock orders all writes. Optuna
  has no heartbeat for it; :class:`JournalHeartbeatStorage` adds one (a trial system attribute
  holding the worker's wall-clock time), so killed workers are detected there too.

Heartbeats: a running trial records that its worker is alive every ``ADAMRAG_SENS_HEARTBEAT_S``
seconds (default 20); a RUNNING trial whose last heartbeat is older than ``ADAMRAG_SENS_GRACE_S``
(default 3 x the interval) is failed and its point queued again.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import sqlite3
import time
import warnings
import weakref
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # private in Optuna 5.0.0: the interface fail_stale_trials uses
from optuna.trial import TrialState

from sensitivity.errors import UserError
from sensitivity.records import POINT_KEY

HEARTBEAT_INTERVAL_S = 20
"""Default: how often a running trial records that its worker is alive (seconds)."""
GRACE_PERIOD_FACTOR = 3
"""Default grace period, in heartbeat intervals: a RUNNING trial whose heartbeat is older is failed."""
SQLITE_BUSY_TIMEOUT_S = 300
"""How long an SQLite writer waits for the lock before "database is locked" (seconds)."""
CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL/MySQL connection may take before the server counts as unreachable."""
HEARTBEAT_ENV = "ADAMRAG_SENS_HEARTBEAT_S"
GRACE_ENV = "ADAMRAG_SENS_GRACE_S"

_SQLITE_MAGIC = b"SQLite format 3\x00"
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_DRIVER_HINT = {
    "postgresql": "pip install psycopg2-binary (or: pip install 'adamrag-sens[postgres]')",
    "postgres": "pip install psycopg2-binary (or: pip install 'adamrag-sens[postgres]')",
    "mysql": "pip install pymysql and use mysql+pymysql://...",
    "mariadb": "pip install pymysql and use mysql+pymysql://...",
}


def heartbeat_settings() -> tuple[int, float]:
    """(heartbeat interval, grace period) in seconds, from the environment or the defaults.

    ``ADAMRAG_SENS_HEARTBEAT_S`` sets the interval (a whole number >= 1, as Optuna requires);
    ``ADAMRAG_SENS_GRACE_S`` the grace period (default ``3 x interval``; must exceed the interval).

    Raises:
        UserError: a value that is not a number in range.
    """
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        interval = int(raw) if raw else HEARTBEAT_INTERVAL_S
    except ValueError:
        raise UserError(f"{HEARTBEAT_ENV}={raw!r} is not a whole number of seconds; unset it or give e.g. 20") from None
    if interval < 1:
        raise UserError(f"{HEARTBEAT_ENV}={raw} must be >= 1 (seconds)")
    raw_grace = os.environ.get(GRACE_ENV, "").strip()
    try:
        grace = float(raw_grace) if raw_grace else float(GRACE_PERIOD_FACTOR * interval)
    except ValueError:
        raise UserError(f"{GRACE_ENV}={raw_grace!r} is not a number of seconds; unset it or give e.g. 60") from None
    if not grace > interval:
        raise UserError(f"{GRACE_ENV}={raw_grace} must exceed the heartbeat interval ({interval} s)")
    return interval, grace


def sqlite_path(url: str) -> Path | None:
    """The file an ``sqlite://`` URL opens, derived exactly as SQLAlchemy derives it
    (``sqlalchemy.engine.make_url(url).database``: percent-escapes decoded, the query dropped), so
    every check acts on the file that will be opened. None for an in-memory database or another scheme.

    Example: ``sqlite_path("sqlite:////tmp/a%20b/s.db") == Path("/tmp/a b/s.db")``.

    Raises:
        UserError: a URL SQLAlchemy cannot parse, or an SQLite URI filename (``?uri=true``).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise UserError(f"storage URL {url!r} is malformed ({err}); use sqlite:///path.db") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        raise UserError(f"storage URL {url!r} is an SQLite URI filename (uri=true), which is not supported; "
                        f"give sqlite:///path.db")
    return Path(parsed.database)


def is_journal_path(storage: str) -> bool:
    """True for a storage given as a journal file path (``*.log``, ``*.jsonl``, ``*.journal``)."""
    return "://" not in storage and Path(storage).suffix in _JOURNAL_SUFFIXES


def normalize_storage_url(storage: str) -> str:
    """A bare file path becomes a URL: ``x.db``/``x.sqlite`` -> ``sqlite:///x.db``; URLs and journal paths pass through.

    Raises:
        UserError: text that starts like a URL scheme but is not one (``sqlite:/x.db``).
    """
    if "://" in storage or is_journal_path(storage):
        return storage
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", storage):  # "sqlite:/x.db", "postgresql:host": not a path
        raise UserError(
            f"storage URL {mask_storage(storage)!r} is malformed; use sqlite:///path.db, postgresql://user@host/db, "
            f"or a journal file path ending in .log"
        )
    from urllib.parse import quote

    return f"sqlite:///{quote(storage)}"  # SQLAlchemy decodes %XX: a folder named "a%20b" must stay itself


# ---- secrets: how a storage URL is shown -------------------------------------------------------

MASK = "***"
"""What a password is shown as (SQLAlchemy's own ``render_as_string(hide_password=True)`` mask)."""

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword")
"""Query-string keys whose value is a password (libpq and psycopg2: ``password``, ``sslpassword``;
PyMySQL and mysqlclient: ``passwd``; ODBC: ``pwd``), compared case-insensitively."""
_SECRET_QUERY_RE = re.compile(r"([?&](?:%s)=)([^&#]*)" % "|".join(_SECRET_QUERY_KEYS), re.IGNORECASE)
_KEY_VALUE_RE = re.compile(r"""(\b(?:%s)\s*=\s*)('[^']*'|"[^"]*"|[^\s&,;)]+)""" % "|".join(_SECRET_QUERY_KEYS), re.IGNORECASE)
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_URLISH_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def mask_storage(storage: str | os.PathLike) -> str:
    """``storage`` as it may be shown anywhere (terminal, progress, errors, reports, logs): its
    password replaced by ``***``. Every place that shows a storage URL calls this.

    The URL is parsed and rendered by SQLAlchemy (``make_url(url).render_as_string(hide_password=True)``,
    the library's own mask), which also handles percent-encoded passwords; a password given in the
    query string (``?password=``, ``?passwd=``, ``?pwd=``, ``?sslpassword=``) is masked too, and so is
    an unencoded ``@`` in a password (which SQLAlchemy reads as part of the host). Storage without a
    secret (SQLite URLs, journal and database file paths, ``postgresql://user@host/db``) is returned
    unchanged, character for character. Text SQLAlchemy cannot parse is masked from the ``:`` after
    the user name to the last ``@``.

    Example: ``mask_storage("postgresql://me:s3cret@db/sens") == "postgresql://me:***@db/sens"``.
    """
    return _redact(os.fspath(storage), keep=True)


def storage_without_password(storage: str | os.PathLike) -> str:
    """``storage`` for a command to copy: the same database with the password left out (not masked),
    so the command works where the password comes from elsewhere (``PGPASSWORD``, ``~/.pgpass``).
    Storage without a secret is returned unchanged; text SQLAlchemy cannot parse is masked as by
    :func:`mask_storage`.

    Example: ``storage_without_password("postgresql://me:s3cret@db/sens") == "postgresql://me@db/sens"``.
    """
    return _redact(os.fspath(storage), keep=False)


def has_password(storage: str | os.PathLike) -> bool:
    """True when ``storage`` carries a password (in the user part or in the query string)."""
    text = os.fspath(storage)
    return _redact(text, keep=True) != text


def scrub_secrets(text: str, storage: str | os.PathLike | None = None) -> str:
    """``text`` (a driver's or SQLAlchemy's error message, an exception stored with a trial) with
    every secret masked: the password of ``storage`` (as written and decoded), the password of any
    URL in the text, and any ``password=...`` pair (libpq connection strings).
    """
    for secret in sorted(_secrets_of(os.fspath(storage)) if storage is not None else (), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_IN_TEXT_RE.sub(lambda m: _mask_unparsed(m.group(0)), text)  # masked in place, not re-rendered
    return _KEY_VALUE_RE.sub(lambda m: m.group(1) + MASK, text)


def _redact(text: str, *, keep: bool) -> str:
    """The core of :func:`mask_storage` (``keep=True``: password shown as ``***``) and
    :func:`storage_without_password` (``keep=False``: password left out)."""
    if "://" not in text:
        if is_journal_path(text) or not _URLISH_RE.match(text):
            return text  # a file path: nothing secret in it
        return _mask_unparsed(text)
    from sqlalchemy.engine import URL, make_url

    try:
        url = make_url(text)
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError (a bad port): show it masked as text
        return _mask_unparsed(text)
    secret_keys = [k for k in url.query if k.lower() in _SECRET_QUERY_KEYS]
    if url.host and "@" in url.host:  # "user:p@ss@host": SQLAlchemy's password stops at the first @
        url = url.set(host=url.host.rsplit("@", 1)[1])
    elif url.password is None and not secret_keys:
        return text
    if not keep:  # URL.set ignores None, so the URL is built again without its password
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        return url.difference_update_query(secret_keys).render_as_string(hide_password=False)
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + MASK, url.render_as_string(hide_password=True))


def _password_span(text: str) -> tuple[int, int] | None:
    """Where the password of URL-like ``text`` is written, read as text: (start, end) from after
    the ``:`` that follows the user name to the last ``@`` (so an unencoded ``@`` in it is
    included); None without a user part (``sqlite:///a:b@c.db``) or without a ``:`` in it."""
    start = text.find("://")
    start = start + 3 if start >= 0 else text.find(":") + 1
    if text.startswith("/", start):
        return None
    at = text.rfind("@", start)
    colon = text.find(":", start, at) if at >= 0 else -1
    return (colon + 1, at) if colon >= 0 else None


def _mask_unparsed(text: str) -> str:
    """Mask URL-like text without parsing it: the span of :func:`_password_span` and the values
    of password keys in a query string."""
    span = _password_span(text)
    if span is not None:
        text = f"{text[:span[0]]}{MASK}{text[span[1]:]}"
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + MASK, text)


def _secrets_of(storage: str) -> set[str]:
    """The secret strings ``storage`` holds: its password as written (percent-encoded or not) and
    decoded, and the values of password keys in its query string. Empty for storage without one."""
    if "://" not in storage and (is_journal_path(storage) or not _URLISH_RE.match(storage)):
        return set()
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:  # noqa: BLE001 - masked as text
        url = None
    found: set[str] = set()
    span = _password_span(storage) if url is None or url.password is not None else None
    if span is not None:
        found.add(storage[span[0] : span[1]])  # as written (percent-encoded, or with an unencoded @)
    if url is not None and url.password:
        found.add(str(url.password))
    found.update(match.group(2) for match in _SECRET_QUERY_RE.finditer(storage))
    from urllib.parse import unquote

    found |= {unquote(s) for s in found}
    return {s for s in found if s}


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
    if tables and not {"studies", "trials"} <= tables and not tables <= _optuna_tables():
        raise UserError(
            f"{path} is an SQLite database of another program (no Optuna tables); give another --storage path "
            f"(the file was left untouched)"
        )


def _optuna_tables() -> set[str]:
    """Names of the tables of Optuna's RDB storage (its private models; checked with Optuna 5.0)."""
    from optuna.storages._rdb.models import BaseModel

    return set(BaseModel.metadata.tables) | {"alembic_version"}


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


def _check_journal_file(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a journal file, e.g. --storage {path}/studies.log")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 20)
        record = json.loads(first)
    except OSError as err:
        raise UserError(f"cannot read journal file {path} ({err.strerror}); check its permissions") from None
    except ValueError:
        record = None
    if not (isinstance(record, dict) and "op_code" in record):
        raise UserError(f"{path} is not an Optuna journal file; give another --storage path (the file was left untouched)")


def journal_damage(path: Path) -> tuple[int, int] | None:
    """Where an Optuna journal file stops being whole: ``(line number, byte offset)`` of its first
    record that is cut off (no line end) or not an Optuna record, or None when every line is one.

    A process killed while appending leaves exactly such a torn tail; Optuna skips a torn last line
    but fails on one followed by anything, so a record appended after it corrupts the journal.
    The ``byte offset`` is the size of the whole records before the damage.
    """
    offset = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            whole = line.endswith(b"\n")
            if whole:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                whole = isinstance(record, dict) and "op_code" in record
            if not whole:
                return number, offset
            offset += len(line)
    return None


def _journal_lock(path: Path) -> Any:
    """The lock Optuna's JournalFileBackend takes around every append (its default, Optuna 5.0.0)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    return JournalFileSymlinkLock(str(path))


def _check_journal_whole(path: Path) -> None:
    """Refuse to write to a journal with a damaged record: anything appended would follow it.

    A tail that looks torn may be another worker's append in progress, so the check is repeated
    under the journal's own lock, where no append is under way.

    Raises:
        UserError: the journal is damaged; the one line says where and how to cut it back.
    """
    if not path.exists() or journal_damage(path) is None:
        return
    lock = _journal_lock(path)
    lock.acquire()
    try:
        damage = journal_damage(path)
    finally:
        lock.release()
    if damage is not None:
        line, size = damage
        raise UserError(
            f"journal file {path} is damaged at line {line} (a record cut off by a crash, or not an Optuna record); "
            f"appending after it would corrupt the journal for good: back the file up, keep its first {size} bytes "
            f"(truncate -s {size} {path}) and run again (the file was left untouched)"
        )


class _TornTailGuardedBackend:
    """Mixin for Optuna's JournalFileBackend: before every append, under the journal's lock, check
    that the file ends with a whole line, so a record is never appended after one torn by a crash
    of another process (which would corrupt the journal for good)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:  # Optuna 5.0.0: BaseJournalBackend.append_logs
        lock = self._guard_lock
        lock.acquire()
        try:
            with open(self._guard_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        raise UserError(
                            f"journal file {self._guard_path} ends in a torn record (a write cut off by a crash); "
                            f"nothing more was written to it: run the same command again, it says how to repair it"
                        )
            what = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._guard_path, "ab") as fh:
                fh.write(what.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            lock.release()


def _guarded_journal_backend(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend

    class GuardedJournalFileBackend(_TornTailGuardedBackend, JournalFileBackend):
        pass

    lock = _journal_lock(path)
    backend = GuardedJournalFileBackend(str(path), lock_obj=lock)
    backend._guard_lock, backend._guard_path = lock, str(path)
    return backend


NOTICES = "sensitivity.notices"
"""Logger of what a user should know that is not an error (a journal read only up to a torn record);
the CLI prints each as one ``warning:`` line, a library caller sees Python's last-resort handler."""


def _journal_prefix_backend(path: Path, line: int) -> Any:
    """A read-only journal backend holding the whole records of ``path`` before line ``line``."""
    from optuna.storages.journal import BaseJournalBackend

    records: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for number, text in enumerate(fh, start=1):
            if number >= line:
                break
            records.append(json.loads(text))

    class PrefixBackend(BaseJournalBackend):
        def read_logs(self, log_number_from: int):  # noqa: ANN202
            yield from records[log_number_from:]

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise RuntimeError("a journal read up to a damaged record is read-only")

    return PrefixBackend()


def _enable_wal(path: Path) -> None:
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


_SQLITE_DEFERRED = "adamrag_sens_deferred"
"""Execution option of a connection whose SQLite transactions only read: plain ``BEGIN``."""


def _begin_immediate(engine: Any) -> None:
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
        deferred = connection.get_execution_options().get(_SQLITE_DEFERRED)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are dropped


def with_installed_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) without a driver: name the one installed, psycopg2
    (this package's ``postgres`` extra) or psycopg 3. SQLAlchemy 2.1 defaults to psycopg 3 and
    older versions to psycopg2, so a bare URL fails on one or the other; other URLs pass through.

    Example: ``with_installed_driver("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"``
    where psycopg2 is installed.
    """
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


RECONNECT_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Pauses between the attempts of a storage call whose database connection was lost (about 30 s in all)."""


def is_connection_lost(err: BaseException) -> bool:
    """True when ``err`` (or an exception it was raised from) says the database connection was lost
    or could not be made: SQLAlchemy's ``OperationalError`` (server gone, restarting, refusing) or a
    ``DBAPIError`` after which SQLAlchemy invalidated the connection (``pg_terminate_backend``), or
    a session left in the transaction such an error broke (``PendingRollbackError``)."""
    import sqlalchemy.exc

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.PendingRollbackError)):
            return True
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return True
        err = err.__cause__ or err.__context__
    return False


def _reconnecting(method: Any) -> Any:
    import functools

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        for pause in (*RECONNECT_PAUSES_S, None):
            try:
                return method(self, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - only lost connections are retried
                if pause is None or not is_connection_lost(err):
                    raise
                try:  # this thread's session is stuck in its failed transaction ("Can't reconnect until
                    self.remove_session()  # invalid transaction is rolled back"): start a new one
                except Exception:  # noqa: BLE001 - its connection is gone anyway
                    pass
                time.sleep(pause)
        raise AssertionError("unreachable")

    return call


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls survive a lost server connection.

    ``pool_pre_ping`` replaces connections that died while idle in the pool, but a connection
    killed while checked out (``pg_terminate_backend``, a server restart, a network cut) fails the
    call under way. Each storage call is therefore retried, on a new connection, while the error
    says the connection was lost (:func:`is_connection_lost`), for about 30 s
    (:data:`RECONNECT_PAUSES_S`); then the error propagates. A retried write whose first attempt
    did commit is harmless here: a WAITING -> RUNNING update then reports the trial taken (its
    heartbeat makes it stale and it runs again), a second queued copy of a point is pruned as a
    duplicate, and ``tell`` is called with ``skip_if_finished``.
    """


for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "record_heartbeat",
    # private, Optuna 5.0.0: what its _CachedStorage (the wrapper every Study puts around an
    # RDBStorage) calls instead of the public methods above, and the stale-trial query
    "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_stale_trial_ids",
):
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(ReconnectingRDBStorage, _name, _reconnecting(getattr(optuna.storages.RDBStorage, _name)))


def _open_rdb(url: str, engine_kwargs: dict[str, Any], options: dict[str, Any], retry: bool) -> optuna.storages.RDBStorage:
    """RDBStorage(url) (a :class:`ReconnectingRDBStorage` for database servers); on SQLite, retried
    a few times when another process is creating the tables of a new file at the same moment
    ("table ... already exists", "database is locked", "UNIQUE constraint failed: alembic_version"
    when both write the schema version)."""
    cls = optuna.storages.RDBStorage if url.startswith("sqlite") else ReconnectingRDBStorage
    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return cls(url, engine_kwargs=engine_kwargs, **options)
        except Exception as err:  # noqa: BLE001
            text = str(err.__cause__ or err)
            if not retry or attempt == 3 or not ("already exists" in text or "locked" in text or "UNIQUE constraint" in text):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _schema_mismatch(url: str, engine_kwargs: dict[str, Any], storage: str) -> str | None:
    """When the database's Optuna table schema is not the one this Optuna writes, what to do, as one
    line naming the stored schema version; None when the schema is not the problem (or unreadable).

    Reads the stored and known versions with ``RDBStorage.get_current_version``/``get_head_version``/
    ``get_all_versions`` on a storage opened with ``skip_compatibility_check`` and
    ``skip_table_creation`` (nothing is written).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_compatibility_check=True,
                                               skip_table_creation=True)
        try:
            current, head, known = probe.get_current_version(), probe.get_head_version(), probe.get_all_versions()
        finally:
            probe.engine.dispose()
    except Exception:  # noqa: BLE001 - no schema to read: another problem
        return None
    if current == head:
        return None
    if current in known:
        return (f"storage {storage!r} holds Optuna table schema {current}, older than the {head} of this Optuna "
                f"{optuna.__version__}: back it up, then upgrade it with `optuna storage upgrade --storage {storage}`")
    return (f"storage {storage!r} holds Optuna table schema {current}, newer than this Optuna {optuna.__version__} "
            f"knows (its newest is {head}): upgrade Optuna (pip install -U optuna) to use it, or give another --storage "
            f"(the database was left untouched)")


class JournalHeartbeatStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with the heartbeat that Optuna gives only its RDB storage.

    A heartbeat is the trial system attribute ``heartbeat``: the worker's wall-clock time
    (seconds since the epoch). A RUNNING trial whose heartbeat is older than the grace period is
    stale. Workers on several machines sharing a journal file therefore need clocks that agree to
    well within the grace period (NTP). A trial without any heartbeat is never stale.

    Example::

        storage = JournalHeartbeatStorage(JournalFileBackend("study.log"), heartbeat_interval=20,
                                          grace_period=60)
        optuna.storages.fail_stale_trials(study)   # works as with RDBStorage
    """

    HEARTBEAT_ATTR = "heartbeat"

    def __init__(self, backend: Any, heartbeat_interval: int | None = None, grace_period: float | None = None) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period if grace_period is not None else (
            2 * heartbeat_interval if heartbeat_interval else None
        )

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, self.HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.grace_period is not None
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(self.HEARTBEAT_ATTR)
            if beat is not None and now - float(beat) > self.grace_period:
                stale.append(trial_id_of(t))
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def open_storage(storage: str | os.PathLike, *, read_only: bool = False, create: bool = True,
                 heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open ``storage`` as an Optuna storage object.

    Args:
        storage: ``sqlite:///path.db`` (relative paths from the working directory), any
            SQLAlchemy URL Optuna supports (``postgresql://user@host/db``, ``mysql+pymysql://...``),
            a path ending in ``.log``/``.jsonl``/``.journal`` for Optuna's JournalStorage, or a
            bare path (treated as SQLite).
        read_only: for readers (the report): the database must exist and hold Optuna's tables;
            nothing is created or changed (no tables, no journal-mode switch, no heartbeats).
        create: when False, a SQLite or journal file that does not exist is an error instead
            of being created (for commands that only read or join).
        heartbeat: record heartbeats for running trials, so that trials of a killed worker are
            detected (see :func:`heartbeat_settings`). Off when ``read_only``.

    Raises:
        UserError: malformed URL, a file that is not an Optuna database, a missing file with
            ``create=False`` or ``read_only``, a missing database driver, or a server that cannot
            be reached. Nothing has been written then. The message shows the storage through
            :func:`mask_storage` and the driver's text through :func:`scrub_secrets`.
    """
    storage = os.fspath(storage)
    if read_only:
        create, heartbeat = False, False
    url = normalize_storage_url(storage)
    interval, grace = heartbeat_settings() if heartbeat else (None, None)
    if "://" not in url:  # journal file
        path = Path(url)
        _check_journal_file(path)
        if not create and not path.exists():
            raise UserError(f"journal file {path} does not exist; check --storage or run `adamrag-sens sweep` first")
        damage = journal_damage(path) if path.exists() else None
        try:
            if read_only and damage is not None:
                import logging

                logging.getLogger(NOTICES).warning(
                    f"journal file {path} is damaged at line {damage[0]} (a record cut off by a crash?); read the "
                    f"{damage[0] - 1} whole records before it and ignored the rest")
                return optuna.storages.JournalStorage(_journal_prefix_backend(path, damage[0]))
            if not read_only:
                _check_journal_whole(path)
                path.parent.mkdir(parents=True, exist_ok=True)
            return JournalHeartbeatStorage(_guarded_journal_backend(path), interval, grace)
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - any parse error of a foreign file
            raise UserError(f"cannot open journal file {path} ({err}); give another --storage path") from None
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    db_path = sqlite_path(url) if scheme == "sqlite" else None
    engine_kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        if db_path is None and url not in ("sqlite://", "sqlite:///:memory:"):
            raise UserError(f"storage URL {mask_storage(storage)!r} is malformed; use sqlite:///relative/path.db or sqlite:////absolute/path.db")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        if db_path is not None:
            check_sqlite_file(db_path)
            if not db_path.exists() or (read_only and db_path.stat().st_size == 0):
                if not create:
                    raise UserError(f"no SQLite database at {db_path}; run `adamrag-sens sweep` first or check --storage")
                db_path.parent.mkdir(parents=True, exist_ok=True)
            if read_only:
                if "studies" not in sqlite_tables(db_path):
                    raise UserError(f"{db_path} is not an Optuna database (no 'studies' table); check --storage")
            else:
                _enable_wal(db_path)
    elif scheme in _RDB_SCHEMES:
        url = with_installed_driver(url)
        if "connect_timeout" not in url:
            engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        engine_kwargs["pool_pre_ping"] = True  # survive server restarts and idle disconnects in long runs
    else:
        raise UserError(
            f"storage URL {mask_storage(storage)!r} has an unknown scheme; use sqlite:///path.db, postgresql://user@host/db, "
            f"or a journal file path ending in .log"
        )
    options: dict[str, Any] = {"heartbeat_interval": interval, "grace_period": grace} if interval else {}
    if read_only:
        options["skip_table_creation"] = True
    try:
        rdb = _open_rdb(url, engine_kwargs, options, retry=scheme == "sqlite" and not read_only)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy/driver errors have many types
        cause = err.__cause__ or err
        text = scrub_secrets(str(cause).strip(), storage) or type(cause).__name__  # drivers may echo the URL
        if isinstance(cause, ImportError) or text.startswith("No module named"):
            hint = _DRIVER_HINT.get(scheme, "install the database driver SQLAlchemy names")
            raise UserError(f"storage {mask_storage(storage)!r} needs a database driver ({text}): {hint}") from None
        schema = _schema_mismatch(url, engine_kwargs, mask_storage(storage))
        if schema is not None:
            raise UserError(schema) from None
        reason = " ".join(text.split())[:200]
        raise UserError(f"cannot open Optuna storage {mask_storage(storage)!r} ({reason}); check the URL, the server and its credentials") from None
    if scheme == "sqlite" and not read_only:
        _begin_immediate(rdb.engine)
    if not read_only:
        ensure_indexes(rdb)
    return rdb


# ---- Optuna's private API, in one place ----------------------------------------------------------
# Each helper names what it relies on. All were checked against Optuna 5.0.0 and 5.1.0;
# tests/test_storage.py exercises every one, so an upgrade that breaks one fails there first.


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study reads and writes (``Study._storage``, Optuna 5.0.0)."""
    return study._storage  # noqa: SLF001


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of ``study`` (``Study._study_id``, Optuna 5.0.0)."""
    return study._study_id  # noqa: SLF001


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial, live or frozen (``Trial._trial_id`` / ``FrozenTrial._trial_id``,
    Optuna 5.0.0); trial *numbers* are per study, ids are what the storage API takes."""
    return trial._trial_id  # noqa: SLF001


def live_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """A :class:`optuna.Trial` handle on a trial this process took from the queue (the constructor
    ``Trial(study, trial_id)`` that ``Study.ask`` uses, documented as internal; Optuna 5.0.0)."""
    return optuna.Trial(study, trial_id)


FIXED_PARAMS_ATTR = "fixed_params"
"""Trial system attribute in which ``Study.enqueue_trial`` stores a queued trial's params (Optuna 5.0.0)."""


def fixed_params(storage: optuna.storages.BaseStorage, trial_id: int) -> dict[str, Any]:
    """The params a trial was queued with by ``Study.enqueue_trial`` ({} when none; Optuna 5.0.0)."""
    return dict(storage.get_trial_system_attrs(trial_id).get(FIXED_PARAMS_ATTR, {}))


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """Seconds between heartbeats when ``storage`` records them (RDB and our journal storage as
    opened here), else None (``BaseHeartbeat.get_heartbeat_interval``, Optuna 5.0.0)."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)()


def record_heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Record that the worker of ``trial_id`` is alive (``BaseHeartbeat.record_heartbeat``, Optuna 5.0.0)."""
    storage.record_heartbeat(trial_id)


def stale_trial_ids(storage: optuna.storages.BaseStorage, study: optuna.Study) -> list[int] | None:
    """Ids of RUNNING trials of ``study`` whose heartbeat is older than the grace period, or None
    when ``storage`` cannot say (``BaseHeartbeat._get_stale_trial_ids``, private in Optuna 5.0.0:
    the public ``fail_stale_trials`` fails them too, but does not say which, and a worker must know
    which trials it failed to queue their points once)."""
    query = getattr(storage, "_get_stale_trial_ids", None)
    if query is None:
        return None
    return list(query(study_id_of(study)))


# ---- The trial ledger: per-trial bookkeeping whose cost does not grow with the study -------------
#
# A worker's bookkeeping per trial is: find the oldest queued trial of its plan, take it, check that
# no other trial holds the same point, record the params and the worker, and at the end record the
# result. Through Optuna's public API each of these lists the whole study or commits one row at a
# time, so a trial's bookkeeping grew with the study and cost dozens of commits. A ledger does each
# step as one indexed look-up or one transaction. `open_ledger` picks:
#
# * `_SQLLedger` for an RDB storage whose schema it was written for (`ledger_support`): SQLAlchemy Core statements on
#   Optuna's own tables (their definitions are imported from Optuna, so column types, enums and
#   dialects are Optuna's), one transaction to take a trial and one to finish it. Two indexes make
#   the look-ups independent of the study's size (see `ensure_indexes`).
# * `_JournalLedger` for a journal file: Optuna's in-memory replay, read incrementally (trials are
#   numbered in the order the log holds them, so only trials newer than the last seen are read).
# * `_APILedger` for anything else (or another schema revision): Optuna's public API, one call per
#   row, and scans of the study; correct everywhere, not flat.

SQL_LEDGER_SCHEMAS = ("v3.2.0.a",)
"""Revisions of Optuna's RDB schema (the ``alembic_version`` table's ``version_num``) that `_SQLLedger`
was written for: the tables of ``optuna/storages/_rdb/models.py`` at revision v3.2.0.a (checked with
Optuna 5.0.0 and 5.1.0), trial datetimes stored as naive UTC, JSON attribute values written with
``json.dumps``. A database at another revision gets the public-API ledger, announced (`LedgerSupport`)."""

_LEDGER_COLUMNS = {
    "studies": ("study_id",),
    "trials": ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"),
    "trial_user_attributes": ("trial_id", "key", "value_json"),
    "trial_system_attributes": ("trial_id", "key", "value_json"),
    "trial_params": ("param_id", "trial_id", "param_name", "param_value", "distribution_json"),
    "trial_values": ("trial_id", "objective", "value", "value_type"),
    "trial_intermediate_values": ("trial_id", "step", "intermediate_value", "intermediate_value_type"),
    "trial_heartbeats": ("trial_id", "heartbeat"),
}
"""The tables and columns `_SQLLedger` reads and writes; each must exist in Optuna's models as imported
and in the database."""

_LEDGER_MODEL_METHODS = (("TrialValueModel", "value_to_stored_repr"), ("TrialValueModel", "stored_repr_to_value"),
                         ("TrialIntermediateValueModel", "intermediate_value_to_stored_repr"))
"""Optuna's conversions of floats (inf, nan) to stored values that `_SQLLedger` calls."""

_INDEXES = {
    # the queue: WAITING trials of a study in id order, and RUNNING ones for the stale check
    "ix_adamrag_sens_trials_study_state": "CREATE INDEX IF NOT EXISTS ix_adamrag_sens_trials_study_state "
                                          "ON trials (study_id, state, trial_id)",
    # a point's trials: partial, so long attribute values (curves) never enter the index
    "ix_adamrag_sens_point_key": "CREATE INDEX IF NOT EXISTS ix_adamrag_sens_point_key "
                                 f"ON trial_user_attributes (value_json) WHERE key = '{POINT_KEY}'",
}
"""Indexes the ledger adds to Optuna's schema: read-only for Optuna (it never names them), created
idempotently, on SQLite and PostgreSQL (other databases run the same queries without them)."""

_INDEXED_DIALECTS = ("sqlite", "postgresql")


@dataclasses.dataclass(frozen=True)
class LedgerSupport:
    """Which trial ledger a storage gets, and why (see :func:`ledger_support`).

    Attributes:
        kind: ``"sql"`` (indexed SQL on Optuna's tables), ``"journal"`` (incremental replay of a
            journal file) or ``"api"`` (Optuna's public API: scans of the study per trial).
        reason: why, in words (names the schema revision, dialect or storage class).
        flat: True when a trial's bookkeeping does not grow with the study (``sql`` with its
            indexes, or ``journal``).
    """

    kind: str
    reason: str
    flat: bool

    def line(self) -> str:
        """One line saying which ledger runs and why, e.g. for ``bench sweep``."""
        return f"trial ledger: {self.kind} ({self.reason})"

    def notice(self) -> str | None:
        """The one line a sweep prints at its start when bookkeeping grows with the study, else None."""
        if self.flat:
            return None
        what = "Optuna's public API" if self.kind == "api" else "SQL without its indexes"
        return (f"trial ledger on {what}: {self.reason}; each trial's bookkeeping scans the study, so it grows "
                f"with the study's size")


_SUPPORT: "weakref.WeakKeyDictionary[Any, LedgerSupport]" = weakref.WeakKeyDictionary()
"""`ledger_support`'s answer per storage object (RDBStorage, JournalStorage, ...), computed once."""


def _sql_schema_problem(backend: optuna.storages.RDBStorage) -> str | None:
    """Why `_SQLLedger` cannot run on ``backend``'s database, or None when it can: the schema
    revision is one of :data:`SQL_LEDGER_SCHEMAS` and every table and column of
    :data:`_LEDGER_COLUMNS` exists in Optuna's models (as imported) and in the database. Only reads."""
    try:
        from optuna.storages._rdb import models  # private in Optuna 5.0.0/5.1.0: Optuna's table definitions
    except ImportError as err:
        return f"this Optuna {optuna.__version__} has no RDB models module ({err})"
    tables = models.BaseModel.metadata.tables
    for table, columns in _LEDGER_COLUMNS.items():
        missing = [c for c in columns if table not in tables or c not in tables[table].c]
        if missing:
            return f"this Optuna {optuna.__version__}'s table {table} lacks {', '.join(missing)}"
    for model, method in _LEDGER_MODEL_METHODS:
        if not hasattr(getattr(models, model, None), method):
            return f"this Optuna {optuna.__version__} lacks {model}.{method}"
    try:
        revision = backend.get_current_version()
    except Exception as err:  # noqa: BLE001 - an unreadable alembic_version table
        return f"the database's schema revision cannot be read ({type(err).__name__})"
    if revision not in SQL_LEDGER_SCHEMAS:
        return (f"the database's Optuna schema revision {revision} is not one the indexed ledger was written for "
                f"({', '.join(SQL_LEDGER_SCHEMAS)})")
    from sqlalchemy import inspect

    inspector = inspect(backend.engine)
    for table, columns in _LEDGER_COLUMNS.items():
        try:
            found = {c["name"] for c in inspector.get_columns(table)}
        except Exception:  # noqa: BLE001 - no such table
            found = set()
        missing = [c for c in columns if c not in found]
        if missing:
            return f"the database's table {table} lacks {', '.join(missing)}"
    return None


def ledger_support(storage: optuna.storages.BaseStorage) -> LedgerSupport:
    """Which trial ledger :func:`open_ledger` gives ``storage`` (or a study's storage), and why.

    Decided by what the ledger depends on, not by Optuna's version string: an RDB storage gets
    the SQL ledger when its schema revision and columns are the ones it was written for
    (:func:`_sql_schema_problem`), indexed where the dialect and permissions allow
    (:data:`_INDEXES`). Checked once per storage object (cached); nothing is written.
    """
    backend = _backend_of(storage)
    try:
        return _SUPPORT[backend]
    except (KeyError, TypeError):
        pass
    if isinstance(backend, optuna.storages.JournalStorage):
        support = LedgerSupport("journal", "a journal file: Optuna's replay of the log, read incrementally", True)
    elif not isinstance(backend, optuna.storages.RDBStorage):
        support = LedgerSupport("api", f"a {type(backend).__name__}, neither an RDB database nor a journal file", False)
    elif (problem := _sql_schema_problem(backend)) is not None:
        support = LedgerSupport("api", problem, False)
    else:
        dialect = backend.engine.dialect.name
        have = ledger_indexes(backend)
        if have == set(_INDEXES):
            support = LedgerSupport("sql", f"Optuna schema {backend.get_current_version()} on {dialect}, indexed", True)
        elif dialect not in _INDEXED_DIALECTS:
            support = LedgerSupport("sql", f"the ledger's indexes are not made on {dialect}", False)
        else:
            support = LedgerSupport("sql", f"the database lacks the ledger's indexes "
                                           f"({', '.join(sorted(set(_INDEXES) - have))}; no permission to create them?)",
                                    False)
    try:
        _SUPPORT[backend] = support
    except TypeError:  # an object without weak references: checked again next time
        pass
    return support


def _backend_of(storage: Any) -> Any:
    """The storage a study's storage wraps: Optuna puts ``_CachedStorage`` around an RDBStorage
    (``_CachedStorage._backend``, private in Optuna 5.0.0/5.1.0); other storages are their own."""
    if isinstance(storage, (optuna.storages.RDBStorage, optuna.storages.JournalStorage)):
        return storage
    return getattr(storage, "_backend", storage)


def _sql_ledger_supported(storage: Any) -> Any | None:
    """The RDBStorage behind ``storage`` when `_SQLLedger` may write to it, else None."""
    backend = _backend_of(storage)
    return backend if ledger_support(backend).kind == "sql" else None


def ensure_indexes(storage: optuna.storages.BaseStorage) -> None:
    """Create the ledger's indexes (:data:`_INDEXES`) on an RDB storage where they are missing.

    Safe from several processes at once and on a database other Optuna clients use: the indexes
    only speed up reads. An index that exists is not touched (on PostgreSQL even ``CREATE INDEX IF
    NOT EXISTS`` would wait for the table's writers), and a database the indexes cannot be added
    to (no permission, another dialect) works as before, with scans.
    """
    backend = _sql_ledger_supported(storage)
    if backend is None or backend.engine.dialect.name not in _INDEXED_DIALECTS:
        return
    from sqlalchemy import exc, text

    _SUPPORT.pop(backend, None)  # asked again once the indexes are made

    for name, ddl in _INDEXES.items():
        try:
            with backend.engine.begin() as conn:
                if backend.engine.dialect.name == "sqlite":
                    exists = conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :n"),
                                          {"n": name}).first() is not None
                else:
                    exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None
                if not exists:
                    conn.execute(text(ddl))
        except exc.SQLAlchemyError:  # a creator racing this one on PostgreSQL, or no CREATE permission
            pass
    _SUPPORT.pop(backend, None)


def ledger_indexes(storage: optuna.storages.BaseStorage) -> set[str]:
    """Names of the ledger's indexes (:data:`_INDEXES`) that exist in ``storage``'s database."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return set()
    from sqlalchemy import inspect

    found = {ix["name"] for table in ("trials", "trial_user_attributes")
             for ix in inspect(backend.engine).get_indexes(table)}
    return found & set(_INDEXES)


@dataclasses.dataclass(frozen=True)
class TrialRow:
    """A trial as the ledger sees it: its storage id, its number in the study, its state."""

    trial_id: int
    number: int
    state: TrialState


@dataclasses.dataclass(frozen=True)
class PointTrial:
    """A trial that holds a planned point: its key (None for a trial that holds none), ids, state,
    value (None when it has none) and the user attributes asked for."""

    key: str | None
    trial_id: int
    number: int
    state: TrialState
    value: float | None
    attrs: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TakenTrial:
    """A trial this worker took from the queue: now RUNNING, its params and worker recorded.

    Attributes:
        trial_id: the storage's id (what the ledger takes).
        number: the trial's number in its study (what users see).
        params: the params the trial was queued with, by name (external representation).
    """

    trial_id: int
    number: int
    params: dict[str, Any]


Decide = Callable[[TrialRow, list[TrialRow]], "int | None"]
"""``decide(mine, others) -> number | None``: given a just-taken trial and the other trials of its
point, the number of a trial that already holds the point (the taken one is then a duplicate)."""


def _utcnow_naive() -> "datetime.datetime":
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class TrialLedger:
    """Per-trial reads and writes of one study's queue; see :func:`open_ledger`.

    Every method costs the same whatever the number of trials in the study (except on
    `_APILedger`, the fallback). Writes that belong together are one transaction where the
    storage has transactions.
    """

    KIND = "api"
    """What :attr:`kind` says for this class: ``sql``, ``journal`` or ``api``."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.storage = storage_of(study)
        self.study_id = study_id_of(study)
        support = ledger_support(self.storage)
        self.support = support if support.kind == self.KIND else LedgerSupport(self.KIND, "chosen by the caller", False)

    @property
    def kind(self) -> str:
        """Which ledger this is: ``"sql"``, ``"journal"`` or ``"api"`` (see :class:`LedgerSupport`)."""
        return self.support.kind

    @property
    def reason(self) -> str:
        """Why this ledger runs on this storage, in words."""
        return self.support.reason

    def waiting(self, keys: Container[str], limit: int = 4) -> list[tuple[int, str]]:
        """Up to ``limit`` WAITING trials whose point key is in ``keys``, oldest first, as (trial id, key)."""
        raise NotImplementedError

    def take(self, trial_id: int, key: str, decide: Decide, *, distributions: dict[str, Any],
             user_attrs: dict[str, Any], heartbeat: bool, duplicate_attr: str) -> "TakenTrial | int | None":
        """Take queued trial ``trial_id`` (point ``key``) if it is still WAITING.

        In one transaction (where the storage has them): WAITING -> RUNNING; the point's other
        trials are given to ``decide``; a duplicate is finished as PRUNED with its holder's number
        in the user attribute ``duplicate_attr``; otherwise the trial's first heartbeat (when
        ``heartbeat``), its queued params (with ``distributions``) and ``user_attrs`` are recorded.

        Returns:
            The :class:`TakenTrial`; the holder's number when the trial was a duplicate; None when
            another worker took it first.
        """
        raise NotImplementedError

    def report(self, trial_id: int, values: dict[int, float]) -> None:
        """Record intermediate values (step -> value) of a RUNNING trial, in one transaction.

        Raises:
            optuna.exceptions.UpdateFinishedTrialError: the trial is no longer RUNNING (another
                worker failed it as stale).
        """
        raise NotImplementedError

    def finish(self, trial_id: int, state: TrialState, value: float | None, user_attrs: dict[str, Any],
               intermediate_values: dict[int, float] | None = None) -> bool:
        """Finish a RUNNING trial: user attributes, intermediate values, value and state, in one transaction.

        Returns:
            True when this call finished the trial; False when it was no longer RUNNING (failed as
            stale by another worker, or finished by an earlier attempt whose reply was lost: see
            :meth:`state_of`); nothing is written then.
        """
        raise NotImplementedError

    def state_of(self, trial_id: int) -> TrialState:
        """The trial's current state (read from storage)."""
        return self.storage.get_trial(trial_id).state

    def record_heartbeat(self, trial_id: int) -> None:
        """Record that the worker of ``trial_id`` is alive."""
        record_heartbeat(self.storage, trial_id)

    def enqueue(self, points: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """Queue one WAITING trial per (params, user attributes), as ``Study.enqueue_trial`` does.

        Returns:
            How many trials were queued.
        """
        for params, attrs in points:
            self.study.enqueue_trial(params, user_attrs=attrs)
        return len(points)

    def point_trials(self, attrs: tuple[str, ...] = (), planned_only: bool = True) -> list[PointTrial]:
        """Every trial of the study that holds a point (user attribute ``point_key``; with
        ``planned_only=False`` every trial, key None where it has none), with its value and the user
        attributes named in ``attrs`` (one read)."""
        return [PointTrial(t.user_attrs.get(POINT_KEY), trial_id_of(t), t.number, t.state, t.value,
                           {a: t.user_attrs[a] for a in attrs if a in t.user_attrs})
                for t in self.study.get_trials(deepcopy=False) if POINT_KEY in t.user_attrs or not planned_only]

    def first_distributions(self) -> dict[str, Any]:
        """Each param name's distribution as the study's first trial that holds it stored it (what
        Optuna checks a new trial's distribution against)."""
        out: dict[str, Any] = {}
        for t in self.study.get_trials(deepcopy=False):
            for name, dist in t.distributions.items():
                out.setdefault(name, dist)
        return out


class _APILedger(TrialLedger):
    """The ledger on Optuna's public storage API: every storage, one call per row, scans of the study."""

    def waiting(self, keys: Container[str], limit: int = 4) -> list[tuple[int, str]]:
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            key = t.user_attrs.get(POINT_KEY)
            if key in keys:
                out.append((trial_id_of(t), key))
        return sorted(out)[:limit]

    def _trials_of_point(self, key: str) -> list[TrialRow]:
        return [TrialRow(trial_id_of(t), t.number, t.state) for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get(POINT_KEY) == key]

    def take(self, trial_id, key, decide, *, distributions, user_attrs, heartbeat, duplicate_attr):
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            if heartbeat:  # before RUNNING: a worker killed in between still leaves a trial that goes stale
                record_heartbeat(self.storage, trial_id)
            if not self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return None
        except (UpdateFinishedTrialError, optuna.exceptions.StorageInternalError):
            return None  # another worker took it first (or inserted the same heartbeat row at once)
        try:
            rows = self._trials_of_point(key)
            mine = next(r for r in rows if r.trial_id == trial_id)
            holder = decide(mine, [r for r in rows if r.trial_id != trial_id])
            if holder is not None:
                self.storage.set_trial_user_attr(trial_id, duplicate_attr, holder)
                self.storage.set_trial_state_values(trial_id, state=TrialState.PRUNED)
                return holder
            fixed = fixed_params(self.storage, trial_id)
            trial = live_trial(self.study, trial_id)
            params = {}
            for name, value in fixed.items():
                dist = distributions[name]
                self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
                params[name] = value
            for k, v in user_attrs.items():
                self.storage.set_trial_user_attr(trial_id, k, v)
            return TakenTrial(trial_id, trial.number, params)
        except BaseException:
            try:  # the queue moves on; the next sweep or worker start queues the point again
                self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - the heartbeat going stale covers it
                pass
            raise

    def report(self, trial_id: int, values: dict[int, float]) -> None:
        for step, value in sorted(values.items()):
            self.storage.set_trial_intermediate_value(trial_id, step, value)

    def finish(self, trial_id, state, value, user_attrs, intermediate_values=None):
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            for k, v in user_attrs.items():
                self.storage.set_trial_user_attr(trial_id, k, v)
            self.report(trial_id, intermediate_values or {})
            return bool(self.storage.set_trial_state_values(
                trial_id, state=state, values=None if value is None else [value]))
        except UpdateFinishedTrialError:
            return False


class _JournalLedger(_APILedger):
    """The ledger on a journal file: Optuna's replay of the log, read incrementally.

    JournalStorage gives trials the ids 0, 1, 2, ... in log order (Optuna 5.0.0), so this ledger
    reads each trial once, when it first appears, and keeps its own index of the study's queue and
    of each point's trials; a trial's current state is then one look-up in the replay
    (``get_trial``). No trial becomes WAITING again, so trials found taken leave the index for good.
    """

    KIND = "journal"

    def __init__(self, study: optuna.Study) -> None:
        super().__init__(study)
        self._next_id = 0
        self._queue: collections.deque[tuple[int, str]] = collections.deque()  # WAITING at creation, oldest first
        self._by_key: dict[str, list[int]] = {}

    def _catch_up(self) -> None:
        """Index the trials created since the last call."""
        while True:
            try:
                t = self.storage.get_trial(self._next_id)
            except KeyError:
                return
            trial_id = self._next_id
            self._next_id += 1
            key = t.user_attrs.get(POINT_KEY)
            if key is None or not self._in_study(trial_id, t.number):
                continue
            self._by_key.setdefault(key, []).append(trial_id)
            if t.state == TrialState.WAITING:
                self._queue.append((trial_id, key))

    def _in_study(self, trial_id: int, number: int) -> bool:
        try:
            return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number) == trial_id
        except KeyError:
            return False

    def waiting(self, keys: Container[str], limit: int = 4) -> list[tuple[int, str]]:
        self._catch_up()
        out: list[tuple[int, str]] = []
        keep: list[tuple[int, str]] = []
        while self._queue and len(out) < limit:
            trial_id, key = self._queue.popleft()
            if self.storage.get_trial(trial_id).state != TrialState.WAITING:
                continue  # taken since
            keep.append((trial_id, key))
            if key in keys:
                out.append((trial_id, key))
        self._queue.extendleft(reversed(keep))
        return out

    def _trials_of_point(self, key: str) -> list[TrialRow]:
        self._catch_up()
        rows = []
        for trial_id in self._by_key.get(key, ()):
            t = self.storage.get_trial(trial_id)
            rows.append(TrialRow(trial_id, t.number, t.state))
        return rows


class _SQLLedger(TrialLedger):
    """The ledger on an RDB storage: SQLAlchemy Core on Optuna's tables, one transaction per step.

    The table objects are Optuna's own (``optuna/storages/_rdb/models.py``, private in Optuna
    5.0.0), so enum columns, float types and dialect differences are handled as Optuna handles
    them; what is written is what Optuna's RDBStorage would write for the same calls (checked by
    tests/test_ledger.py against Optuna's public API reading it back). Exactly once rests on
    conditional updates: a trial moves WAITING -> RUNNING, and RUNNING -> finished, only in an
    ``UPDATE ... WHERE state = ...`` that one transaction wins (row locks on PostgreSQL/MySQL,
    ``BEGIN IMMEDIATE`` on SQLite). Statements are built once per ledger, with bound parameters,
    so a trial's bookkeeping pays neither statement construction nor SQL compilation.
    """

    _BATCH = 500
    KIND = "sql"

    def __init__(self, study: optuna.Study, backend: Any) -> None:
        super().__init__(study)
        from optuna.storages._rdb import models  # private in Optuna 5.0.0: Optuna's table definitions
        from sqlalchemy import and_, bindparam, delete, func, insert, select, text, update

        self.engine = backend.engine
        self._models = models
        t = self.trials = models.TrialModel.__table__
        a = self.user_attrs = models.TrialUserAttributeModel.__table__
        sa = self.system_attrs = models.TrialSystemAttributeModel.__table__
        self.params = models.TrialParamModel.__table__
        iv = self.intermediate = models.TrialIntermediateValueModel.__table__
        v = self.values = models.TrialValueModel.__table__
        hb = self.heartbeats = models.TrialHeartbeatModel.__table__
        self.studies = models.StudyModel.__table__
        self._with_lock = self.engine.dialect.name != "sqlite"  # SQLite: BEGIN IMMEDIATE locks already
        tid = bindparam("tid")
        self._q_waiting = (
            select(t.c.trial_id, a.c.value_json)
            .join(a, and_(a.c.trial_id == t.c.trial_id, a.c.key == POINT_KEY))
            .where(t.c.study_id == bindparam("sid"), t.c.state == TrialState.WAITING, t.c.trial_id > bindparam("after"))
            .order_by(t.c.trial_id).limit(bindparam("n"))
        )
        # the literal key lets SQLite use the partial index ix_adamrag_sens_point_key
        self._q_point = text(
            "SELECT t.trial_id, t.number, t.state FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id "
            f"WHERE a.key = '{POINT_KEY}' AND a.value_json = :value AND t.study_id = :sid"
        )
        self._q_state = select(t.c.state).where(t.c.trial_id == tid)
        self._q_fixed = select(sa.c.value_json).where(sa.c.trial_id == tid, sa.c.key == FIXED_PARAMS_ATTR)
        self._u_take = (update(t).where(t.c.trial_id == tid, t.c.state == TrialState.WAITING)
                        .values(state=TrialState.RUNNING, datetime_start=bindparam("now")))
        self._u_finish = (update(t).where(t.c.trial_id == tid, t.c.state == TrialState.RUNNING)
                          .values(state=bindparam("new_state", type_=t.c.state.type), datetime_complete=bindparam("now")))
        self._u_pruned = (update(t).where(t.c.trial_id == tid)
                          .values(state=TrialState.PRUNED, datetime_complete=bindparam("now")))
        self._d_attrs = delete(a).where(a.c.trial_id == tid, a.c.key.in_(bindparam("keys", expanding=True)))
        self._i_attrs = insert(a)
        self._i_params = insert(self.params)
        self._d_heartbeat = delete(hb).where(hb.c.trial_id == tid)
        # as RDBStorage.record_heartbeat: the database's clock
        self._i_heartbeat = insert(hb).values(trial_id=tid, heartbeat=func.current_timestamp())
        self._d_intermediate = delete(iv).where(iv.c.trial_id == tid, iv.c.step.in_(bindparam("steps", expanding=True)))
        self._i_intermediate = insert(iv)
        self._d_value = delete(v).where(v.c.trial_id == tid)
        self._i_value = insert(v)

    # ---- reading -------------------------------------------------------------------------------
    def _read(self) -> Any:
        """A connection for reads: on SQLite a deferred transaction, which takes no write lock."""
        return self.engine.connect().execution_options(**{_SQLITE_DEFERRED: True})

    def waiting(self, keys: Container[str], limit: int = 4) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        after = -1
        with self._read() as conn:
            while len(out) < limit:  # pages past WAITING trials of other plans, if any
                rows = conn.execute(self._q_waiting, {"sid": self.study_id, "after": after, "n": limit}).all()
                for trial_id, value_json in rows:
                    key = json.loads(value_json)
                    if key in keys and len(out) < limit:
                        out.append((trial_id, key))
                if len(rows) < limit:
                    break
                after = rows[-1][0]
        return out

    def _trials_of_point(self, conn: Any, key: str) -> list[TrialRow]:
        rows = conn.execute(self._q_point, {"value": json.dumps(key), "sid": self.study_id}).all()
        return [TrialRow(r[0], r[1], TrialState[r[2]]) for r in rows]

    def state_of(self, trial_id: int) -> TrialState:
        with self._read() as conn:
            return conn.execute(self._q_state, {"tid": trial_id}).scalar()

    def point_trials(self, attrs: tuple[str, ...] = (), planned_only: bool = True) -> list[PointTrial]:
        from sqlalchemy import and_, select

        t, a, v = self.trials, self.user_attrs, self.values
        extra = [a.alias(f"attr{i}") for i in range(len(attrs))]
        on_key = and_(a.c.trial_id == t.c.trial_id, a.c.key == POINT_KEY)
        query = select(a.c.value_json, t.c.trial_id, t.c.number, t.c.state, v.c.value, v.c.value_type,
                       *(x.c.value_json for x in extra)).select_from(t)
        query = (query.join(a, on_key) if planned_only else query.outerjoin(a, on_key))
        query = query.outerjoin(v, and_(v.c.trial_id == t.c.trial_id, v.c.objective == 0))
        for x, name in zip(extra, attrs):
            query = query.outerjoin(x, and_(x.c.trial_id == t.c.trial_id, x.c.key == name))
        with self._read() as conn:
            rows = conn.execute(query.where(t.c.study_id == self.study_id)).all()
        to_value = self._models.TrialValueModel.stored_repr_to_value
        out = []
        for row in rows:
            value = to_value(row[4], row[5]) if row[5] is not None else None
            found = {name: json.loads(raw) for name, raw in zip(attrs, row[6:]) if raw is not None}
            key = json.loads(row[0]) if row[0] is not None else None
            out.append(PointTrial(key, row[1], row[2], row[3], value, found))
        return out

    def first_distributions(self) -> dict[str, Any]:
        from optuna.distributions import json_to_distribution
        from sqlalchemy import func, select

        p, t = self.params, self.trials
        first = (select(func.min(p.c.param_id)).join(t, t.c.trial_id == p.c.trial_id)
                 .where(t.c.study_id == self.study_id).group_by(p.c.param_name))
        with self._read() as conn:
            rows = conn.execute(select(p.c.param_name, p.c.distribution_json).where(p.c.param_id.in_(first))).all()
        return {name: json_to_distribution(text) for name, text in rows}

    # ---- writing -------------------------------------------------------------------------------
    def _set_attrs(self, conn: Any, trial_id: int, attrs: dict[str, Any]) -> None:
        if not attrs:
            return
        conn.execute(self._d_attrs, {"tid": trial_id, "keys": list(attrs)})
        conn.execute(self._i_attrs, [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                     for k, v in attrs.items()])

    def _set_intermediate(self, conn: Any, trial_id: int, values: dict[int, float]) -> None:
        if not values:
            return
        to_stored = self._models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
        conn.execute(self._d_intermediate, {"tid": trial_id, "steps": [int(s) for s in values]})
        rows = []
        for step, value in sorted(values.items()):
            stored, kind = to_stored(float(value))
            rows.append({"trial_id": trial_id, "step": int(step), "intermediate_value": stored,
                         "intermediate_value_type": kind})
        conn.execute(self._i_intermediate, rows)

    def take(self, trial_id, key, decide, *, distributions, user_attrs, heartbeat, duplicate_attr):
        from optuna.distributions import distribution_to_json

        with self.engine.begin() as conn:
            now = _utcnow_naive()
            if conn.execute(self._u_take, {"tid": trial_id, "now": now}).rowcount != 1:
                return None  # another worker took it first
            rows = self._trials_of_point(conn, key)
            mine = next(r for r in rows if r.trial_id == trial_id)
            holder = decide(mine, [r for r in rows if r.trial_id != trial_id])
            if holder is not None:
                self._set_attrs(conn, trial_id, {duplicate_attr: holder})
                conn.execute(self._u_pruned, {"tid": trial_id, "now": now})
                return holder
            if heartbeat:
                conn.execute(self._d_heartbeat, {"tid": trial_id})
                conn.execute(self._i_heartbeat, {"tid": trial_id})
            fixed_json = conn.execute(self._q_fixed, {"tid": trial_id}).scalar()
            fixed = json.loads(fixed_json) if fixed_json else {}
            params = {name: fixed[name] for name in distributions if name in fixed}
            if params:
                conn.execute(self._i_params, [
                    {"trial_id": trial_id, "param_name": name,
                     "param_value": distributions[name].to_internal_repr(value),
                     "distribution_json": distribution_to_json(distributions[name])}
                    for name, value in params.items()
                ])
            self._set_attrs(conn, trial_id, user_attrs)
            return TakenTrial(trial_id, mine.number, params)

    def report(self, trial_id: int, values: dict[int, float]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        if not values:
            return
        with self.engine.begin() as conn:
            query = self._q_state.with_for_update() if self._with_lock else self._q_state
            state = conn.execute(query, {"tid": trial_id}).scalar()
            if state != TrialState.RUNNING:
                raise UpdateFinishedTrialError(f"trial id {trial_id} is {state.name if state else 'missing'}, not RUNNING")
            self._set_intermediate(conn, trial_id, values)

    def finish(self, trial_id, state, value, user_attrs, intermediate_values=None):
        with self.engine.begin() as conn:
            moved = conn.execute(self._u_finish, {"tid": trial_id, "new_state": state, "now": _utcnow_naive()})
            if moved.rowcount != 1:
                return False
            self._set_attrs(conn, trial_id, user_attrs)
            self._set_intermediate(conn, trial_id, intermediate_values or {})
            if value is not None:
                stored, kind = self._models.TrialValueModel.value_to_stored_repr(float(value))
                conn.execute(self._d_value, {"tid": trial_id})
                conn.execute(self._i_value, {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
        return True

    def enqueue(self, points: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """All points in one transaction, numbered as Optuna numbers trials (the count of the
        study's trials before each), under the lock Optuna's ``create_new_trial`` takes on the study."""
        from sqlalchemy import func, insert, select

        if not points:
            return 0
        t = self.trials
        with self.engine.begin() as conn:
            lock = select(self.studies.c.study_id).where(self.studies.c.study_id == self.study_id)
            conn.execute(lock.with_for_update() if self._with_lock else lock)
            base = conn.execute(select(func.count(t.c.trial_id)).where(t.c.study_id == self.study_id)).scalar()
            for start in range(0, len(points), self._BATCH):
                conn.execute(insert(t), [{"number": base + i, "study_id": self.study_id, "state": TrialState.WAITING,
                                          "datetime_start": None, "datetime_complete": None}
                                         for i in range(start, min(start + self._BATCH, len(points)))])
            ids = dict(conn.execute(select(t.c.number, t.c.trial_id).where(
                t.c.study_id == self.study_id, t.c.number >= base)).all())
            system_rows, user_rows = [], []
            for i, (params, attrs) in enumerate(points):
                trial_id = ids[base + i]
                system_rows.append({"trial_id": trial_id, "key": FIXED_PARAMS_ATTR, "value_json": json.dumps(params)})
                user_rows += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
            for table, rows in ((self.system_attrs, system_rows), (self.user_attrs, user_rows)):
                for start in range(0, len(rows), self._BATCH):
                    conn.execute(insert(table), rows[start : start + self._BATCH])
        return len(points)


class _ReconnectingSQLLedger(_SQLLedger):
    """`_SQLLedger` on a database server: each step retried on a new connection while the error
    says the connection was lost, as :class:`ReconnectingRDBStorage` retries Optuna's calls. Each
    step is one transaction, so a failed attempt left nothing; an attempt that committed but whose
    reply was lost makes the retry find the trial no longer WAITING (taken: it goes stale and runs
    again) or no longer RUNNING (finished: :func:`sensitivity.study.trial.run_trial` then reads its
    state)."""

    def remove_session(self) -> None:
        """Nothing to reset: each step checks a connection out of the pool, which drops dead ones."""


for _name in ("waiting", "state_of", "point_trials", "first_distributions", "take", "report", "finish", "enqueue"):
    setattr(_ReconnectingSQLLedger, _name, _reconnecting(getattr(_SQLLedger, _name)))


def release_storage(study: optuna.Study | optuna.storages.BaseStorage) -> None:
    """Close the database connections a study's storage (or ``study`` itself, a storage) holds in
    its pool (RDB storages; the pool opens new ones if the storage is used again). On SQLite the
    last connection to close folds the write-ahead log into the database file, so a sweep that
    returns, or is refused, leaves the file complete, not only the file and its log (the engine
    would otherwise close them whenever Python's garbage collector gets to it;
    ``Study._storage._backend``, Optuna 5.0.0)."""
    storage = storage_of(study) if isinstance(study, optuna.Study) else study
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        backend.remove_session()
        backend.engine.dispose()


def open_ledger(study: optuna.Study) -> TrialLedger:
    """The :class:`TrialLedger` for ``study``'s storage, chosen by :func:`ledger_support` (its
    ``kind`` and ``reason`` are the ledger's ``kind`` and ``reason``)."""
    storage = storage_of(study)
    support = ledger_support(storage)
    if support.kind == "sql":
        backend = _backend_of(storage)
        ledger: TrialLedger = (_ReconnectingSQLLedger if isinstance(backend, ReconnectingRDBStorage) else _SQLLedger)(
            study, backend)
    elif support.kind == "journal":
        ledger = _JournalLedger(study)
    else:
        ledger = _APILedger(study)
    return ledger
