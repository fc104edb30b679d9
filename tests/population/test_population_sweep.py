"""Sweeps that hand out populations: the same stored values as one by one, each member its own trial
(failures, retries and a killed worker handled per member), and --population on the command line."""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import signal
import socket

import optuna
import pytest
from optuna.trial import TrialState

import sensitivity.population as population_module
from sensitivity.errors import UserError
from sensitivity.records import ERROR, POINT_KEY, RETRY_OF, WORKER
from sensitivity.storage import open_storage
from sensitivity.study.queue import STALE_ERROR
from sensitivity.study.space import plan_points, point_key
from sensitivity.study.spec import StudySpec, parse_population
from sensitivity.study.sweep import prepare_sweep, run_sweep
from tests.conftest import HUNG_S

optuna.logging.set_verbosity(optuna.logging.WARNING)

SMALL = dict(train_size=256, val_size=128, epochs=2)
"""digits-mlp at a size that trains in a blink: 2 epochs of 4 batches."""


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False)).get_trials(deepcopy=False)


def _stored(url: str, name: str) -> dict[str, tuple]:
    """What a study holds of each point: value, every epoch's intermediate value, divergence."""
    out = {}
    for t in _trials(url, name):
        assert t.state == TrialState.COMPLETE, (t.number, t.state, t.user_attrs.get(ERROR))
        out[t.user_attrs[POINT_KEY]] = (t.value, dict(t.intermediate_values), t.user_attrs["diverged"],
                                        t.user_attrs["diverged_reason"], t.user_attrs["val_loss"])
    return out


@pytest.mark.slow  # trains the default study's shape twice (48 trials), end to end
def test_the_default_study_shape_stores_the_same_values_with_populations_and_one_by_one(tmp_path):
    base = StudySpec(optimizers=("adamrag", "adam", "nag", "lion"), lr=(1e-3, 1e-2, 1.0), beta1=(0.8, 0.95),
                     **SMALL, study_name="same")
    stored = {}
    for label, size in (("auto", None), ("one", 1)):
        spec = dataclasses.replace(base, storage=f"sqlite:///{tmp_path}/{label}.db", population=size)
        result = run_sweep(spec)
        assert result.ran == 24
        stored[label] = _stored(spec.storage, "same")
        if size is None:
            assert result.population == 27 and result.runs_as.startswith("populations of up to 27 (")
        else:
            assert (result.population, result.runs_as) == (1, "one by one (--population 1)")
    assert stored["auto"] == stored["one"]  # values and intermediate values compared exactly, not within a tolerance
    diverged = sorted(k for k, v in stored["one"].items() if v[2])
    assert diverged and len(diverged) < 24  # the comparison covers diverged and healthy members


def test_the_members_of_a_population_are_taken_in_one_go_and_each_is_its_own_trial(tmp_path):
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), **SMALL,
                     storage=f"sqlite:///{tmp_path}/one-go.db", study_name="one-go", population=3)
    starts = []

    class Watch:
        def on_trial_start(self, number, params):
            starts.append((number, params["optimizer"]))

    assert run_sweep(spec, callbacks=Watch()).ran == 6
    # each population is one optimizer's three points, all started before any of them trains
    assert [o for _, o in starts] == ["adam"] * 3 + ["nag"] * 3
    trials = _trials(spec.storage, "one-go")
    assert collections.Counter(t.user_attrs[POINT_KEY] for t in trials) == {point_key(p): 1 for p in plan_points(spec)}
    assert all(len(t.intermediate_values) == 2 and t.user_attrs["wall_time_s"] > 0 for t in trials)


def _failing_first_call(monkeypatch, spoil):
    """Make the first population's training end as ``spoil(run)`` says (the later ones run as usual)."""
    real = population_module.train_points
    calls = []

    def train_points(*args, **kwargs):
        run = real(*args, **kwargs)
        calls.append(len(args[3]))
        if len(calls) == 1:
            spoil(run)
        return run

    monkeypatch.setattr(population_module, "train_points", train_points)
    return calls


