"""The trial ledger: per-trial bookkeeping in one transaction each, by indexed look-ups.

Every write of the SQL ledger is checked against Optuna's own public API doing the same thing on a
twin study in the same database (Optuna reading both back must see the same trials), the exactly-once
rules against a second "worker" racing for the same trial, and flatness by the query plans SQLite
chooses for the statements the ledger runs (indexed searches, never a scan of the study): no timing
is asserted anywhere.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from sensitivity.storage import _optuna, ledger_schema
from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import DUPLICATE_OF, POINT_KEY, WORKER, param_distributions
from sensitivity.storage import NOTICES, ledger_indexes, ledger_support, live_trial, open_storage, storage_of, trial_id_of
from sensitivity.storage.ledger_schema import _INDEXES
from sensitivity.study.ledger import TakenTrial, TrialRow, open_ledger
from sensitivity.study.queue import PointQueue, duplicate_holder, enqueue_missing
from sensitivity.study.space import point_key

optuna.logging.set_verbosity(optuna.logging.WARNING)

PG_URL = os.environ.get("ADAMRAG_SENS_TEST_POSTGRES_URL")
DISTS = param_distributions(sorted(OPTIMIZERS))
POINTS = [
    {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "seed": 0},
    {"optimizer": "nag", "lr": 0.03, "beta1": 0.8, "seed": 1},
    {"optimizer": "adamrag", "lr": 3e-4, "beta1": 0.95, "beta2": 0.999, "gamma": 0.5, "seed": 0},
]


def _kinds() -> list:
    kinds = ["sqlite", "journal"]
    kinds.append(pytest.param("postgres", marks=pytest.mark.skipif(not PG_URL, reason="no PostgreSQL URL")))
    return kinds


@pytest.fixture(params=_kinds())
def url(request, tmp_path) -> str:
    return {"sqlite": f"sqlite:///{tmp_path}/l.db", "journal": str(tmp_path / "l.log"), "postgres": PG_URL}[request.param]


@pytest.fixture()
def other_tz(monkeypatch):
    """A local time zone far from UTC, so that a datetime stored in the wrong convention shows."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _studies(url: str) -> tuple[optuna.Study, optuna.Study]:
    tag = os.urandom(4).hex()
    store = open_storage(url)
    return (optuna.create_study(study_name=f"ledger-{tag}", storage=store),
            optuna.create_study(study_name=f"optuna-{tag}", storage=store))


def _comparable(t: optuna.trial.FrozenTrial) -> dict:
    return {"number": t.number, "state": t.state, "value": t.value, "params": t.params,
            "distributions": t.distributions, "user_attrs": t.user_attrs, "intermediate_values": t.intermediate_values,
            "fixed_params": t.system_attrs.get("fixed_params")}


def test_the_ledger_writes_what_optunas_own_api_writes(url, other_tz):
    mine, twin = _studies(url)
    ledger = open_ledger(mine)
    assert ledger.enqueue([(p, {POINT_KEY: point_key(p)}) for p in POINTS]) == 3
    for p in POINTS:  # the twin: Optuna's public API, one call per row
        twin.enqueue_trial(p, user_attrs={POINT_KEY: point_key(p)})
    assert [_comparable(t) for t in mine.get_trials()] == [_comparable(t) for t in twin.get_trials()]

    before = datetime.datetime.now()
    for i, p in enumerate(POINTS):
        trial_id = trial_id_of(mine.get_trials()[i])
        taken = ledger.take(trial_id, point_key(p), duplicate_holder, distributions=DISTS,
                            user_attrs={WORKER: "host:1"}, heartbeat=True, duplicate_attr=DUPLICATE_OF)
        assert taken == TakenTrial(trial_id, i, p)
        ledger.report(trial_id, {1: 2.0, 2: float("nan")})
        curve = {"val_loss": [2.0, None, 0.5 + i], "diverged": False}
        assert ledger.finish(trial_id, TrialState.COMPLETE, 0.5 + i, curve, {2: 1.0, 3: float("inf")})

        twin_id = trial_id_of(twin.get_trials()[i])
        twin_store = storage_of(twin)
        twin_store.set_trial_state_values(twin_id, TrialState.RUNNING)
        trial = live_trial(twin, twin_id)
        for name in p:
            trial.suggest_float(name, DISTS[name].low, DISTS[name].high, log=DISTS[name].log) \
                if name not in ("optimizer", "seed") else (
                trial.suggest_categorical(name, DISTS[name].choices) if name == "optimizer"
                else trial.suggest_int(name, DISTS[name].low, DISTS[name].high))
        trial.set_user_attr(WORKER, "host:1")
        for step, value in ((1, 2.0), (2, 1.0), (3, float("inf"))):
            trial.report(value, step)
        for key, value in curve.items():
            trial.set_user_attr(key, value)
        twin.tell(trial, 0.5 + i)
    after = datetime.datetime.now()

    ours, theirs = mine.get_trials(), twin.get_trials()
    assert [_comparable(t) for t in ours] == [_comparable(t) for t in theirs]
    for t in ours:  # local wall-clock times, as Optuna gives them (stored as naive UTC in 5.0)
        slack = datetime.timedelta(seconds=2)
        assert before - slack <= t.datetime_start <= t.datetime_complete <= after + slack


