"""The ledgers on Optuna's public storage API: every storage, and a journal file read incrementally.

`APILedger` is the fallback that runs on any storage (one call per row, scans of the study: correct
everywhere, not flat); `JournalLedger` reads a journal's replay one new trial at a time, so its
look-ups do not grow with the study.
"""

from __future__ import annotations

import collections
from collections.abc import Container

import optuna
from optuna.trial import TrialState

from sensitivity.records import POINT_KEY
from sensitivity.storage._optuna import fixed_params, live_trial, record_heartbeat, trial_id_of
from sensitivity.study.ledger_base import TakenTrial, TrialLedger, TrialRow


class APILedger(TrialLedger):
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


class JournalLedger(APILedger):
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

