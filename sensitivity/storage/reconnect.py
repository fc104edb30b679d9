"""Database connections that survive a server restart: an error that says the connection was lost
(:func:`is_connection_lost`) makes a storage call retry on a new connection, for about 30 s."""

from __future__ import annotations

import time
from typing import Any

import optuna

from sensitivity.storage._optuna import RDB_STORAGE_CALLS
from sensitivity.storage.local_faults import sqlite_fault

RECONNECT_PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Pauses between the attempts of a storage call whose database connection was lost (about 30 s in all)."""


def is_connection_lost(err: BaseException) -> bool:
    """True when ``err`` (or an exception it was raised from) says the database connection was lost
    or could not be made: SQLAlchemy's ``OperationalError`` (server gone, restarting, refusing) or a
    ``DBAPIError`` after which SQLAlchemy invalidated the connection (``pg_terminate_backend``), or
    a session left in the transaction such an error broke (``PendingRollbackError``). Never a local
    SQLite fault (:func:`sensitivity.storage.local_faults.sqlite_fault`: not writable, disk full)."""
    import sqlalchemy.exc

    if sqlite_fault(err) is not None:  # a local file's fault: a new connection meets it again
        return False
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.PendingRollbackError)):
            return True
        if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
            return True
        err = err.__cause__ or err.__context__
    return False


def reconnecting(method: Any) -> Any:
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


for _name in RDB_STORAGE_CALLS:
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(ReconnectingRDBStorage, _name, reconnecting(getattr(optuna.storages.RDBStorage, _name)))