def test_a_trial_is_taken_once_and_finished_once(url):
    study, _ = _studies(url)
    first, second = open_ledger(study), open_ledger(study)  # two workers
    first.enqueue([(POINTS[0], {POINT_KEY: point_key(POINTS[0])})])
    trial_id = trial_id_of(study.get_trials()[0])
    kwargs = dict(distributions=DISTS, user_attrs={}, heartbeat=False, duplicate_attr=DUPLICATE_OF)
    assert isinstance(first.take(trial_id, point_key(POINTS[0]), duplicate_holder, **kwargs), TakenTrial)
    assert second.take(trial_id, point_key(POINTS[0]), duplicate_holder, **kwargs) is None

    # another worker fails it as stale: the late result is refused and nothing of it is written
    assert second.finish(trial_id, TrialState.FAIL, None, {"error": "stale"})
    assert not first.finish(trial_id, TrialState.COMPLETE, 1.0, {"val_loss": [1.0]}, {1: 1.0})
    assert not second.finish(trial_id, TrialState.FAIL, None, {"error": "again"})  # failed once, by one worker
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        first.report(trial_id, {2: 0.5})
    t = study.get_trials()[0]
    assert (t.state, t.value, t.user_attrs, t.intermediate_values) == (TrialState.FAIL, None,
                                                                        {POINT_KEY: point_key(POINTS[0]), "error": "stale"}, {})
    assert first.state_of(trial_id) == TrialState.FAIL


def test_duplicate_rule_prefers_complete_then_running_then_the_older_waiting_trial():
    mine = TrialRow(5, 5, TrialState.RUNNING)
    assert duplicate_holder(mine, []) is None
    assert duplicate_holder(mine, [TrialRow(7, 7, TrialState.WAITING)]) is None  # a younger copy waits
    assert duplicate_holder(mine, [TrialRow(3, 3, TrialState.WAITING)]) == 3
    assert duplicate_holder(mine, [TrialRow(3, 3, TrialState.FAIL)]) is None  # a failed one holds nothing
    assert duplicate_holder(mine, [TrialRow(8, 8, TrialState.RUNNING), TrialRow(2, 2, TrialState.COMPLETE)]) == 2


def test_waiting_lists_only_the_plans_points_oldest_first_past_other_plans(url):
    study, _ = _studies(url)
    old = [{"optimizer": "adam", "lr": 10.0 ** -k, "seed": 0} for k in range(1, 10)]
    new = [{"optimizer": "nag", "lr": 10.0 ** -k, "seed": 0} for k in range(1, 4)]
    ledger = open_ledger(study)
    ledger.enqueue([(p, {POINT_KEY: point_key(p)}) for p in old + new])  # an older plan's points come first
    wanted = {point_key(p) for p in new}
    listed = ledger.waiting(wanted, limit=2)
    numbers = {trial_id_of(t): t.number for t in study.get_trials()}
    assert [numbers[trial_id] for trial_id, _ in listed] == [9, 10]
    assert [key for _, key in listed] == [point_key(p) for p in new[:2]]


