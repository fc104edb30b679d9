"""The queue of planned points in an Optuna study: enqueue, pop exactly once, recover from dead workers.

A study's plan (see :mod:`sensitivity.study.space`) is held in storage as Optuna's own queue of
WAITING trials (``Study.enqueue_trial``), each carrying its point's canonical key as the user
attribute ``point_key``. Everything here works through Optuna's storage API, so it is the same on
SQLite, PostgreSQL/MySQL and a journal file, on one machine or many.

Invariants (see :meth:`PointQueue.pop`):

* **A trial is taken once.** A worker takes a WAITING trial by the storage's conditional update
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
import math
from typing import Any, Iterable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from sensitivity.records import DUPLICATE_OF, ERROR, POINT_KEY
from sensitivity.storage import heartbeat_interval, live_trial, record_heartbeat, stale_trial_ids, storage_of, trial_id_of
from sensitivity.study.space import Point, point_key

STALE_ERROR = "worker stopped sending heartbeats (killed or cut off); the point was queued again"


def enqueue_missing(study: optuna.Study, plan: list[Point]) -> tuple[int, int]:
    """Queue every planned point that has no COMPLETE, RUNNING or WAITING trial.

    Returns:
        (points already complete, points newly queued).
    """
    live: set[str] = set()
    complete: set[str] = set()
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get(POINT_KEY)
        if key is None:
            continue
        if t.state == TrialState.COMPLETE:
            complete.add(key)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            live.add(key)
    queued = 0
    for point in plan:
        key = point_key(point)
        if key not in live:
            study.enqueue_trial(point, user_attrs={POINT_KEY: key})
            live.add(key)
            queued += 1
    return sum(point_key(p) in complete for p in plan), queued


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
        study: the study (its storage is used directly).
        plan: the points this worker may run; WAITING trials of other points (from an earlier,
            different search space) are left alone.
    """

    def __init__(self, study: optuna.Study, plan: Iterable[Point]) -> None:
        self.study = study
        self.storage = storage_of(study)  # the storage API is the queue's medium
        self.plan = list(plan)
        self._points = {point_key(p): p for p in self.plan}
        self.wanted = set(self._points)
        self.heartbeat = heartbeat_enabled(self.storage)
        self.duplicates_pruned = 0

    # ---- taking work -------------------------------------------------------------------------
    def pop(self) -> optuna.Trial | None:
        """Take the oldest WAITING trial of the plan that is not a duplicate; None when none is left.

        The trial's heartbeat is recorded before it becomes RUNNING, so a worker killed right
        after taking it still leaves a trial that goes stale (a RUNNING trial without any
        heartbeat would never be detected). Duplicates met on the way are finished as PRUNED.
        """
        while True:
            waiting = [
                t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                if t.user_attrs.get(POINT_KEY) in self.wanted
            ]
            if not waiting:
                return None
            for t in sorted(waiting, key=trial_id_of):
                trial_id = trial_id_of(t)
                if not self._take(trial_id):
                    continue  # another worker took it first
                try:
                    dup = self._duplicate_of(trial_id, t.user_attrs[POINT_KEY])
                    if dup is None:
                        return live_trial(self.study, trial_id)
                    self.storage.set_trial_user_attr(trial_id, DUPLICATE_OF, dup)
                    self.storage.set_trial_state_values(trial_id, state=TrialState.PRUNED)
                    self.duplicates_pruned += 1
                    self._requeue_if_orphaned(t)
                except BaseException:
                    self._abandon(trial_id)
                    raise
                break  # look at the queue afresh after a duplicate
            else:
                continue  # every listed trial was taken by others: list again

    def _requeue_if_orphaned(self, pruned: FrozenTrial) -> None:
        """Queue ``pruned``'s point again when no trial holds it any more.

        Two workers that take two trials of one point at the same moment can each see the other's
        RUNNING trial and both stand down. Each checks after its own PRUNED is stored, so the later
        of the two sees both and queues the point again (if both do, the duplicate check settles
        the two new trials as usual); otherwise the point would wait for the next sweep start.
        """
        key = pruned.user_attrs[POINT_KEY]
        live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        if any(t.user_attrs.get(POINT_KEY) == key and t.state in live for t in self.study.get_trials(deepcopy=False)):
            return
        self.study.enqueue_trial(self._points[key], user_attrs={POINT_KEY: key})

    def _take(self, trial_id: int) -> bool:
        try:
            if self.heartbeat:
                record_heartbeat(self.storage, trial_id)
            return bool(self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING))
        except UpdateFinishedTrialError:
            return False
        except optuna.exceptions.StorageInternalError:
            return False  # e.g. two workers inserting the same heartbeat row at once: let the other have it

    def _abandon(self, trial_id: int) -> None:
        try:
            self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the heartbeat going stale covers it
            pass

    def _duplicate_of(self, trial_id: int, key: str) -> int | None:
        """The number of another trial that holds point ``key``, or None when ``trial_id`` may run it."""
        others = [
            t for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get(POINT_KEY) == key and trial_id_of(t) != trial_id
        ]
        for state in (TrialState.COMPLETE, TrialState.RUNNING):
            for t in others:
                if t.state == state:
                    return t.number
        for t in others:
            if t.state == TrialState.WAITING and trial_id_of(t) < trial_id:
                return t.number
        return None

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
        failed = []
        for trial_id in stale_ids:
            try:
                self.storage.set_trial_user_attr(trial_id, ERROR, STALE_ERROR)
                if self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(self.storage.get_trial_number_from_id(trial_id))
            except UpdateFinishedTrialError:
                pass  # another worker failed it first
        if failed:
            enqueue_missing(self.study, self.plan)
        return failed

    # ---- watching ------------------------------------------------------------------------------
    def progress(self) -> PlanProgress:
        """Counts of planned points by state, and the best complete point (one storage read)."""
        return plan_progress(self.study.get_trials(deepcopy=False), self.wanted, self.study.direction)


def plan_progress(trials: list[FrozenTrial], wanted: set[str], direction: Any) -> PlanProgress:
    """Summarise ``trials`` over the points ``wanted`` (see :class:`PlanProgress`)."""
    minimize = direction == optuna.study.StudyDirection.MINIMIZE
    by_key: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        key = t.user_attrs.get(POINT_KEY)
        if key in wanted:
            by_key.setdefault(key, []).append(t)
    prog = PlanProgress(total=len(wanted))
    for group in by_key.values():
        states = {t.state for t in group}
        done = [t for t in group if t.state == TrialState.COMPLETE]
        if done:
            prog.complete += 1
            t = done[0]
            if t.user_attrs.get("diverged"):
                prog.diverged += 1
            elif t.value is not None and math.isfinite(t.value):
                if prog.best is None or (t.value < prog.best if minimize else t.value > prog.best):
                    prog.best, prog.best_trial = t.value, t.number
        elif TrialState.RUNNING in states:
            prog.running += 1
        elif TrialState.WAITING not in states and TrialState.FAIL in states:
            prog.failed += 1
    return prog
