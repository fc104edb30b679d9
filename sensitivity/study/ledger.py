"""The trial ledger: the study queue's engine, a worker's per-trial reads and writes of one study.

A worker's bookkeeping per trial is: find the oldest queued trial of its plan, take it, check that
no other trial holds the same point, record the params and the worker, and at the end record the
result. Through Optuna's public API each of these lists the whole study or commits one row at a
time, so a trial's bookkeeping grew with the study and cost dozens of commits. A ledger does each
step as one indexed look-up or one transaction. :func:`open_ledger` picks, by
:func:`sensitivity.storage.ledger_support` (checked once per storage):

* `_SQLLedger` for an RDB storage whose schema it was written for: SQLAlchemy Core statements on
  Optuna's own tables (their definitions are imported from Optuna, so column types, enums and
  dialects are Optuna's), one transaction to take a trial and one to finish it. Two indexes make
  the look-ups independent of the study's size (:func:`sensitivity.storage.ensure_indexes`).
* `_JournalLedger` for a journal file: Optuna's in-memory replay, read incrementally (trials are
  numbered in the order the log holds them, so only trials newer than the last seen are read).
* `_APILedger` for anything else (or another schema revision): Optuna's public API, one call per
  row, and scans of the study; correct everywhere, not flat. The sweep announces it.

Its uses of Optuna's private API (table models, trial ids, queued params) go through
:mod:`sensitivity.storage._optuna`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.trial import TrialState

from sensitivity.records import POINT_KEY
from sensitivity.storage._optuna import (
    FIXED_PARAMS_ATTR, backend_of, fixed_params, live_trial, rdb_models, record_heartbeat, storage_of, study_id_of,
    trial_id_of,
)
from sensitivity.storage.ledger_schema import LedgerSupport, ledger_support
from sensitivity.storage.reconnect import ReconnectingRDBStorage, reconnecting
from sensitivity.storage.sqlite import SQLITE_DEFERRED


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


def _utcnow_naive() -> "datetime.datetime":
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class TrialLedger:
    """Per-trial reads and writes of one study's queue; see :func:`open_ledger`.

    Every method costs the same whatever the number of trials in the study (except on
    `_APILedger`, the fallback). Writes that belong together are one transaction where the
    storage has transactions.
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


class _APILedger(TrialLedger):
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


class _JournalLedger(_APILedger):
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


