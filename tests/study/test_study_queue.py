"""The queue of planned points in storage: taken once, run once, recovered from dead workers.

No training here: trials are taken from the queue and finished by hand, so the storage logic is
checked on its own, on SQLite and on a journal file.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from sensitivity.errors import UserError
from sensitivity.records import DUPLICATE_OF, POINT_KEY
from sensitivity.study.queue import PlanStart, PointQueue, enqueue_missing
from sensitivity.study.sweep import study_distributions
from sensitivity.study.space import point_key
from sensitivity.storage import open_storage
from tests.conftest import HUNG_S

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _plan(n: int) -> list[dict]:
    return [{"optimizer": "adam", "lr": 10.0 ** (-5 + 4 * i / max(1, n - 1)), "seed": 0} for i in range(n)]


@pytest.fixture(params=["sqlite", "journal"])
def storage_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path}/q.db" if request.param == "sqlite" else str(tmp_path / "q.log")


def _new_study(url: str, name: str = "q") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=open_storage(url))


def pop_in_four_processes(url: str, name: str, plan: list[dict]) -> list[int]:
    """Four processes enqueue ``plan`` into study ``name`` at once, then pop and finish trials until
    none is left; returns the trial numbers each took (all together)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _POP_AND_FINISH, url, json.dumps(plan), name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=HUNG_S) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert not any("locked" in err for _, err in outputs)
    return [n for out, _ in outputs for n in json.loads(out)]


_POP_AND_FINISH = textwrap.dedent("""
    import json, sys, optuna
    from optuna.trial import TrialState
    from sensitivity.study.queue import PointQueue, enqueue_missing
    from sensitivity.storage import open_storage
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url, plan, name = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    enqueue_missing(study, plan)          # all four enqueue the same plan at once: duplicates
    queue, taken = PointQueue(study, plan), []
    while (trial := queue.pop()) is not None:
        taken.append(trial.number)
        study.tell(trial.number, 0.0)
    print(json.dumps(taken))
""")


@pytest.mark.slow
def test_four_processes_enqueueing_and_popping_at_once_run_each_point_exactly_once(storage_url):
    plan = _plan(30)
    _new_study(storage_url)
    taken = pop_in_four_processes(storage_url, "q", plan)
    assert len(taken) == len(set(taken)), "a trial was taken by two workers"

    trials = optuna.load_study(study_name="q", storage=open_storage(storage_url)).get_trials(deepcopy=False)
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan}
    by_number = {t.number: t for t in trials}
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        if t.state == TrialState.PRUNED:  # a duplicate enqueue, stood down without running
            holder = by_number[t.user_attrs[DUPLICATE_OF]]
            assert holder.user_attrs[POINT_KEY] == t.user_attrs[POINT_KEY]


def test_a_second_trial_of_a_point_is_pruned_as_a_duplicate(storage_url):
    study = _new_study(storage_url)
    plan = _plan(1)
    key = point_key(plan[0])
    for _ in range(2):  # two workers enqueued the same missing point
        study.enqueue_trial(plan[0], user_attrs={POINT_KEY: key})
    first = PointQueue(study, plan).pop()
    assert first is not None and first.number == 0
    assert PointQueue(study, plan).pop() is None  # the other copy is a duplicate of the running trial
    dup = study.get_trials(deepcopy=False)[1]
    assert dup.state == TrialState.PRUNED and dup.user_attrs[DUPLICATE_OF] == 0

    study.tell(first.number, 1.0)
    study.enqueue_trial(plan[0], user_attrs={POINT_KEY: key})  # late duplicate after completion
    assert PointQueue(study, plan).pop() is None
    assert study.get_trials(deepcopy=False)[2].state == TrialState.PRUNED
    assert enqueue_missing(study, plan) == PlanStart(total=1, complete=1)  # complete, nothing queued again


def test_two_workers_that_both_stand_down_leave_their_point_queued(storage_url):
    """The race of two workers taking two trials of one point at once, each seeing the other's
    RUNNING trial: both prune their own, and the later one must queue the point again (seen on
    PostgreSQL under load as a point that no trial completed)."""
    study = _new_study(storage_url)
    plan = _plan(1)
    key = point_key(plan[0])
    study.enqueue_trial(plan[0], user_attrs={POINT_KEY: key})
    study.enqueue_trial(plan[0], user_attrs={POINT_KEY: key})
    storage = study._storage
    t0, t1 = study.get_trials(deepcopy=False)
    storage.set_trial_state_values(t1._trial_id, state=TrialState.RUNNING)  # worker B took t1

    worker_a = PointQueue(study, plan)
    assert worker_a.pop() is None  # A took t0, saw B's RUNNING t1, stood down
    assert study.get_trials(deepcopy=False)[0].state == TrialState.PRUNED

    # B checked at the same moment and saw A's t0 RUNNING: it stands down too
    worker_b = PointQueue(study, plan)
    storage.set_trial_user_attr(t1._trial_id, DUPLICATE_OF, 0)
    storage.set_trial_state_values(t1._trial_id, state=TrialState.PRUNED)
    worker_b._requeue_if_orphaned(key)

    trial = worker_b.pop()
    assert trial is not None and trial.number == 2 and trial.params == plan[0]
    assert study.get_trials(deepcopy=False)[2].user_attrs[POINT_KEY] == key
    study.tell(trial.number, 0.5)
    assert enqueue_missing(study, plan) == PlanStart(total=1, complete=1)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.PRUNED, TrialState.PRUNED,
                                                                   TrialState.COMPLETE]


