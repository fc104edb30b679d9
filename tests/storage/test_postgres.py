"""A real PostgreSQL server serves a study to several workers (.ci/run starts one on loopback).

Skipped unless ADAMRAG_SENS_TEST_POSTGRES_URL names a database the tests may write to, e.g.
postgresql://postgres@127.0.0.1:5432/adamrag_sens_test.
"""

from __future__ import annotations

import collections
import os
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from sensitivity.records import POINT_KEY
from sensitivity.study.space import plan_points, point_key
from sensitivity.study.spec import StudySpec
from sensitivity.storage import open_storage
from tests.study.test_study_queue import _plan, pop_in_four_processes

URL = os.environ.get("ADAMRAG_SENS_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not URL, reason="ADAMRAG_SENS_TEST_POSTGRES_URL is not set (.ci/run sets it)"),
]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_sweep_with_two_workers_on_postgresql_runs_every_point_once(run_cli, tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = ["sweep", "--optimizers", "adam,nag", "--lr", "1e-3,1e-2,1e-1", "--beta1", "0.9", "--epochs", "1",
            "--storage", URL, "--study", name]
    code, out, err = run_cli(*args, "--workers", "2")
    assert code == 0, err
    assert "2 workers" in out and "6 of 6 complete" in out

    trials = optuna.load_study(study_name=name, storage=open_storage(URL)).get_trials(deepcopy=False)
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), epochs=1)
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan_points(spec)}
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)

    # the report reads the same URL (a bare postgresql:// picks the installed driver)
    code, out, err = run_cli("report", "--storage", URL, "--study", name, "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert (tmp_path / "report" / "report.html").is_file()
    assert len((tmp_path / "report" / "trials.csv").read_text().strip().splitlines()) == 1 + len(trials)


def test_four_processes_popping_one_postgresql_queue_take_each_point_once():
    name = f"q-{uuid.uuid4().hex[:8]}"
    storage = open_storage(URL)
    optuna.create_study(study_name=name, storage=storage)
    plan = _plan(12)
    taken = pop_in_four_processes(URL, name, plan)
    assert len(taken) == len(set(taken)), "a trial was taken by two workers"
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan}
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