@pytest.mark.slow
def test_a_failed_member_is_retried_alone_and_the_others_are_not_run_again(tmp_path, monkeypatch):
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), **SMALL,
                     storage=f"sqlite:///{tmp_path}/retry.db", study_name="retry")

    def nan_objective_for_the_second(run):
        spoilt = run.results[1]  # its objective is NaN: the trial fails, as it would alone
        spoilt.initial["val_loss"] = spoilt.metrics["val_loss"][-1] = math.nan

    calls = _failing_first_call(monkeypatch, nan_objective_for_the_second)
    failures = []

    class Watch:
        def on_trial_fail(self, failure, retry):
            failures.append((failure.number, retry))

    result = run_sweep(spec, callbacks=Watch())
    assert calls == [3]  # the retry ran alone (the single-trial loop), not as a population
    assert result.ran == 3 and not result.failures
    trials = _trials(spec.storage, "retry")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert failures == [(1, 1)]
    assert trials[1].user_attrs[ERROR] == "ValueError: the objective val_loss of the run is NaN"
    assert trials[3].user_attrs[RETRY_OF] == [1]
    assert trials[3].user_attrs[POINT_KEY] == trials[1].user_attrs[POINT_KEY]
    # the retry stores what the point gives alone
    alone = dataclasses.replace(spec, storage=f"sqlite:///{tmp_path}/alone.db", population=1)
    monkeypatch.undo()
    run_sweep(alone)
    assert _stored(alone.storage, "retry")[trials[3].user_attrs[POINT_KEY]][:2] == \
        (trials[3].value, dict(trials[3].intermediate_values))


def test_an_error_in_training_fails_every_member_and_each_is_retried(tmp_path, monkeypatch):
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), **SMALL,
                     storage=f"sqlite:///{tmp_path}/boom.db", study_name="boom")

    def boom(run):
        raise RuntimeError("out of memory, say")

    _failing_first_call(monkeypatch, boom)
    failures = []

    class Watch:
        def on_trial_fail(self, failure, retry):
            failures.append((failure.number, retry))

    result = run_sweep(spec, callbacks=Watch())
    assert result.ran == 3 and not result.failures
    trials = _trials(spec.storage, "boom")
    assert [t.state for t in trials[:3]] == [TrialState.FAIL] * 3
    assert all(t.user_attrs[ERROR] == "RuntimeError: out of memory, say" for t in trials[:3])
    assert failures == [(0, 1), (1, 1), (2, 1)]
    retries = trials[3:]
    assert [t.state for t in retries] == [TrialState.COMPLETE] * 3
    assert sorted(t.user_attrs[RETRY_OF] for t in retries) == [[0], [1], [2]]


@pytest.mark.slow  # an interrupted sweep and its resume
def test_ctrl_c_in_a_population_stores_every_member_as_failed_and_the_next_run_completes_them(tmp_path):
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), seeds=1, epochs=3,
                     train_size=256, val_size=128, storage=f"sqlite:///{tmp_path}/int.db", study_name="int")

    class CtrlCInSecondMember:  # Ctrl-C arrives as KeyboardInterrupt in the main thread, mid-training
        def on_epoch(self, number, epoch, metrics):
            if number == 1 and epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, callbacks=CtrlCInSecondMember())
    before = _trials(spec.storage, "int")
    assert [t.state for t in before] == [TrialState.FAIL] * 3
    assert all(t.user_attrs[ERROR].startswith("KeyboardInterrupt") for t in before)
    assert [sorted(t.intermediate_values) for t in before] == [[1, 2], [1, 2], [1]]  # what each stored so far

    result = run_sweep(spec)
    assert (result.complete_before, result.ran) == (0, 3)
    complete = [t for t in _trials(spec.storage, "int") if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs[POINT_KEY] for t in complete) == sorted(point_key(p) for p in plan_points(spec))


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_population_has_each_member_run_once_after_resume(
        tmp_path, cli_process, fast_heartbeat, trial_pause):
    url = f"sqlite:///{tmp_path}/killpop.db"
    spec = StudySpec(optimizers=("adam", "nag"), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), seeds=1, epochs=3,
                     train_size=256, val_size=128, storage=url, study_name="killpop")
    prepare_sweep(spec)
    worker = cli_process("worker", "--storage", url, "--study", "killpop", "--quiet",
                         env={**fast_heartbeat, **trial_pause.env})
    [pid] = trial_pause.wait(1, worker)
    assert pid == worker.pid
    mine = f"{socket.gethostname()}:{pid}"
    running = [t for t in _trials(url, "killpop") if t.state == TrialState.RUNNING]
    assert len(running) == 3 and {t.user_attrs[WORKER] for t in running} == {mine}  # one population of 3
    assert all(sorted(t.intermediate_values) == [1] for t in running)  # mid-population: after epoch 1 of 3
    os.kill(pid, signal.SIGKILL)
    worker.communicate(timeout=HUNG_S)

    result = run_sweep(spec)  # resume: waits for the dead members to go stale, then runs them again
    assert result.ran == 6
    trials = _trials(url, "killpop")
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan_points(spec)}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert sorted(t.number for t in failed) == sorted(t.number for t in running)
    assert all(t.user_attrs[ERROR] == STALE_ERROR for t in failed)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.parametrize("text, size", [("auto", None), ("AUTO", None), ("27", 27), ("1", 1)])