def test_the_journal_ledger_sees_trials_queued_by_another_process_after_it_started(tmp_path):
    url = str(tmp_path / "j.log")
    study = optuna.create_study(study_name="j", storage=open_storage(url))
    ledger = open_ledger(study)
    assert type(ledger).__name__ == "JournalLedger" and ledger.waiting({"x"}) == []
    elsewhere = optuna.load_study(study_name="j", storage=open_storage(url))  # another process's replay
    optuna.create_study(study_name="other", storage=open_storage(url)).enqueue_trial({"lr": 1.0},
                                                                                     user_attrs={POINT_KEY: "x"})
    enqueue_missing(elsewhere, POINTS)
    keys = {point_key(p) for p in POINTS}
    assert [k for _, k in ledger.waiting(keys | {"x"})] == [point_key(p) for p in POINTS]  # not the other study's
    queue = PointQueue(study, POINTS)
    assert [queue.pop().number for _ in range(3)] == [0, 1, 2] and queue.pop() is None


@pytest.mark.slow
def test_the_indexes_exist_once_and_leave_optuna_working(tmp_path):
    url = f"sqlite:///{tmp_path}/ix.db"
    open_storage(url), open_storage(url)  # twice: created once, then left alone
    assert ledger_indexes(open_storage(url, read_only=True)) == set(_INDEXES)
    plain = optuna.create_study(study_name="plain", storage=url)  # Optuna on its own, no wrapper
    plain.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    assert len(optuna.load_study(study_name="plain", storage=url).trials) == 3


def test_a_read_only_open_adds_no_index(tmp_path):
    path = tmp_path / "ro.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{path}")  # made by Optuna alone
    open_storage(f"sqlite:///{path}", read_only=True)
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not names & set(_INDEXES)


def _plans(con: sqlite3.Connection, statements: list[tuple[str, tuple]]) -> list[str]:
    lines = []
    for sql, params in statements:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            rows = con.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            lines += [f"{row[-1]}    <- {sql[:80]}" for row in rows]
    return lines


def test_taking_and_finishing_a_trial_search_indexes_and_never_scan_the_study(tmp_path):
    from sqlalchemy import event

    path = tmp_path / "plan.db"
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{path}"))
    plan = [{"optimizer": "adam", "lr": 10.0 ** (-6 + k / 50), "seed": 0} for k in range(300)]
    enqueue_missing(study, plan)
    queue = PointQueue(study, plan)
    statements: list[tuple[str, tuple]] = []
    engine = storage_of(study)._backend.engine  # noqa: SLF001 - the test watches the ledger's SQL
    listener = lambda conn, cursor, sql, params, context, many: statements.append((sql, params if not many else params[0]))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(3):
            taken = queue.pop()
            queue.ledger.report(taken.trial_id, {1: 0.5})
            assert queue.ledger.finish(taken.trial_id, TrialState.COMPLETE, 0.5, {"val_loss": [0.5]}, {2: 0.4})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    plans = _plans(sqlite3.connect(path), statements)
    assert any("ix_adamrag_sens_point_key" in p for p in plans), plans  # the duplicate check
    assert any("ix_adamrag_sens_trials_study_state" in p for p in plans), plans  # the next queued trial
    scans = [p for p in plans if p.startswith("SCAN")]
    assert not scans, scans


