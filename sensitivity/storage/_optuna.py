"""Optuna's private API, in one place, and the one compatibility check.

Every use the package makes of what Optuna does not document as public is a named helper here,
each naming what it relies on, checked against Optuna 5.0.0 and 5.1.0: a study's storage object
and ids, the wrapper (``_CachedStorage``) around an RDBStorage, the ``fixed_params`` of a queued
trial, the heartbeat interface and its stale-trial query (and :class:`JournalHeartbeatStorage`,
which implements it for journal files), the RDB table models, and the storage calls to retry.
tests/storage/test_storage.py exercises every one, so an upgrade that breaks one fails there first.

The compatibility check (:func:`sql_schema_problem`) decides whether the study side's indexed
SQL ledger may run on a database: by the schema revision and the tables and columns it reads and
writes, not by Optuna's version string.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # private in Optuna 5.0.0/5.1.0: the interface fail_stale_trials uses
from optuna.trial import TrialState

RDB_STORAGE_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "record_heartbeat",
    # private, Optuna 5.0.0/5.1.0: what its _CachedStorage (the wrapper every Study puts around an
    # RDBStorage) calls instead of the public methods above, and the stale-trial query
    "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_stale_trial_ids",
)
"""The RDBStorage methods a storage call goes through, public and private (what
:class:`sensitivity.storage.reconnect.ReconnectingRDBStorage` retries)."""


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



def backend_of(storage: Any) -> Any:
    """The storage a study's storage wraps: Optuna puts ``_CachedStorage`` around an RDBStorage
    (``_CachedStorage._backend``, private in Optuna 5.0.0/5.1.0); other storages are their own."""
    if isinstance(storage, (optuna.storages.RDBStorage, optuna.storages.JournalStorage)):
        return storage
    return getattr(storage, "_backend", storage)


def rdb_models() -> Any:
    """Optuna's RDB table definitions, ``optuna/storages/_rdb/models.py`` (private in Optuna 5.0.0/5.1.0).

    Raises:
        ImportError: an Optuna without that module.
    """
    from optuna.storages._rdb import models

    return models


def optuna_tables() -> set[str]:
    """Names of the tables of Optuna's RDB storage (its models, and alembic's version table)."""
    return set(rdb_models().BaseModel.metadata.tables) | {"alembic_version"}


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


# ---- the compatibility check of the SQL ledger ------------------------------------------------

SQL_LEDGER_SCHEMAS = ("v3.2.0.a",)
"""Revisions of Optuna's RDB schema (the ``alembic_version`` table's ``version_num``) that `SQLLedger`
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
"""The tables and columns `SQLLedger` reads and writes; each must exist in Optuna's models as imported
and in the database."""

_LEDGER_MODEL_METHODS = (("TrialValueModel", "value_to_stored_repr"), ("TrialValueModel", "stored_repr_to_value"),
                         ("TrialIntermediateValueModel", "intermediate_value_to_stored_repr"))
"""Optuna's conversions of floats (inf, nan) to stored values that `SQLLedger` calls."""


def sql_schema_problem(backend: optuna.storages.RDBStorage) -> str | None:
    """Why `SQLLedger` cannot run on ``backend``'s database, or None when it can: the schema
    revision is one of :data:`SQL_LEDGER_SCHEMAS` and every table and column of
    :data:`_LEDGER_COLUMNS` exists in Optuna's models (as imported) and in the database. Only reads."""
    try:
        models = rdb_models()
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