def test_the_population_flag_reads_auto_or_a_size(text, size):
    assert parse_population(text) == size


@pytest.mark.parametrize("text", ["0", "-3", "many", "2.5"])
def test_a_bad_population_is_one_line_naming_the_flag(text):
    with pytest.raises(UserError, match=r"^--population .* auto"):
        parse_population(text)


@pytest.mark.slow  # three sweep processes
def test_population_on_the_command_line_reaches_the_start_line_and_the_study(tmp_path, run_cli):
    url = f"sqlite:///{tmp_path}/cli.db"
    args = ["sweep", "--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1",
            "--train-size", "128", "--val-size", "64", "--storage", url, "--study", "cli"]
    code, out, err = run_cli(*args, "--population", "1")
    assert code == 0, err
    assert "one by one (--population 1)" in out
    study = optuna.load_study(study_name="cli", storage=url)
    assert study.user_attrs["spec"]["population"] == 1  # workers that join read it from there
    code, out, err = run_cli(*args[:-1], "cli2")
    assert code == 0, err
    assert "populations of up to 27 (task 'digits-mlp' declares population_size=27)" in " ".join(out.split())
    code, out, err = run_cli(*args, "--population", "zero")
    assert code == 2 and err.count("\n") == 1 and "--population 'zero'" in err


def test_a_study_definition_takes_a_population_size_or_auto(tmp_path):
    from sensitivity.study.definition import read_study_definition

    for text, flag in (("population = 27", "27"), ('population = "auto"', "auto")):
        (tmp_path / "s.toml").write_text(text + "\n")
        assert read_study_definition(tmp_path / "s.toml") == {"population": flag}
    (tmp_path / "s.toml").write_text("population = 2.5\n")
    with pytest.raises(UserError, match=r'population = 2.5 is a number, but population takes a whole number or "auto"'):
        read_study_definition(tmp_path / "s.toml")


def test_a_member_failed_as_stale_by_another_worker_is_dropped_and_the_others_are_recorded(tmp_path):
    from sensitivity.storage._optuna import trial_id_of
    from sensitivity.study.ledger import open_ledger

    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.9,), **SMALL,
                     storage=f"sqlite:///{tmp_path}/stale.db", study_name="stale")

    class AnotherWorkerFailsTheFirstMember:  # as fail_stale in another process would, after the first epoch
        def on_epoch(self, number, epoch, metrics):
            if number == 0 and epoch == 1:
                study = optuna.load_study(study_name="stale", storage=open_storage(spec.storage))
                first = trial_id_of(study.get_trials(deepcopy=False)[0])
                assert open_ledger(study).finish(first, TrialState.FAIL, None, {ERROR: STALE_ERROR})

    with pytest.warns(RuntimeWarning, match=r"trial\(s\) #0 of a population were failed as stale"):
        result = run_sweep(spec, callbacks=AnotherWorkerFailsTheFirstMember())
    assert result.ran == 2
    trials = _trials(spec.storage, "stale")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs[ERROR] == STALE_ERROR and trials[0].value is None  # its result was not written
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials[1:])


def test_the_heartbeat_beats_for_every_member_until_each_stops():
    from sensitivity.study.trial import Heartbeat
    from tests.conftest import wait_until

    class Ledger:  # records heartbeats every 10 ms
        def __init__(self):
            self.storage = type("Storage", (), {"get_heartbeat_interval": lambda self: 0.01})()
            self.beats = []

        def record_heartbeat(self, trial_id):
            self.beats.append(trial_id)

    ledger = Ledger()
    with Heartbeat(ledger) as heart:
        with heart.beating(7, 8, 9):
            wait_until(lambda: {7, 8, 9} <= set(ledger.beats), "a heartbeat of each member")
            heart.stop_beating(8)  # finished, or failed as stale by another worker
            seen = len(ledger.beats)
            wait_until(lambda: {7, 9} <= set(ledger.beats[seen + 2:]), "two more rounds of heartbeats")
            assert 8 not in ledger.beats[seen + 2:]  # (a round under way when it stopped may still beat it)
        ended = len(ledger.beats)
    assert len(ledger.beats) <= ended + 2  # nothing beats after the block (but a round under way)