def test_on_a_schema_revision_it_was_not_written_for_the_public_api_ledger_runs_the_queue(tmp_path, monkeypatch):
    monkeypatch.setattr(_optuna, "SQL_LEDGER_SCHEMAS", ("v0.0.0.x",))
    study = optuna.create_study(study_name="api", storage=open_storage(f"sqlite:///{tmp_path}/api.db"))
    assert type(open_ledger(study)).__name__ == "APILedger" and open_ledger(study).kind == "api"
    plan = POINTS[:2]
    enqueue_missing(study, plan)
    study.enqueue_trial(plan[0], user_attrs={POINT_KEY: point_key(plan[0])})  # a duplicate enqueue
    queue = PointQueue(study, plan)
    first = queue.pop()
    assert first.params == plan[0]
    assert queue.ledger.finish(first.trial_id, TrialState.COMPLETE, 1.0, {"diverged": False}, {1: 1.0})
    second = queue.pop()
    assert second.params == plan[1] and queue.pop() is None  # the duplicate was pruned on the way
    trials = study.get_trials()
    assert trials[2].state == TrialState.PRUNED and trials[2].user_attrs[DUPLICATE_OF] == 0
    assert (trials[0].value, trials[0].intermediate_values) == (1.0, {1: 1.0})


# ---- which ledger runs: decided by the schema the ledger depends on, once per storage ----------------


def test_the_indexed_sql_ledger_runs_on_the_schema_it_was_written_for_whatever_optunas_version(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/s.db"))
    stored = sqlite3.connect(tmp_path / "s.db").execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert stored == "v3.2.0.a"  # what Optuna 5.0.0 and 5.1.0 both write
    ledger = open_ledger(study)
    assert (type(ledger).__name__, ledger.kind) == ("SQLLedger", "sql")
    assert ledger.support.flat and ledger.support.notice() is None and "v3.2.0.a" in ledger.reason


def _stamp(path, revision: str) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    con.close()


def test_an_unknown_schema_revision_gets_the_api_ledger_announced_in_one_line_and_the_check_writes_nothing(tmp_path):
    from tests.helpers.sqlite_files import database_digest

    path = tmp_path / "future.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{path}")  # made by Optuna alone
    _stamp(path, "v9.9.9.z")  # as a future Optuna whose schema the ledger was not written for would stamp it
    before = database_digest(path)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}", skip_compatibility_check=True, skip_table_creation=True)
    support = ledger_support(storage)
    assert (support.kind, support.flat) == ("api", False)
    assert "v9.9.9.z" in support.reason and "v3.2.0.a" in support.reason
    notice = support.notice()
    assert "\n" not in notice and "v9.9.9.z" in notice and "grows with the study" in notice
    study = optuna.load_study(study_name="s", storage=storage)
    ledger = open_ledger(study)
    assert (type(ledger).__name__, ledger.kind, ledger.reason) == ("APILedger", "api", support.reason)
    storage.engine.dispose()
    assert database_digest(path) == before


def test_the_check_runs_once_per_storage(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path}/once.db")
    study = optuna.create_study(study_name="s", storage=storage)
    calls = []
    real = ledger_schema.sql_schema_problem
    monkeypatch.setattr(ledger_schema, "sql_schema_problem", lambda b: calls.append(b) or real(b))
    ledger_schema._SUPPORT.clear()
    kinds = {open_ledger(study).kind for _ in range(5)}
    assert kinds == {"sql"} and len(calls) == 1


def test_a_column_the_ledger_writes_missing_from_optunas_models_gets_the_api_ledger(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path}/col.db")
    monkeypatch.setitem(_optuna._LEDGER_COLUMNS, "trials", ("trial_id", "queue_position"))
    ledger_schema._SUPPORT.clear()
    support = ledger_support(storage)
    assert support.kind == "api" and "queue_position" in support.reason


def test_a_database_without_the_ledgers_indexes_is_announced(tmp_path):
    path = tmp_path / "noix.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{path}")  # Optuna alone: no ledger indexes
    storage = open_storage(f"sqlite:///{path}", read_only=True)  # a reader adds none
    support = ledger_support(storage)
    assert (support.kind, support.flat) == ("sql", False)
    assert "ix_adamrag_sens_point_key" in support.reason and "grows with the study" in support.notice()


