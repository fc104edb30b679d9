"""Optuna storage: where studies live, opened in one place (:func:`open_storage`).

One module per concept: :mod:`.urls` (a storage given as text -> what Optuna opens),
:mod:`.secrets` (passwords masked wherever a storage is shown), :mod:`.sqlite` (file guards, WAL,
``BEGIN IMMEDIATE``), :mod:`.journal` (journal integrity), :mod:`.reconnect` (surviving a lost
server connection), :mod:`.open` (:func:`open_storage`, heartbeats), :mod:`.ledger_schema` (what
the study side's SQL ledger needs of a database: the verdict and its indexes) and :mod:`._optuna`
(every use of Optuna's private API and the ledger's compatibility check). The trial ledger itself
is :mod:`sensitivity.study.ledger`. This face hands on the names the rest of the package uses.
"""

from sensitivity.storage._optuna import (
    FIXED_PARAMS_ATTR, JournalHeartbeatStorage, fixed_params, heartbeat_interval, live_trial, record_heartbeat,
    stale_trial_ids, storage_of, study_id_of, trial_id_of,
)
from sensitivity.storage.journal import journal_damage
from sensitivity.storage.ledger_schema import LedgerSupport, ensure_indexes, ledger_indexes, ledger_support
from sensitivity.storage.open import (
    CONNECT_TIMEOUT_S, GRACE_ENV, HEARTBEAT_ENV, HEARTBEAT_INTERVAL_S, NOTICES, heartbeat_settings, open_storage,
    release_storage,
)
from sensitivity.storage.reconnect import RECONNECT_PAUSES_S, ReconnectingRDBStorage, is_connection_lost
from sensitivity.storage.secrets import MASK, has_password, mask_storage, scrub_secrets, storage_without_password
from sensitivity.storage.sqlite import SQLITE_BUSY_TIMEOUT_S, check_sqlite_file, sqlite_tables
from sensitivity.storage.urls import is_journal_path, normalize_storage_url, sqlite_path, with_installed_driver

