"""A database server that drops the connection mid-trial. Storage calls are
retried on a new connection; a server that stays away ends the command with one line."""

from __future__ import annotations

import collections
import os
import uuid

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState
from typer.testing import CliRunner

from sensitivity.storage import reconnect as reconnect_module
from sensitivity.cli import app
from sensitivity.records import POINT_KEY
from sensitivity.storage import is_connection_lost, open_storage
from sensitivity.study.space import plan_points, point_key
from sensitivity.study.spec import StudySpec

URL = os.environ.get("ADAMRAG_SENS_TEST_POSTGRES_URL")
runner = CliRunner()


def _lost() -> Exception:
    try:
        try:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
    except optuna.exceptions.StorageInternalError as outer:
        return outer


def test_lost_connections_are_told_from_other_errors():
    assert is_connection_lost(_lost())
    assert not is_connection_lost(optuna.exceptions.StorageInternalError("value too long"))
    assert not is_connection_lost(ValueError("x"))


def test_a_storage_call_is_retried_until_the_connection_is_back(monkeypatch):
    monkeypatch.setattr(reconnect_module, "RECONNECT_PAUSES_S", (0.0, 0.0, 0.0))
    calls = []

    def flaky(self, n):
        calls.append(n)
        if len(calls) < 3:
            raise _lost()
        return n * 2

    assert reconnect_module.reconnecting(flaky)(None, 21) == 42 and len(calls) == 3
    calls.clear()

    def down(self):
        calls.append(1)
        raise _lost()

    with pytest.raises(optuna.exceptions.StorageInternalError):
        reconnect_module.reconnecting(down)(None)
    assert len(calls) == 4  # 3 pauses, 4 attempts

    def other(self):
        calls.append(1)
        raise optuna.exceptions.StorageInternalError("value too long")

    calls.clear()
    with pytest.raises(optuna.exceptions.StorageInternalError):
        reconnect_module.reconnecting(other)(None)
    assert len(calls) == 1  # not a lost connection: no retry


def test_a_server_that_stays_away_ends_the_sweep_with_one_line(monkeypatch, tmp_path):
    def run_sweep(*args, **kwargs):
        raise _lost()

    monkeypatch.setattr("sensitivity.study.sweep.run_sweep", run_sweep)
    result = runner.invoke(app, ["sweep", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--optimizers", "adam",
                                 "--lr", "1e-3", "--beta1", "0.9", "--epochs", "1"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lost the connection to the study's storage" in lines[0]
    assert "server closed the connection unexpectedly" in lines[0]


def test_server_storages_reconnect_and_sqlite_keeps_optunas_own(tmp_path):
    assert type(open_storage(f"sqlite:///{tmp_path / 's.db'}")) is optuna.storages.RDBStorage
    if URL:
        assert isinstance(open_storage(URL), reconnect_module.ReconnectingRDBStorage)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not URL, reason="ADAMRAG_SENS_TEST_POSTGRES_URL is not set (.ci/run sets it)")
def test_terminated_connections_mid_trial_lose_nothing_and_run_every_point_once(cli_process, fast_heartbeat,
                                                                                  tmp_path):
    """Every connection of the sweep is cut three times while its first trial is held mid-trial
    (after epochs 1, 2 and 3, by the test-only pause): the cuts land mid-trial on a slow or a fast
    machine, and each is followed by the trial's own writes (heartbeats, the next epochs, the result)."""
    from tests.conftest import TrialPause

    psycopg2 = pytest.importorskip("psycopg2")
    name = f"drop-{uuid.uuid4().hex[:8]}"
    lrs = "1e-4,1e-3,1e-2,1e-1"
    epochs, cut_after = 5, (1, 2, 3)
    pause = TrialPause(tmp_path / "pause", epochs=cut_after)
    # the sweep's connections carry their own application_name, so that only they are cut, not those
    # of PostgreSQL tests running beside this one in other test processes
    own = f"{URL}{'&' if '?' in URL else '?'}application_name={name}"
    proc = cli_process("sweep", "--optimizers", "adam", "--lr", lrs, "--beta1", "0.8,0.9", "--epochs", str(epochs),
                       "--storage", own, "--study", name, env={**fast_heartbeat, **pause.env})
    con = psycopg2.connect(URL)
    con.autocommit = True
    cur = con.cursor()
    held: set[int] = set()
    try:
        for epoch in cut_after:
            pause.wait(1, proc, epoch)
            cur.execute("SELECT t.number FROM trials t JOIN studies USING (study_id) "
                        "WHERE study_name = %s AND state = 'RUNNING'", (name,))
            running = {n for (n,) in cur.fetchall()}
            held = held or running
            assert running and running == held  # the same trial(s) held mid-trial at each cut: one, or one population
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = %s", (name,))
            assert sum(1 for (ok,) in cur.fetchall() if ok) >= 1, "the sweep held no connection to cut"
            pause.release(epoch)
    finally:
        pause.release()
        con.close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    assert "8 of 8 points complete" in out
    trials = optuna.load_study(study_name=name, storage=open_storage(URL)).get_trials(deepcopy=False)
    spec = StudySpec(optimizers=("adam",), lr=tuple(float(x) for x in lrs.split(",")), beta1=(0.8, 0.9), epochs=epochs)
    complete = collections.Counter(t.user_attrs[POINT_KEY] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == {point_key(p): 1 for p in plan_points(spec)}
    # the held trials finished with every epoch they ran stored, across the three cuts
    held_trials = [t for t in trials if t.number in held]
    assert held_trials and all(t.state == TrialState.COMPLETE for t in held_trials)
    for t in held_trials:
        ran = epochs if not t.user_attrs.get("diverged") else t.user_attrs["epochs_run"]
        assert sorted(t.intermediate_values) == list(range(1, ran + 1))
    assert any(not t.user_attrs.get("diverged") for t in held_trials)
