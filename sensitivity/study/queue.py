"""The queue of planned points in an Optuna study: enqueue, pop exactly once, recover from dead workers.

A study's plan (see :mod:`sensitivity.study.space`) is held in storage as Optuna's own queue of
WAITING trials (what ``Study.enqueue_trial`` writes), each carrying its point's canonical key as the
user attribute ``point_key``. Storage is read and written through a
:class:`~sensitivity.study.ledger.TrialLedger`: on SQLite, PostgreSQL and MySQL one indexed look-up finds
the next queued trial, one transaction takes it (duplicate check, params, worker and first
heartbeat included) and one transaction records its result, so a trial's bookkeeping costs the same
at trial 10 and at trial 10,000; a journal file gets the same from an incremental index of Optuna's
replay of the log.

Invariants (see :meth:`PointQueue.pop`):

* **A trial is taken once.** A worker takes a WAITING trial by a conditional update
  WAITING -> RUNNING, which succeeds for one caller only (on SQLite this needs the
  ``BEGIN IMMEDIATE`` transactions that :func:`~sensitivity.storage.open_storage` sets up).
* **A point runs once.** Two workers that enqueue the same missing point at the same moment create
  two WAITING trials for it. After taking a trial, the worker looks at the other trials of the same
  point: if one is COMPLETE or RUNNING, or one is WAITING and older, the taken trial is a duplicate
  and is finished at once as PRUNED with the user attribute ``duplicate_of`` (the number of the
  trial that holds the point), without training. PRUNED trials are never queued again and never
  analysed (the report uses COMPLETE trials only). Of two workers that check at the same moment at
  least one sees the other's RUNNING trial, so a point never trains twice at once; in the rare case
  that both see each other, both stand down and the later of the two queues the point again.
* **Nothing is lost.** A trial whose worker stops sending heartbeats is failed by whichever worker
  notices first (:meth:`PointQueue.fail_stale`), and that worker queues its point again. A trial
  that failed with an error or Ctrl-C is queued again by the next ``sweep`` or ``worker`` start.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
from typing import Any, Iterable

import optuna
from optuna.trial import TrialState

from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import DUPLICATE_OF, ERROR, POINT_KEY, WORKER, param_distributions
from sensitivity.storage import heartbeat_interval, stale_trial_ids, storage_of
from sensitivity.study.ledger import PointTrial, TakenTrial, TrialLedger, TrialRow, open_ledger
from sensitivity.study.space import Point, point_key, resolve_key, stored_keys

LIVE_STATES = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
"""States of a trial that holds its point: done, being run, or queued."""

DIVERGED = "diverged"
"""The trial user attribute that says a run diverged (the field of :class:`~sensitivity.records.TrialResult`)."""

STALE_ERROR = "worker stopped sending heartbeats (killed or cut off); the point was queued again"


@dataclasses.dataclass(frozen=True)
class PlanStart:
    """Where each planned point stood when :func:`enqueue_missing` queued the missing ones. Every
    point is counted once, by its most advanced trial: ``complete + running + waiting + queued ==
    total``.

    Attributes:
        total: points in the plan.
        complete: points with a COMPLETE trial.
        running: points with a RUNNING trial and none COMPLETE: run by another process (or by one
            that died: its heartbeat goes stale, a worker fails the trial and queues the point again).
        waiting: points already queued (a WAITING trial that an earlier sweep or worker queued), none
            COMPLETE or RUNNING: they run as the points queued now do.
        queued: points this call queued, which no trial held (never tried, or the last trial failed).
        failed_before: of ``queued``, points whose last trial failed (an error, Ctrl-C, a dead worker).
    """

    total: int
    complete: int = 0
    running: int = 0
    waiting: int = 0
    queued: int = 0
    failed_before: int = 0


def enqueue_missing(study: optuna.Study, plan: list[Point], ledger: TrialLedger | None = None) -> PlanStart:
    """Queue every planned point that has no COMPLETE, RUNNING or WAITING trial (in one
    transaction where the storage has them).

    Returns:
        Where every planned point stands (:class:`PlanStart`), read in the same pass.
    """
    ledger = ledger or open_ledger(study)
    states: dict[str, set[TrialState]] = {}
    for trial in ledger.point_trials():
        key = resolve_key(trial.key)  # a key stored before weight decay was resolved: its point now
        states.setdefault(key, set()).add(trial.state)
    counts = dict.fromkeys(("complete", "running", "waiting", "failed_before"), 0)
    missing: list[tuple[Point, dict[str, Any]]] = []
    for point in plan:
        key = resolve_key(point_key(point))
        held = states.setdefault(key, set())
        for state, name in ((TrialState.COMPLETE, "complete"), (TrialState.RUNNING, "running"),
                            (TrialState.WAITING, "waiting")):
            if state in held:
                counts[name] += 1
                break
        else:
            counts["failed_before"] += TrialState.FAIL in held
            missing.append((point, {POINT_KEY: point_key(point)}))
            held.add(TrialState.WAITING)  # a point planned twice is queued once
    ledger.enqueue(missing)
    return PlanStart(total=len(plan), queued=len(missing), **counts)


def duplicate_holder(mine: TrialRow, others: list[TrialRow]) -> int | None:
    """The number of the trial that holds the point of the just-taken trial ``mine``, or None
    when ``mine`` may run it: another trial of the point that is COMPLETE, else one RUNNING, else
    an older one still WAITING (see the module's invariants)."""
    for state in (TrialState.COMPLETE, TrialState.RUNNING):
        for t in others:
            if t.state == state:
                return t.number
    for t in others:
        if t.state == TrialState.WAITING and t.trial_id < mine.trial_id:
            return t.number
    return None


@dataclasses.dataclass
class PlanProgress:
    """Where a plan stands in storage (counts of planned points, not of trials).

    Attributes:
        total: points in the plan.
        complete: points with a COMPLETE trial.
        running: points with a RUNNING trial and none COMPLETE.
        failed: points whose latest trial failed, with no live trial (run again to retry).
        diverged: of ``complete``, points whose trial diverged.
        best: the best objective among complete, non-diverged points (None when there is none).
        best_trial: the number of that trial.
    """

    total: int
    complete: int = 0
    running: int = 0
    failed: int = 0
    diverged: int = 0
    best: float | None = None
    best_trial: int | None = None


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """True when ``storage`` records heartbeats (RDB and our journal storage, as opened here)."""
    return bool(heartbeat_interval(storage))


class PointQueue:
    """One worker's view of a study's queue, restricted to the points of ``plan``.

    Args:
        study: the study.
        plan: the points this worker may run; WAITING trials of other points (from an earlier,
            different search space) are left alone.
        distributions: the param distributions trials are recorded with (default: every
            catalog optimizer's, :func:`~sensitivity.records.param_distributions`; a worker passes
            the study's own, :func:`~sensitivity.study.sweep.study_distributions`).
    """

    def __init__(self, study: optuna.Study, plan: Iterable[Point], distributions: dict[str, Any] | None = None) -> None:
        self.study = study
        self.storage = storage_of(study)
        self.ledger = open_ledger(study)
        self.plan = list(plan)
        self._points = {resolve_key(point_key(p)): p for p in self.plan}  # by the key in its current form
        self.wanted = set(self._points)
        # WAITING trials are found under either form of a point's key (queued before weight decay was resolved, or after)
        self._waiting_keys = {k for key in self._points for k in stored_keys(json.loads(key))}
        self._waiting_keys |= {point_key(p) for p in self.plan}
        self._keys_of_optimizer: dict[str, set[str]] = {}
        for k in self._waiting_keys:
            self._keys_of_optimizer.setdefault(json.loads(k)["optimizer"], set()).add(k)
        self.heartbeat = heartbeat_enabled(self.storage)
        self.distributions = distributions or param_distributions(sorted(OPTIMIZERS))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.duplicates_pruned = 0

    # ---- taking work -------------------------------------------------------------------------
    def pop(self) -> TakenTrial | None:
        """Take the oldest WAITING trial of the plan that is not a duplicate; None when none is left.

        The trial is RUNNING when this returns, with its queued params, its worker (user
        attribute ``worker``, ``host:pid``) and its first heartbeat recorded in the same
        transaction, so a worker killed right after taking it still leaves a trial that goes
        stale. Duplicates met on the way are finished as PRUNED.
        """
        while True:
            waiting = self.ledger.waiting(self._waiting_keys)
            if not waiting:
                return None
            for trial_id, key in waiting:
                taken = self.ledger.take(trial_id, key, duplicate_holder, distributions=self.distributions,
                                         user_attrs={WORKER: self.worker}, heartbeat=self.heartbeat,
                                         duplicate_attr=DUPLICATE_OF)
                if taken is None:
                    continue  # another worker took it first
                if isinstance(taken, TakenTrial):
                    return taken
                self.duplicates_pruned += 1
                self._requeue_if_orphaned(key)
            # every listed trial was taken by others or was a duplicate: list again

    def pop_population(self, k: int) -> list[TakenTrial]:
        """Take up to ``k`` WAITING trials of the plan that share the optimizer of the oldest one
        (one task and budget: the study's), as :meth:`pop` takes one; [] when none is left.

        On an SQL storage the trials are taken in one transaction
        (:meth:`~sensitivity.study.ledger.TrialLedger.take_up_to`), each RUNNING with its params,
        worker and first heartbeat; duplicates met on the way are finished as PRUNED. Fewer than
        ``k`` are taken when fewer of that optimizer are queued (or other workers took them first).
        """
        if k <= 1:
            trial = self.pop()
            return [] if trial is None else [trial]
        while True:
            oldest = self.ledger.waiting(self._waiting_keys, limit=1)
            if not oldest:
                return []
            optimizer = json.loads(oldest[0][1])["optimizer"]
            waiting = self.ledger.waiting(self._keys_of_optimizer[optimizer], limit=k)
            if not waiting:
                continue  # the oldest was taken by another worker meanwhile: look again
            taken, holders = self.ledger.take_up_to(
                k, waiting, duplicate_holder, distributions=self.distributions, user_attrs={WORKER: self.worker},
                heartbeat=self.heartbeat, duplicate_attr=DUPLICATE_OF)
            if holders:
                self.duplicates_pruned += len(holders)
                mine = {t.trial_id for t in taken}
                keys = {resolve_key(key) for trial_id, key in waiting if trial_id not in mine}
                self._requeue_unheld(keys & set(self._points), self.ledger.point_trials())
            if taken:
                return taken
            # every listed trial was taken by others or was a duplicate: list again

    def _requeue_if_orphaned(self, key: str) -> None:
        """Queue point ``key`` again when no trial holds it any more.

        Where taking a trial and checking its point are separate writes (a journal file), two
        workers that take two trials of one point at the same moment can each see the other's
        RUNNING trial and both stand down. Each checks after its own PRUNED is stored, so the later
        of the two sees both and queues the point again (if both do, the duplicate check settles
        the two new trials as usual); otherwise the point would wait for the next sweep start. (On
        SQL storages the check is in the taking transaction and one of the two always runs.)
        """
        self._requeue_unheld({resolve_key(key)} & set(self._points), self.ledger.point_trials())

    # ---- recovering from dead workers ---------------------------------------------------------
    def fail_stale(self) -> list[int]:
        """Fail RUNNING trials whose heartbeat is older than the grace period; queue their points again.

        Only the worker whose update actually moved a trial to FAIL queues its point, so several
        workers noticing the same dead trial do not flood the queue (a journal storage cannot
        tell them apart; the duplicate check in :meth:`pop` covers that).

        Returns:
            Numbers of the trials this call failed.
        """
        if not self.heartbeat:
            return []
        stale_ids = stale_trial_ids(self.storage, self.study)
        if stale_ids is None:  # a storage with Optuna's public helper only
            optuna.storages.fail_stale_trials(self.study)
            enqueue_missing(self.study, self.plan)
            return []
        failed_ids = [trial_id for trial_id in stale_ids
                      if self.ledger.finish(trial_id, TrialState.FAIL, None, {ERROR: STALE_ERROR})]
        # (a trial not moved here was failed first by another worker, which queues its point)
        if failed_ids:
            self._requeue_points_of(set(failed_ids))
        return [self.storage.get_trial_number_from_id(trial_id) for trial_id in failed_ids]

    def _requeue_points_of(self, trial_ids: set[int]) -> None:
        """Queue again the planned points of ``trial_ids`` that no trial holds any more: only the
        dead trials' own points, so a point whose retries a failing trial used up in this sweep
        stays FAIL (the next sweep start tries it again, as after any error)."""
        trials = self.ledger.point_trials()
        keys = {resolve_key(t.key) for t in trials if t.trial_id in trial_ids}
        self._requeue_unheld(keys & set(self._points), trials)

    def _requeue_unheld(self, keys: set[str], trials: list[PointTrial]) -> None:
        """Queue the planned points ``keys`` that none of the study's ``trials`` holds (COMPLETE,
        RUNNING or WAITING)."""
        held = {resolve_key(t.key) for t in trials if t.state in LIVE_STATES}
        self.ledger.enqueue([(self._points[k], {POINT_KEY: point_key(self._points[k])}) for k in sorted(keys - held)])

    # ---- watching ------------------------------------------------------------------------------
    def progress(self) -> PlanProgress:
        """Counts of planned points by state, and the best complete point (one storage read)."""
        return plan_progress(self.ledger.point_trials(attrs=(DIVERGED,)), self.wanted, self.study.direction)


def plan_progress(trials: list[PointTrial], wanted: set[str], direction: Any) -> PlanProgress:
    """Summarise ``trials`` over the points ``wanted`` (see :class:`PlanProgress`)."""
    minimize = direction == optuna.study.StudyDirection.MINIMIZE
    by_key: dict[str, list[PointTrial]] = {}
    for t in trials:
        key = resolve_key(t.key)
        if key in wanted:
            by_key.setdefault(key, []).append(t)
    prog = PlanProgress(total=len(wanted))
    for group in by_key.values():
        states = {t.state for t in group}
        done = [t for t in group if t.state == TrialState.COMPLETE]
        if done:
            prog.complete += 1
            t = done[0]
            if t.attrs.get(DIVERGED):
                prog.diverged += 1
            elif t.value is not None and math.isfinite(t.value):
                if prog.best is None or (t.value < prog.best if minimize else t.value > prog.best):
                    prog.best, prog.best_trial = t.value, t.number
        elif TrialState.RUNNING in states:
            prog.running += 1
        elif TrialState.WAITING not in states and TrialState.FAIL in states:
            prog.failed += 1
    return prog