def test_waiting_points_of_an_older_plan_are_left_alone(storage_url):
    study = _new_study(storage_url)
    old_plan, new_plan = _plan(3), _plan(3)[1:]
    enqueue_missing(study, old_plan)
    queue = PointQueue(study, new_plan)
    taken = []
    while (trial := queue.pop()) is not None:
        taken.append(trial.number)
        study.tell(trial.number, 0.0)
    assert taken == [1, 2]
    assert study.get_trials(deepcopy=False)[0].state == TrialState.WAITING


@pytest.mark.slow
def test_a_trial_whose_heartbeat_stops_is_failed_and_queued_again_once(storage_url, monkeypatch):
    monkeypatch.setenv("ADAMRAG_SENS_HEARTBEAT_S", "1")
    monkeypatch.setenv("ADAMRAG_SENS_GRACE_S", "600")
    patient = optuna.load_study(study_name=_new_study(storage_url).study_name, storage=open_storage(storage_url))
    monkeypatch.setenv("ADAMRAG_SENS_GRACE_S", "1.5")
    study = optuna.load_study(study_name="q", storage=open_storage(storage_url))
    plan = _plan(3)
    enqueue_missing(study, plan)
    dead = PointQueue(study, plan).pop()  # a worker takes trial 0 and is killed: no more heartbeats
    assert dead is not None
    used_up = PointQueue(study, plan).pop()  # a point whose trial raised and used up its retries
    study.tell(used_up.number, state=TrialState.FAIL)
    assert PointQueue(patient, plan).fail_stale() == []  # a heartbeat younger than the grace is not stale
    time.sleep(2.6)  # at least this long: older than the 1.5 s grace (SQLite's clock has whole seconds)
    alive, other = PointQueue(study, plan), PointQueue(study, plan)
    assert alive.fail_stale() == [dead.number]
    assert other.fail_stale() == []  # a second worker noticing it does not queue it again
    trials = study.get_trials(deepcopy=False)
    assert trials[dead.number].state == TrialState.FAIL
    assert "heartbeat" in trials[dead.number].user_attrs["error"]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    # the dead trial's point again, and the point never taken; not the point that used up its retries
    assert sorted(t.user_attrs[POINT_KEY] for t in waiting) == sorted(point_key(p) for p in (plan[0], plan[2]))


def test_an_optimizer_outside_the_stored_choices_is_one_clear_error(tmp_path):
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/s.db"))
    study.add_trial(optuna.trial.create_trial(
        params={"optimizer": "adam"}, distributions={"optimizer": CategoricalDistribution(["adam", "nag"])}, value=1.0,
    ))
    dists = study_distributions(study, ["adam", "nag"])  # a registry that grew since does not matter
    assert list(dists["optimizer"].choices) == ["adam", "nag"]
    with pytest.raises(UserError, match=r"cannot add lion .*new --study name") as err:
        study_distributions(study, ["adam", "lion"])
    assert "\n" not in str(err.value)


def test_the_plan_start_counts_every_planned_point_once_by_its_most_advanced_trial(storage_url):
    """On a resume, points already WAITING (queued by an earlier run) were counted nowhere: the
    sweep said '(1 complete, 2 queued now)' for 6 points and then ran 4."""
    study = _new_study(storage_url)
    plan = _plan(6)
    assert enqueue_missing(study, plan[:4]) == PlanStart(total=4, queued=4)  # an earlier run queued 4 points
    queue = PointQueue(study, plan)
    done, running, failed = queue.pop(), queue.pop(), queue.pop()
    assert running is not None  # another process holds it
    study.tell(done.number, 1.0)
    study.tell(failed.number, state=TrialState.FAIL)
    start = enqueue_missing(study, plan)
    assert start == PlanStart(total=6, complete=1, running=1, waiting=1, queued=3, failed_before=1)
    assert start.complete + start.running + start.waiting + start.queued == start.total
    assert enqueue_missing(study, plan) == PlanStart(total=6, complete=1, running=1, waiting=4)
