"""The trial ledger: the study queue's engine, a worker's per-trial reads and writes of one study.

A worker's bookkeeping per trial is: find the oldest queued trial of its plan, take it, check that
no other trial holds the same point, record the params and the worker, and at the end record the
result. Through Optuna's public API each of these lists the whole study or commits one row at a
time, so a trial's bookkeeping grew with the study and cost dozens of commits. A ledger does each
step as one indexed look-up or one transaction. :func:`open_ledger` picks, by
:func:`sensitivity.storage.ledger_support` (checked once per storage):

* :class:`~sensitivity.study.sql_ledger.SQLLedger` for an RDB storage whose schema it was written
  for: SQLAlchemy Core statements on Optuna's own tables (their definitions are imported from
  Optuna, so column types, enums and dialects are Optuna's), one transaction to take a trial and
  one to finish it. Two indexes make the look-ups independent of the study's size
  (:func:`sensitivity.storage.ensure_indexes`).
* :class:`~sensitivity.study.api_ledger.JournalLedger` for a journal file: Optuna's in-memory
  replay, read incrementally (trials are numbered in the order the log holds them, so only trials
  newer than the last seen are read).
* :class:`~sensitivity.study.api_ledger.APILedger` for anything else (or another schema revision):
  Optuna's public API, one call per row, and scans of the study; correct everywhere, not flat. The
  sweep announces it.

This module is the choice and the face: what a ledger is (its rows and steps) is
:mod:`sensitivity.study.ledger_base`, and callers import those names from here. Its uses of
Optuna's private API (table models, trial ids, queued params) go through
:mod:`sensitivity.storage._optuna`.
"""

from __future__ import annotations

import optuna

from sensitivity.storage._optuna import backend_of, storage_of
from sensitivity.storage.ledger_schema import ledger_support
from sensitivity.storage.reconnect import ReconnectingRDBStorage
from sensitivity.study.api_ledger import APILedger, JournalLedger
from sensitivity.study.ledger_base import Decide, PointTrial, TakenTrial, TrialLedger, TrialRow
from sensitivity.study.sql_ledger import ReconnectingSQLLedger, SQLLedger

__all__ = ["Decide", "PointTrial", "TakenTrial", "TrialLedger", "TrialRow", "open_ledger"]


def open_ledger(study: optuna.Study) -> TrialLedger:
    """The :class:`TrialLedger` for ``study``'s storage, chosen by :func:`ledger_support` (its
    ``kind`` and ``reason`` are the ledger's ``kind`` and ``reason``)."""
    storage = storage_of(study)
    support = ledger_support(storage)
    if support.kind == "sql":
        backend = backend_of(storage)
        ledger: TrialLedger = (ReconnectingSQLLedger if isinstance(backend, ReconnectingRDBStorage) else SQLLedger)(
            study, backend)
    elif support.kind == "journal":
        ledger = JournalLedger(study)
    else:
        ledger = APILedger(study)
    return ledger