def test_the_sweep_announces_the_slow_ledger_once_at_its_start(tmp_path, monkeypatch):
    import logging

    from sensitivity.study.spec import StudySpec
    from sensitivity.study.sweep import prepare_sweep

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Keep()
    logging.getLogger(NOTICES).addHandler(handler)
    try:
        spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2), beta1=(0.9,), epochs=1,
                         storage=f"sqlite:///{tmp_path}/fast.db", study_name="s")
        prepare_sweep(spec)
        assert not [x for x in lines if "ledger" in x]  # the indexed ledger: nothing to say
        monkeypatch.setattr(_optuna, "SQL_LEDGER_SCHEMAS", ("v0.0.0.x",))
        prepare_sweep(StudySpec(**{**spec.__dict__, "storage": f"sqlite:///{tmp_path}/slow.db"}))
    finally:
        logging.getLogger(NOTICES).removeHandler(handler)
    said = [x for x in lines if "ledger" in x]
    assert len(said) == 1 and "v3.2.0.a" in said[0] and "grows with the study" in said[0], said


# ---- a population: up to K queued trials of one optimizer at once --------------------------------


def test_taking_up_to_k_trials_of_one_optimizer_takes_them_in_queue_order_and_prunes_duplicates(url):
    study, _ = _studies(url)
    ledger = open_ledger(study)
    adam = [{"optimizer": "adam", "lr": lr, "beta1": 0.9, "beta2": 0.999, "seed": 0} for lr in (1e-4, 1e-3, 1e-2, 1e-1)]
    nag = POINTS[2]
    queued = [adam[0], adam[0], nag, adam[1], adam[2], adam[3]]  # a duplicate of adam[0], another optimizer between
    ledger.enqueue([(p, {POINT_KEY: point_key(p)}) for p in queued])
    keys = {point_key(p) for p in adam}
    waiting = ledger.waiting(keys, limit=10)
    assert [key for _, key in waiting] == [point_key(p) for p in (adam[0], adam[0], adam[1], adam[2], adam[3])]
    taken, holders = ledger.take_up_to(3, waiting, duplicate_holder, distributions=DISTS,
                                       user_attrs={WORKER: "pop:1"}, heartbeat=False, duplicate_attr=DUPLICATE_OF)
    assert [t.params for t in taken] == [adam[0], adam[1], adam[2]]
    assert holders == [0]  # the second copy of adam[0] is held by trial #0
    by_number = {t.number: t for t in optuna.load_study(study_name=study.study_name, storage=storage_of(study)).get_trials()}
    assert [by_number[n].state for n in range(6)] == [TrialState.RUNNING, TrialState.PRUNED, TrialState.WAITING,
                                                     TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]
    assert by_number[1].user_attrs[DUPLICATE_OF] == 0
    assert [by_number[t.number].params for t in taken] == [adam[0], adam[1], adam[2]]
    assert all(by_number[t.number].user_attrs[WORKER] == "pop:1" for t in taken)
    # a second population finds only what is left; trials taken already are not taken again
    rest, _ = open_ledger(study).take_up_to(3, waiting, duplicate_holder, distributions=DISTS, user_attrs={},
                                            heartbeat=False, duplicate_attr=DUPLICATE_OF)
    assert [t.params for t in rest] == [adam[3]]


def test_on_sql_a_population_is_taken_whole_or_not_at_all(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/pop.db"))
    ledger = open_ledger(study)
    plan = POINTS[:3]
    ledger.enqueue([(p, {POINT_KEY: point_key(p)}) for p in plan])
    seen = []

    def fails_at_the_third(mine, others):
        seen.append(mine.number)
        if len(seen) == 3:
            raise RuntimeError("the worker died while taking its population")
        return None

    with pytest.raises(RuntimeError):
        ledger.take_up_to(3, ledger.waiting({point_key(p) for p in plan}), fails_at_the_third, distributions=DISTS,
                          user_attrs={}, heartbeat=True, duplicate_attr=DUPLICATE_OF)
    trials = study.get_trials()
    assert seen == [0, 1, 2] and [t.state for t in trials] == [TrialState.WAITING] * 3
    assert all(t.params == {} and t.user_attrs == {POINT_KEY: point_key(p)} for t, p in zip(trials, plan))
