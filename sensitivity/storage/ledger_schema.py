"""What the study side's SQL trial ledger needs of a database, decided once per storage: whether
it may run (:func:`ledger_support`, on the compatibility check of :mod:`sensitivity.storage._optuna`)
and the two indexes that make its look-ups independent of the study's size (:func:`ensure_indexes`).
The ledger itself is :mod:`sensitivity.study.ledger`; this module holds what opening a storage needs."""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import optuna

from sensitivity.records import POINT_KEY
from sensitivity.storage._optuna import backend_of, sql_schema_problem

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


def ledger_support(storage: optuna.storages.BaseStorage) -> LedgerSupport:
    """Which trial ledger :func:`sensitivity.study.ledger.open_ledger` gives ``storage`` (or a study's storage), and why.

    Decided by what the ledger depends on, not by Optuna's version string: an RDB storage gets
    the SQL ledger when its schema revision and columns are the ones it was written for
    (:func:`sensitivity.storage._optuna.sql_schema_problem`), indexed where the dialect and permissions allow
    (:data:`_INDEXES`). Checked once per storage object (cached); nothing is written.
    """
    backend = backend_of(storage)
    try:
        return _SUPPORT[backend]
    except (KeyError, TypeError):
        pass
    if isinstance(backend, optuna.storages.JournalStorage):
        support = LedgerSupport("journal", "a journal file: Optuna's replay of the log, read incrementally", True)
    elif not isinstance(backend, optuna.storages.RDBStorage):
        support = LedgerSupport("api", f"a {type(backend).__name__}, neither an RDB database nor a journal file", False)
    elif (problem := sql_schema_problem(backend)) is not None:
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


def _sql_ledger_supported(storage: Any) -> Any | None:
    """The RDBStorage behind ``storage`` when `SQLLedger` may write to it, else None."""
    backend = backend_of(storage)
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
    backend = backend_of(storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return set()
    from sqlalchemy import inspect

    found = {ix["name"] for table in ("trials", "trial_user_attributes")
             for ix in inspect(backend.engine).get_indexes(table)}
    return found & set(_INDEXES)
