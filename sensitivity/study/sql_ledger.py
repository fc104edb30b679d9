"""The ledger on an RDB storage: SQLAlchemy Core statements on Optuna's own tables, one transaction a step.

Used only where :func:`sensitivity.storage.ledger_support` says the database's schema is the one
these statements were written for; `ReconnectingSQLLedger` retries each step on a new connection
when a database server drops it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import TrialState

from sensitivity.records import POINT_KEY
from sensitivity.storage._optuna import FIXED_PARAMS_ATTR, rdb_models
from sensitivity.storage.reconnect import reconnecting
from sensitivity.storage.sqlite import SQLITE_DEFERRED
from sensitivity.study.ledger_base import PointTrial, TakenTrial, TrialLedger, TrialRow


def _utcnow_naive() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class SQLLedger(TrialLedger):
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


class ReconnectingSQLLedger(SQLLedger):
    """`SQLLedger` on a database server: each step retried on a new connection while the error
    says the connection was lost, as :class:`ReconnectingRDBStorage` retries Optuna's calls. Each
    step is one transaction, so a failed attempt left nothing; an attempt that committed but whose
    reply was lost makes the retry find the trial no longer WAITING (taken: it goes stale and runs
    again) or no longer RUNNING (finished: :func:`sensitivity.study.trial.run_trial` then reads its
    state)."""

    def remove_session(self) -> None:
        """Nothing to reset: each step checks a connection out of the pool, which drops dead ones."""


for _name in ("waiting", "state_of", "point_trials", "first_distributions", "take", "take_up_to", "report", "finish",
              "enqueue"):
    setattr(ReconnectingSQLLedger, _name, reconnecting(getattr(SQLLedger, _name)))

