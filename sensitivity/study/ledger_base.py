"""What a trial ledger is: the rows it reads, the steps a worker does with it, and their defaults.

:class:`TrialLedger` names each step of a worker's per-trial bookkeeping (find a queued trial, take
it, report, finish, queue points, list a study's points) and implements the read-only ones on
Optuna's public API; the ledgers of :mod:`sensitivity.study.api_ledger` and
:mod:`sensitivity.study.sql_ledger` implement the rest for their storages, and
:func:`sensitivity.study.ledger.open_ledger` picks one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.trial import TrialState

from sensitivity.records import POINT_KEY
from sensitivity.storage._optuna import record_heartbeat, storage_of, study_id_of, trial_id_of
from sensitivity.storage.ledger_schema import LedgerSupport, ledger_support



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



class TrialLedger:
    """Per-trial reads and writes of one study's queue; see :func:`sensitivity.study.ledger.open_ledger`.

    Every method costs the same whatever the number of trials in the study (except on
    :class:`~sensitivity.study.api_ledger.APILedger`, the fallback). Writes that belong together are
    one transaction where the storage has transactions.
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

    def take_up_to(self, k: int, waiting: list[tuple[int, str]], decide: Decide, *, distributions: dict[str, Any],
                   user_attrs: dict[str, Any], heartbeat: bool, duplicate_attr: str) -> tuple[list[TakenTrial], list[int]]:
        """Take up to ``k`` of the queued trials ``waiting`` ((trial id, point key), oldest first,
        as :meth:`waiting` lists them, e.g. for the keys of one optimizer), each as :meth:`take` does.

        On an SQL storage all of them are taken in one transaction (a population of ``k`` trials is
        taken whole or, when the transaction fails, not at all); elsewhere one by one.

        Returns:
            (the trials taken, at most ``k``, in the order of ``waiting``; the numbers of the
            holders of the trials found to be duplicates and finished as PRUNED). Trials another
            worker took first are in neither.
        """
        taken: list[TakenTrial] = []
        holders: list[int] = []
        for trial_id, key in waiting:
            if len(taken) >= k:
                break
            got = self.take(trial_id, key, decide, distributions=distributions, user_attrs=user_attrs,
                            heartbeat=heartbeat, duplicate_attr=duplicate_attr)
            if isinstance(got, TakenTrial):
                taken.append(got)
            elif got is not None:
                holders.append(got)
        return taken, holders

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

