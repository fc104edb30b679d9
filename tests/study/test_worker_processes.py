"""Several worker processes on one study: every point runs exactly once, killed and interrupted
workers lose nothing, and the next run completes exactly what is missing.

Budgets are tiny (digits-mlp, a few epochs); what costs time is starting Python processes. A test
that kills or interrupts workers mid-trial starts them with the test-only pause (``trial_pause``,
see ``sensitivity.train.pause_for_test``): each worker stops after its first trial's first stored
epoch and says so in a file, so the signal lands mid-trial however fast or loaded the machine is.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import socket

import optuna
import pytest
from optuna.trial import TrialState

from sensitivity.records import DUPLICATE_OF, POINT_KEY, WORKER
from sensitivity.study.queue import STALE_ERROR, enqueue_missing
from sensitivity.study.sweep import prepare_sweep, run_sweep
from sensitivity.study.space import plan_points, point_key
from sensitivity.study.spec import StudySpec
from sensitivity.storage import open_storage
from tests.conftest import HUNG_S, wait_until

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False)).get_trials(deepcopy=False)


def _assert_each_point_complete_once(url: str, spec: StudySpec) -> list[optuna.trial.FrozenTrial]:
    trials = _trials(url, spec.study_name)
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan_points(spec)}
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_number = {t.number: t for t in trials}
    for t in trials:
        if t.state == TrialState.PRUNED:  # only duplicates are pruned, and they name the point's holder
            assert by_number[t.user_attrs[DUPLICATE_OF]].user_attrs[POINT_KEY] == t.user_attrs[POINT_KEY]
    return trials


def _paused_trials(url: str, name: str, pids: list[int]) -> list[optuna.trial.FrozenTrial]:
    """The RUNNING trials of the paused worker processes (``pids``): one trial each, or the members
    of its population (the default task trains the points of one optimizer together), each with
    one epoch stored, no more."""
    workers = {f"{socket.gethostname()}:{pid}" for pid in pids}
    paused = [t for t in _trials(url, name) if t.state == TrialState.RUNNING and t.user_attrs.get(WORKER) in workers]
    assert {t.user_attrs[WORKER] for t in paused} == workers  # each paused worker holds its trial(s)
    assert all(sorted(t.intermediate_values) == [1] for t in paused)  # mid-trial: after epoch 1 of 3
    return paused


def test_a_paused_trial_has_its_first_epoch_in_the_study_however_short_the_epoch(tmp_path, monkeypatch):
    """The pause holds a trial after chosen epochs; the process tests read them from the study. A
    running trial writes its epochs at most every REPORT_INTERVAL_S, so an epoch shorter than that
    (a fast machine, a warm cache) was still unwritten when the trial paused: CI saw
    ``intermediate_values == {}`` once in 17 runs. Here the interval is made longer than any epoch."""
    import threading

    import sensitivity.study.trial as trial_module
    from tests.conftest import TrialPause

    pause = TrialPause(tmp_path / "pause", epochs=(1, 2)).in_this_process(monkeypatch)
    monkeypatch.setattr(trial_module, "REPORT_INTERVAL_S", 1e9)
    url = f"sqlite:///{tmp_path}/short.db"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), seeds=1, epochs=3, storage=url,
                     study_name="short")
    results = []
    sweep = threading.Thread(target=lambda: results.append(run_sweep(spec)), daemon=True)
    sweep.start()
    pids = wait_until(pause.paused_pids, "the trial to pause")
    try:
        assert pids == [os.getpid()]
        running = [t for t in _trials(url, "short") if t.state == TrialState.RUNNING]
        assert [sorted(t.intermediate_values) for t in running] == [[1]]
        pause.release(1)
        wait_until(lambda: pause.paused_pids(2), "the trial to pause after epoch 2")
        running = [t for t in _trials(url, "short") if t.state == TrialState.RUNNING]
        assert [sorted(t.intermediate_values) for t in running] == [[1, 2]]
    finally:
        pause.release()
        sweep.join(HUNG_S)
    assert results[0].ran == 1
    assert [sorted(t.intermediate_values) for t in _trials(url, "short")] == [[1, 2, 3]]


def _args(spec: StudySpec) -> list[str]:
    return ["--optimizers", ",".join(spec.optimizers), "--lr", ",".join(map(str, spec.lr)),
            "--beta1", ",".join(map(str, spec.beta1)), "--seeds", str(spec.seeds), "--epochs", str(spec.epochs),
            "--storage", spec.storage, "--study", spec.study_name]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\nState:\tZ" not in fh.read()
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_four_processes_on_one_sqlite_grid_run_every_point_exactly_once(tmp_path, cli_process):
    url = f"sqlite:///{tmp_path}/grid.db"
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 3e-3, 1e-2, 3e-2), beta1=(0.9,), seeds=2, epochs=1,
                     storage=url, study_name="grid")
    prepare_sweep(spec)  # the study exists, so that `worker` can join it at once
    procs = [cli_process("sweep", *_args(spec)) for _ in range(2)]
    procs += [cli_process("worker", "--storage", url, "--study", "grid") for _ in range(2)]
    outputs = [p.communicate(timeout=HUNG_S) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err
    _assert_each_point_complete_once(url, spec)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_point_run_by_another(tmp_path, cli_process, fast_heartbeat, trial_pause):
    url = f"sqlite:///{tmp_path}/kill.db"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), seeds=1, epochs=3,
                     storage=url, study_name="kill")
    sweep = cli_process("sweep", *_args(spec), "--workers", "2", env={**fast_heartbeat, **trial_pause.env})
    pid = trial_pause.wait(1, sweep)[0]
    assert pid != sweep.pid  # a worker process, not the coordinator
    victims = _paused_trials(url, "kill", [pid])  # its population: the three points of adam
    os.kill(pid, signal.SIGKILL)
    trial_pause.release()  # the other worker goes on, and later runs the victim's point again
    out, err = sweep.communicate(timeout=HUNG_S)
    assert sweep.returncode == 0, err
    assert "killed by signal 9" in err
    trials = _assert_each_point_complete_once(url, spec)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == sorted(t.number for t in victims)
    assert all(t.user_attrs["error"] == STALE_ERROR for t in failed)


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_and_the_next_run_completes_exactly_the_missing_points(tmp_path):
    url = f"sqlite:///{tmp_path}/int.db"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), seeds=1, epochs=3,
                     storage=url, study_name="int", population=1)  # populations: tests/population

    class CtrlCInSecondTrial:  # Ctrl-C arrives as KeyboardInterrupt in the main thread, mid-training
        def on_epoch(self, number, epoch, metrics):
            if number == 1 and epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, callbacks=CtrlCInSecondTrial())
    before = _trials(url, "int")
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert before[1].user_attrs["error"].startswith("KeyboardInterrupt")

    result = run_sweep(spec)
    assert (result.complete_before, result.ran) == (1, 2)
    trials = _assert_each_point_complete_once(url, spec)
    assert trials[0].datetime_complete == before[0].datetime_complete  # finished trials were left as they were
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]


@pytest.mark.slow
def test_ctrl_c_with_workers_stops_every_worker_cleanly(tmp_path, cli_process, trial_pause):
    url = f"sqlite:///{tmp_path}/intw.db"
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2), beta1=(0.9,), seeds=1, epochs=3,
                     storage=url, study_name="intw")
    sweep = cli_process("sweep", *_args(spec), "--workers", "2", env=trial_pause.env)
    pids = trial_pause.wait(2, sweep)  # both workers mid-trial, held there until the signal
    running = _paused_trials(url, "intw", pids)
    sweep.send_signal(signal.SIGINT)
    out, err = sweep.communicate(timeout=HUNG_S)
    assert sweep.returncode == 130, err
    assert not any(_alive(pid) for pid in pids)  # the coordinator waited for its workers
    trials = _trials(url, "intw")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert sorted(t.number for t in failed) == sorted(t.number for t in running)  # every member of each worker
    assert all(t.user_attrs["error"].startswith("KeyboardInterrupt") for t in failed)

    # the next run queues exactly the points that are not complete: the interrupted ones among them
    study = optuna.load_study(study_name="intw", storage=open_storage(url))
    start = enqueue_missing(study, plan_points(spec))
    complete = start.complete
    assert complete == sum(t.state == TrialState.COMPLETE for t in trials)
    assert start.queued == start.failed_before == len(failed)
    assert complete + start.waiting + start.queued + start.running == start.total == len(plan_points(spec))
    waiting = collections.Counter(
        t.user_attrs[POINT_KEY] for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING
    )
    assert sum(waiting.values()) == len(plan_points(spec)) - complete and set(waiting.values()) == {1}
    assert {t.user_attrs[POINT_KEY] for t in failed} <= set(waiting)


@pytest.mark.slow  # two sweeps per storage, end to end
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resume_with_a_changed_grid_keeps_old_points_and_runs_only_new_ones(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/r.db" if kind == "sqlite" else str(tmp_path / "r.log")
    first = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2), beta1=(0.9,), epochs=1, storage=url, study_name="r")
    assert run_sweep(first).ran == 4
    second = dataclasses.replace(first, lr=(1e-2, 1e-1))
    result = run_sweep(second)
    assert (result.complete_before, result.ran) == (2, 2)
    trials = _trials(url, "r")
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted({t.params["lr"] for t in trials}) == [1e-3, 1e-2, 1e-1]  # the old lr is kept

    from sensitivity.report import load_trials

    frame = load_trials(url, "r").complete
    assert sorted(frame["lr"].unique()) == [1e-3, 1e-2, 1e-1]


@pytest.mark.slow
def test_killing_the_coordinator_stops_its_workers(tmp_path, cli_process, trial_pause):
    url = f"sqlite:///{tmp_path}/orphan.db"
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2), beta1=(0.9,), seeds=1, epochs=3,
                     storage=url, study_name="orphan")
    sweep = cli_process("sweep", *_args(spec), "--workers", "2", env=trial_pause.env)
    pids = trial_pause.wait(2, sweep)  # both workers mid-trial; nothing releases them
    running = _paused_trials(url, "orphan", pids)
    sweep.send_signal(signal.SIGKILL)  # no chance to stop its workers itself
    sweep.communicate(timeout=HUNG_S)
    wait_until(lambda: not any(_alive(pid) for pid in pids), "the end of the orphaned workers")
    trials = _trials(url, "orphan")
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # each stored its trial as FAIL
    failed = {t.number for t in trials if t.state == TrialState.FAIL}
    assert failed == {t.number for t in running}
