"""The one storage room: read-only opening changes nothing, and each private-API helper does what it names."""

from __future__ import annotations

import hashlib
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from sensitivity.errors import UserError
from sensitivity.storage import (
    JournalHeartbeatStorage, fixed_params, heartbeat_interval, live_trial, open_storage, record_heartbeat,
    stale_trial_ids, storage_of, study_id_of, trial_id_of,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _digest(path) -> str:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "s.db"
    study = optuna.create_study(study_name="toy", storage=open_storage(f"sqlite:///{path}", heartbeat=False))
    study.enqueue_trial({"lr": 0.01})
    study.tell(study.ask(), 1.5)
    return path


def test_read_only_open_reads_the_study_and_leaves_the_file_byte_for_byte(db):
    before = _digest(db)
    for spelling in (f"sqlite:///{db}", str(db), db):
        store = open_storage(spelling, read_only=True)
        trials = optuna.load_study(study_name="toy", storage=store).get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.COMPLETE]
        assert heartbeat_interval(store) is None
    assert _digest(db) == before


def test_read_only_refuses_a_missing_or_non_optuna_database_and_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="no SQLite database at"):
        open_storage(f"sqlite:///{tmp_path}/none.db", read_only=True)
    with pytest.raises(UserError, match="does not exist"):
        open_storage(str(tmp_path / "none.log"), read_only=True)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("PRAGMA user_version = 1").connection.close()  # an SQLite file, no tables
    before = empty.read_bytes()
    with pytest.raises(UserError, match="not an Optuna database"):
        open_storage(str(empty), read_only=True)
    assert empty.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_private_api_helpers_agree_with_optunas_public_api(db):
    study = optuna.load_study(study_name="toy", storage=open_storage(f"sqlite:///{db}", heartbeat=False))
    storage = storage_of(study)  # Optuna wraps an RDBStorage in its caching layer: this is the one the study uses
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert study_id_of(study) == storage.get_study_id_from_name("toy")
    study.enqueue_trial({"lr": 0.5, "beta1": 0.9})
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[0]
    tid = trial_id_of(waiting)
    assert tid == storage.get_trial_id_from_study_id_trial_number(study_id_of(study), waiting.number)
    assert fixed_params(storage, tid) == {"lr": 0.5, "beta1": 0.9}
    assert fixed_params(storage, trial_id_of(study.get_trials()[0])) == {"lr": 0.01}
    assert storage.set_trial_state_values(tid, state=TrialState.RUNNING)
    trial = live_trial(study, tid)
    assert trial.number == waiting.number
    assert trial.suggest_float("lr", 1e-3, 1.0) == 0.5  # the queued value, as Optuna's ask would give


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_stale_trial_ids_names_the_running_trial_whose_heartbeat_stopped(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    storage = JournalHeartbeatStorage(JournalFileBackend(str(tmp_path / "j.log")), heartbeat_interval=1,
                                      grace_period=0.2)
    study = optuna.create_study(study_name="hb", storage=storage)
    beating, silent, quiet = (study.ask() for _ in range(3))
    for t in (beating, silent):
        record_heartbeat(storage, trial_id_of(t))
    time.sleep(0.4)
    record_heartbeat(storage, trial_id_of(beating))
    assert heartbeat_interval(storage) == 1
    assert stale_trial_ids(storage, study) == [trial_id_of(silent)]  # never-beating `quiet` is not stale
    assert stale_trial_ids(object(), study) is None