class _SQLLedger(TrialLedger):
    """The ledger on an RDB storage: SQLAlchemy Core on Optuna's tables, one transaction per step.

    The table objects are Optuna's own (its RDB models, private: :func:`sensitivity.storage._optuna.rdb_models`),
    so enum columns, float types and dialect differences are handled as Optuna handles them; what is written is what Optuna's RDBStorage would write for the same calls (checked by
    tests/study/test_ledger.py against Optuna's public API reading it back). Exactly once rests on
    conditional updates: a trial moves WAITING -> RUNNING, and RUNNING -> finished, only in an
    ``UPDATE ... WHERE state = ...`` that one transaction wins (row locks on PostgreSQL/MySQL,
    ``BEGIN IMMEDIATE`` on SQLite). Statements are built once per ledger, with bound parameters,
    so a trial's bookkeeping pays neither statement construction nor SQL compilation.
    """

    _BATCH = 500
    KIND = "sql"

    def __init__(self, study: optuna.Study, backend: Any) -> None:
        super().__init__(study)
        models = rdb_models()  # Optuna's table definitions
        from sqlalchemy import and_, bindparam, delete, func, insert, select, text, update

        self.engine = backend.engine
        self._models = models
        t = self.trials = models.TrialModel.__table__
        a = self.user_attrs = models.TrialUserAttributeModel.__table__
        sa = self.system_attrs = models.TrialSystemAttributeModel.__table__
        self.params = models.TrialParamModel.__table__
        iv = self.intermediate = models.TrialIntermediateValueModel.__table__
        v = self.values = models.TrialValueModel.__table__
        hb = self.heartbeats = models.TrialHeartbeatModel.__table__
        self.studies = models.StudyModel.__table__
        self._with_lock = self.engine.dialect.name != "sqlite"  # SQLite: BEGIN IMMEDIATE locks already
        tid = bindparam("tid")
        self._q_waiting = (
            select(t.c.trial_id, a.c.value_json)
            .join(a, and_(a.c.trial_id == t.c.trial_id, a.c.key == POINT_KEY))
            .where(t.c.study_id == bindparam("sid"), t.c.state == TrialState.WAITING, t.c.trial_id > bindparam("after"))
            .order_by(t.c.trial_id).limit(bindparam("n"))
        )
        # the literal key lets SQLite use the partial index ix_adamrag_sens_point_key
        self._q_point = text(
            "SELECT t.trial_id, t.number, t.state FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id "
            f"WHERE a.key = '{POINT_KEY}' AND a.value_json = :value AND t.study_id = :sid"
        )
        self._q_state = select(t.c.state).where(t.c.trial_id == tid)
        self._q_fixed = select(sa.c.value_json).where(sa.c.trial_id == tid, sa.c.key == FIXED_PARAMS_ATTR)
        self._u_take = (update(t).where(t.c.trial_id == tid, t.c.state == TrialState.WAITING)
                        .values(state=TrialState.RUNNING, datetime_start=bindparam("now")))
        self._u_finish = (update(t).where(t.c.trial_id == tid, t.c.state == TrialState.RUNNING)
                          .values(state=bindparam("new_state", type_=t.c.state.type), datetime_complete=bindparam("now")))
        self._u_pruned = (update(t).where(t.c.trial_id == tid)
                          .values(state=TrialState.PRUNED, datetime_complete=bindparam("now")))
        self._d_attrs = delete(a).where(a.c.trial_id == tid, a.c.key.in_(bindparam("keys", expanding=True)))
        self._i_attrs = insert(a)
        self._i_params = insert(self.params)
        self._d_heartbeat = delete(hb).where(hb.c.trial_id == tid)
        # as RDBStorage.record_heartbeat: the database's clock
        self._i_heartbeat = insert(hb).values(trial_id=tid, heartbeat=func.current_timestamp())
        self._d_intermediate = delete(iv).where(iv.c.trial_id == tid, iv.c.step.in_(bindparam("steps", expanding=True)))
        self._i_intermediate = insert(iv)
        self._d_value = delete(v).where(v.c.trial_id == tid)
        self._i_value = insert(v)

    # ---- reading -------------------------------------------------------------------------------
    def _read(self) -> Any:
        """A connection for reads: on SQLite a deferred transaction, which takes no write lock."""
        return self.engine.connect().execution_options(**{SQLITE_DEFERRED: True})

    def waiting(self, keys: Container[str], limit: int = 4) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        after = -1
        with self._read() as conn:
            while len(out) < limit:  # pages past WAITING trials of other plans, if any
                rows = conn.execute(self._q_waiting, {"sid": self.study_id, "after": after, "n": limit}).all()
                for trial_id, value_json in rows:
                    key = json.loads(value_json)
                    if key in keys and len(out) < limit:
                        out.append((trial_id, key))
                if len(rows) < limit:
                    break
                after = rows[-1][0]
        return out

    def _trials_of_point(self, conn: Any, key: str) -> list[TrialRow]:
        rows = conn.execute(self._q_point, {"value": json.dumps(key), "sid": self.study_id}).all()
        return [TrialRow(r[0], r[1], TrialState[r[2]]) for r in rows]

    def state_of(self, trial_id: int) -> TrialState:
        with self._read() as conn:
            return conn.execute(self._q_state, {"tid": trial_id}).scalar()

    def point_trials(self, attrs: tuple[str, ...] = (), planned_only: bool = True) -> list[PointTrial]:
        from sqlalchemy import and_, select

        t, a, v = self.trials, self.user_attrs, self.values
        extra = [a.alias(f"attr{i}") for i in range(len(attrs))]
        on_key = and_(a.c.trial_id == t.c.trial_id, a.c.key == POINT_KEY)
        query = select(a.c.value_json, t.c.trial_id, t.c.number, t.c.state, v.c.value, v.c.value_type,
                       *(x.c.value_json for x in extra)).select_from(t)
        query = (query.join(a, on_key) if planned_only else query.outerjoin(a, on_key))
        query = query.outerjoin(v, and_(v.c.trial_id == t.c.trial_id, v.c.objective == 0))
        for x, name in zip(extra, attrs):
            query = query.outerjoin(x, and_(x.c.trial_id == t.c.trial_id, x.c.key == name))
        with self._read() as conn:
            rows = conn.execute(query.where(t.c.study_id == self.study_id)).all()
        to_value = self._models.TrialValueModel.stored_repr_to_value
        out = []
        for row in rows:
            value = to_value(row[4], row[5]) if row[5] is not None else None
            found = {name: json.loads(raw) for name, raw in zip(attrs, row[6:]) if raw is not None}
            key = json.loads(row[0]) if row[0] is not None else None
            out.append(PointTrial(key, row[1], row[2], row[3], value, found))
        return out

    def first_distributions(self) -> dict[str, Any]:
        from optuna.distributions import json_to_distribution
        from sqlalchemy import func, select

        p, t = self.params, self.trials
        first = (select(func.min(p.c.param_id)).join(t, t.c.trial_id == p.c.trial_id)
                 .where(t.c.study_id == self.study_id).group_by(p.c.param_name))
        with self._read() as conn:
            rows = conn.execute(select(p.c.param_name, p.c.distribution_json).where(p.c.param_id.in_(first))).all()
        return {name: json_to_distribution(text) for name, text in rows}

    # ---- writing -------------------------------------------------------------------------------
    def _set_attrs(self, conn: Any, trial_id: int, attrs: dict[str, Any]) -> None:
        if not attrs:
            return
        conn.execute(self._d_attrs, {"tid": trial_id, "keys": list(attrs)})
        conn.execute(self._i_attrs, [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                                     for k, v in attrs.items()])

    def _set_intermediate(self, conn: Any, trial_id: int, values: dict[int, float]) -> None:
        if not values:
            return
        to_stored = self._models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
        conn.execute(self._d_intermediate, {"tid": trial_id, "steps": [int(s) for s in values]})
        rows = []
        for step, value in sorted(values.items()):
            stored, kind = to_stored(float(value))
            rows.append({"trial_id": trial_id, "step": int(step), "intermediate_value": stored,
                         "intermediate_value_type": kind})
        conn.execute(self._i_intermediate, rows)

    def take(self, trial_id, key, decide, *, distributions, user_attrs, heartbeat, duplicate_attr):
        with self.engine.begin() as conn:
            return self._take_in(conn, trial_id, key, decide, distributions, user_attrs, heartbeat, duplicate_attr)

    def take_up_to(self, k, waiting, decide, *, distributions, user_attrs, heartbeat, duplicate_attr):
        taken: list[TakenTrial] = []
        holders: list[int] = []
        with self.engine.begin() as conn:  # one transaction: the population is taken whole or not at all
            for trial_id, key in waiting:
                if len(taken) >= k:
                    break
                got = self._take_in(conn, trial_id, key, decide, distributions, user_attrs, heartbeat, duplicate_attr)
                if isinstance(got, TakenTrial):
                    taken.append(got)
                elif got is not None:
                    holders.append(got)
        return taken, holders

    def _take_in(self, conn, trial_id, key, decide, distributions, user_attrs, heartbeat, duplicate_attr):
        """:meth:`take`'s writes on the open transaction ``conn``."""
        from optuna.distributions import distribution_to_json

        now = _utcnow_naive()
        if conn.execute(self._u_take, {"tid": trial_id, "now": now}).rowcount != 1:
            return None  # another worker took it first
        rows = self._trials_of_point(conn, key)
        mine = next(r for r in rows if r.trial_id == trial_id)
        holder = decide(mine, [r for r in rows if r.trial_id != trial_id])
        if holder is not None:
            self._set_attrs(conn, trial_id, {duplicate_attr: holder})
            conn.execute(self._u_pruned, {"tid": trial_id, "now": now})
            return holder
        if heartbeat:
            conn.execute(self._d_heartbeat, {"tid": trial_id})
            conn.execute(self._i_heartbeat, {"tid": trial_id})
        fixed_json = conn.execute(self._q_fixed, {"tid": trial_id}).scalar()
        fixed = json.loads(fixed_json) if fixed_json else {}
        params = {name: fixed[name] for name in distributions if name in fixed}
        if params:
            conn.execute(self._i_params, [
                {"trial_id": trial_id, "param_name": name,
                 "param_value": distributions[name].to_internal_repr(value),
                 "distribution_json": distribution_to_json(distributions[name])}
                for name, value in params.items()
            ])
        self._set_attrs(conn, trial_id, user_attrs)
        return TakenTrial(trial_id, mine.number, params)

    def report(self, trial_id: int, values: dict[int, float]) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        if not values:
            return
        with self.engine.begin() as conn:
            query = self._q_state.with_for_update() if self._with_lock else self._q_state
            state = conn.execute(query, {"tid": trial_id}).scalar()
            if state != TrialState.RUNNING:
                raise UpdateFinishedTrialError(f"trial id {trial_id} is {state.name if state else 'missing'}, not RUNNING")
            self._set_intermediate(conn, trial_id, values)

    def finish(self, trial_id, state, value, user_attrs, intermediate_values=None):
        with self.engine.begin() as conn:
            moved = conn.execute(self._u_finish, {"tid": trial_id, "new_state": state, "now": _utcnow_naive()})
            if moved.rowcount != 1:
                return False
            self._set_attrs(conn, trial_id, user_attrs)
            self._set_intermediate(conn, trial_id, intermediate_values or {})
            if value is not None:
                stored, kind = self._models.TrialValueModel.value_to_stored_repr(float(value))
                conn.execute(self._d_value, {"tid": trial_id})
                conn.execute(self._i_value, {"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
        return True

    def enqueue(self, points: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """All points in one transaction, numbered as Optuna numbers trials (the count of the
        study's trials before each), under the lock Optuna's ``create_new_trial`` takes on the study."""
        from sqlalchemy import func, insert, select

        if not points:
            return 0
        t = self.trials
        with self.engine.begin() as conn:
            lock = select(self.studies.c.study_id).where(self.studies.c.study_id == self.study_id)
            conn.execute(lock.with_for_update() if self._with_lock else lock)
            base = conn.execute(select(func.count(t.c.trial_id)).where(t.c.study_id == self.study_id)).scalar()
            for start in range(0, len(points), self._BATCH):
                conn.execute(insert(t), [{"number": base + i, "study_id": self.study_id, "state": TrialState.WAITING,
                                          "datetime_start": None, "datetime_complete": None}
                                         for i in range(start, min(start + self._BATCH, len(points)))])
            ids = dict(conn.execute(select(t.c.number, t.c.trial_id).where(
                t.c.study_id == self.study_id, t.c.number >= base)).all())
            system_rows, user_rows = [], []
            for i, (params, attrs) in enumerate(points):
                trial_id = ids[base + i]
                system_rows.append({"trial_id": trial_id, "key": FIXED_PARAMS_ATTR, "value_json": json.dumps(params)})
                user_rows += [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
            for table, rows in ((self.system_attrs, system_rows), (self.user_attrs, user_rows)):
                for start in range(0, len(rows), self._BATCH):
                    conn.execute(insert(table), rows[start : start + self._BATCH])
        return len(points)


class _ReconnectingSQLLedger(_SQLLedger):
    """`_SQLLedger` on a database server: each step retried on a new connection while the error
    says the connection was lost, as :class:`ReconnectingRDBStorage` retries Optuna's calls. Each
    step is one transaction, so a failed attempt left nothing; an attempt that committed but whose
    reply was lost makes the retry find the trial no longer WAITING (taken: it goes stale and runs
    again) or no longer RUNNING (finished: :func:`sensitivity.study.trial.run_trial` then reads its
    state)."""

    def remove_session(self) -> None:
        """Nothing to reset: each step checks a connection out of the pool, which drops dead ones."""


for _name in ("waiting", "state_of", "point_trials", "first_distributions", "take", "take_up_to", "report", "finish",
              "enqueue"):
    setattr(_ReconnectingSQLLedger, _name, reconnecting(getattr(_SQLLedger, _name)))


def open_ledger(study: optuna.Study) -> TrialLedger:
    """The :class:`TrialLedger` for ``study``'s storage, chosen by :func:`ledger_support` (its
    ``kind`` and ``reason`` are the ledger's ``kind`` and ``reason``)."""
    storage = storage_of(study)
    support = ledger_support(storage)
    if support.kind == "sql":
        backend = backend_of(storage)
        ledger: TrialLedger = (_ReconnectingSQLLedger if isinstance(backend, ReconnectingRDBStorage) else _SQLLedger)(
            study, backend)
    elif support.kind == "journal":
        ledger = _JournalLedger(study)
    else:
        ledger = _APILedger(study)
    return ledger
