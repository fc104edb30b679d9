"""Opening a storage, the one place that does it: SQLite (default), any RDB URL, or a journal file.

Both sides call :func:`open_storage`: the study side to create and run studies, the report side
with ``read_only=True`` to read them. Checks happen before anything is written: a path that is not
an Optuna database, a URL Optuna cannot parse, or a server that does not answer gives a
:class:`UserError` and leaves the file as it was.

Heartbeats: a running trial records that its worker is alive every ``ADAMRAG_SENS_HEARTBEAT_S``
seconds (default 20); a RUNNING trial whose last heartbeat is older than ``ADAMRAG_SENS_GRACE_S``
(default 3 x the interval) is failed and its point queued again. PostgreSQL / MySQL: ``SELECT ...
FOR UPDATE`` is honoured; a connect timeout makes an unreachable server fail in seconds.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from sensitivity.errors import UserError
from sensitivity.storage._optuna import JournalHeartbeatStorage, backend_of, storage_of
from sensitivity.storage.journal import (
    check_journal_file, check_journal_whole, guarded_journal_backend, journal_prefix_backend, journal_damage,
)
from sensitivity.storage.ledger_schema import ensure_indexes
from sensitivity.storage.reconnect import ReconnectingRDBStorage
from sensitivity.storage.secrets import mask_storage, scrub_secrets
from sensitivity.storage.local_faults import check_writable, folder_problem, sqlite_fault
from sensitivity.storage.sqlite import (
    SQLITE_BUSY_TIMEOUT_S, begin_immediate, check_sqlite_file, enable_wal, read_only_engine_kwargs, sqlite_tables,
)
from sensitivity.storage.urls import DRIVER_HINT, RDB_SCHEMES, normalize_storage_url, sqlite_path, with_installed_driver

HEARTBEAT_INTERVAL_S = 20
"""Default: how often a running trial records that its worker is alive (seconds)."""
GRACE_PERIOD_FACTOR = 3
"""Default grace period, in heartbeat intervals: a RUNNING trial whose heartbeat is older is failed."""

CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL/MySQL connection may take before the server counts as unreachable."""
HEARTBEAT_ENV = "ADAMRAG_SENS_HEARTBEAT_S"
GRACE_ENV = "ADAMRAG_SENS_GRACE_S"


NOTICES = "sensitivity.notices"
"""Logger of what a user should know that is not an error (a journal read only up to a torn record);
the CLI prints each as one ``warning:`` line, a library caller sees Python's last-resort handler."""


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
        check_journal_file(path)
        if not create and not path.exists():
            raise UserError(f"journal file {path} does not exist; check --storage or run `adamrag-sens sweep` first")
        damage = journal_damage(path) if path.exists() else None
        try:
            if read_only and damage is not None:
                import logging

                logging.getLogger(NOTICES).warning(
                    f"journal file {path} is damaged at line {damage[0]} (a record cut off by a crash?); read the "
                    f"{damage[0] - 1} whole records before it and ignored the rest")
                return optuna.storages.JournalStorage(journal_prefix_backend(path, damage[0]))
            if not read_only:
                check_journal_whole(path)
                _make_folder(path.parent)
            return JournalHeartbeatStorage(guarded_journal_backend(path), interval, grace)
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
                _make_folder(db_path.parent)
            if read_only:
                tables = sqlite_tables(db_path)
                if "studies" not in tables:
                    raise UserError(f"{db_path} is not an Optuna database (no 'studies' table); check --storage")
                if "alembic_version" not in tables:  # Optuna stamps its schema version last
                    raise UserError(f"SQLite database {db_path} was left half-created (a sweep stopped while it "
                                    "created Optuna's tables, or one is creating them now); run the sweep again "
                                    "to finish it, then the report")
                engine_kwargs.update(read_only_engine_kwargs(db_path))  # mode=ro: nothing created, even -shm
            else:
                check_writable(db_path)  # a local fault is named now, not found by the first write
                try:
                    enable_wal(db_path)
                except sqlite3.Error as err:
                    fault = sqlite_fault(err)
                    if fault is None:
                        raise
                    raise UserError(f"SQLite database {db_path} {fault}; give another --storage path") from None
    elif scheme in RDB_SCHEMES:
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
            hint = DRIVER_HINT.get(scheme, "install the database driver SQLAlchemy names")
            raise UserError(f"storage {mask_storage(storage)!r} needs a database driver ({text}): {hint}") from None
        fault = sqlite_fault(err) if db_path is not None else None
        if fault is not None:
            raise UserError(f"SQLite database {db_path} {fault}; give another --storage path") from None
        schema = _schema_mismatch(url, engine_kwargs, mask_storage(storage))
        if schema is not None:
            raise UserError(schema) from None
        reason = " ".join(text.split())[:200]
        raise UserError(f"cannot open Optuna storage {mask_storage(storage)!r} ({reason}); check the URL, the server and its credentials") from None
    if scheme == "sqlite" and not read_only:
        begin_immediate(rdb.engine)
    if not read_only:
        ensure_indexes(rdb)
    return rdb


def _make_folder(folder: Path) -> None:
    """``mkdir -p folder``; a folder that cannot be made is one line naming why (:func:`folder_problem`)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(folder_problem(folder, err)) from None


def release_storage(study: optuna.Study | optuna.storages.BaseStorage) -> None:
    """Close the database connections a study's storage (or ``study`` itself, a storage) holds in
    its pool (RDB storages; the pool opens new ones if the storage is used again). On SQLite the
    last connection to close folds the write-ahead log into the database file, so a sweep that
    returns, or is refused, leaves the file complete, not only the file and its log (the engine
    would otherwise close them whenever Python's garbage collector gets to it;
    the storage a study's storage wraps: :func:`~sensitivity.storage._optuna.backend_of`)."""
    storage = storage_of(study) if isinstance(study, optuna.Study) else study
    backend = backend_of(storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        backend.remove_session()
        backend.engine.dispose()
