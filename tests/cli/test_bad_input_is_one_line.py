"""Bad input: one clear line on stderr, exit code 2, and no existing study data changed.

Every case runs against a database that already holds studies; after each one the database is
checkpointed and its bytes compared with a fingerprint taken before (a committed write, even one
still in the write-ahead log, would change them), and its trials counted.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.records import OPTIMIZER_CHOICES
from sensitivity.study.sweep import run_sweep
from sensitivity.study.spec import StudySpec
from sensitivity.storage import open_storage, release_storage
from tests.helpers.sqlite_files import database_digest

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()
BASE = ["--optimizers", "adam", "--lr", "1e-3", "--beta1", "0.9", "--epochs", "1"]


def _fingerprint(path: Path) -> tuple[str, int]:
    con = sqlite3.connect(path)
    try:
        trials = con.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    finally:
        con.close()
    return database_digest(path), trials


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """A database with: 'base' (a finished digits-mlp sweep), 'other' (another task), 'narrow'
    (a study whose optimizer param allows adam only), 'plain' (a study not made by a sweep)."""
    folder = tmp_path_factory.mktemp("errors")
    path = folder / "studies.db"
    url = f"sqlite:///{path}"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), epochs=1, storage=url, study_name="base")
    assert run_sweep(spec).ran == 1
    storage = open_storage(url)
    other = optuna.create_study(study_name="other", storage=storage)
    other.set_user_attr("task", "resnet18")
    narrow = optuna.create_study(study_name="narrow", storage=storage)
    for key, value in optuna.load_study(study_name="base", storage=storage).user_attrs.items():
        narrow.set_user_attr(key, value)
    narrow.set_user_attr(OPTIMIZER_CHOICES, ["adam"])
    optuna.create_study(study_name="plain", storage=storage)
    # Close the pooled connections now: the last close folds the write-ahead log into the file, and
    # left to the garbage collector it would happen at a random moment of a later test, which checks
    # that a refused command leaves the folder's listing as it was.
    release_storage(narrow)
    del storage, other, narrow
    (folder / "notes.txt").write_text("not a database\n")
    (folder / "notes.log").write_text("not a journal either\n")
    con = sqlite3.connect(folder / "foreign.db")
    con.execute("CREATE TABLE things (x INTEGER)")
    con.commit()
    con.close()
    return path


def _check_one_line_exit_2(args: list[str], expected: str, env: dict[str, str] | None = None):
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    return result


SWEEP_CASES = {
    "unknown task": (["--task", "nope"], "unknown task 'nope'"),
    "unknown optimizer": (["--optimizers", "adam,nope"], "unknown optimizer 'nope'"),
    "lr zero": (["--lr", "0"], "--lr value 0 must be > 0"),
    "lr negative": (["--lr", "1e-3,-1e-2"], "--lr value -0.01 must be > 0"),
    "lr not a number": (["--lr", "1e-3,fast"], "--lr value 'fast' is not a number"),
    "lr empty": (["--lr", ","], "--lr is empty"),
    "beta1 one": (["--beta1", "1.0"], "--beta1 value 1 must lie in [0, 1)"),
    "beta2 negative": (["--beta2", "-0.1"], "--beta2 value -0.1 must lie in [0, 1)"),
    "gamma one": (["--gamma", "0.5,1"], "--gamma value 1 must lie in [0, 1)"),
    "beta1 empty": (["--beta1", ""], "--beta1 is empty"),
    "epochs zero": (["--epochs", "0"], "--epochs 0 must be >= 1"),
    "seeds zero": (["--seeds", "0"], "--seeds 0 must be >= 1"),
    "unknown sampler": (["--sampler", "bayes"], "unknown sampler 'bayes'"),
    "unknown metric": (["--metric", "f1"], "task digits-mlp has no metric 'f1'; use --metric with one of: val_loss, val_acc"),
    "absent device": (["--device", "cuda:99"], "cuda:99"),
    "unknown device": (["--device", "tpu"], "device 'tpu'"),
    "workers zero": (["--workers", "0"], "--workers 0 must be >= 1"),
    "gpus on cpu": (["--gpus", "0", "--device", "cpu"], "--gpus puts workers on GPUs"),
    "absent gpu": (["--gpus", "99"], "--gpus 99"),
    "gpus not numbers": (["--gpus", "a,b", "--device", "cuda"], "is not a list of GPU numbers"),
    "trials per gpu without gpus": (["--trials-per-gpu", "2"], "--trials-per-gpu needs --gpus"),
    "study of another task": (["--study", "other"], "already holds task 'resnet18'"),
    "other epochs": (["--epochs", "2"], "was run with other settings (epochs: 1 -> 2)"),
    "other metric": (["--metric", "val_acc"], "optimises 'val_loss', not 'val_acc'"),
    "other divergence factor": (["--divergence-factor", "3"], "other settings (divergence_factor: 5.0 -> 3.0)"),
    "other batch size": (["--batch-size", "32"], "other settings (batch_size: 64 -> 32)"),
    "other train size": (["--train-size", "500"], "other settings (train_size: None -> 500)"),
    "other precise bn": (["--precise-bn", "4"], "other settings (precise_bn: 0 -> 4)"),
    "negative precise bn": (["--precise-bn", "-1"], "--precise-bn -1 must be >= 0"),
    "optimizer Optuna cannot add": (["--study", "narrow", "--optimizers", "adam,nag"], "cannot add nag"),
    "data missing": (["--task", "resnet18", "--data-dir", "/nonexistent/data"], "not found"),
    # counts too large to mean anything: refused before the plan fills the memory or a number overflows
    "seeds huge": (["--seeds", "99999999999999999999"], "--seeds 99999999999999999999 is larger than a study takes"),
    "lr points huge": (["--lr-points", "99999999999"], "--lr-points 99999999999 is larger than a study takes"),
    "n trials huge": (["--sampler", "random", "--lr", "1e-4,1e-2", "--n-trials", "10000000"],
                      "--n-trials 10000000 is larger than a study takes"),
    "population huge": (["--population", "99999999999999999999"], "--population 99999999999999999999 is larger"),
    "epochs huge": (["--epochs", "100000000000000000000000"], "--epochs 100000000000000000000000 is larger"),
    "batch size huge": (["--batch-size", "99999999999"], "--batch-size 99999999999 is larger"),
    "plan too large": (["--lr", ",".join(f"{10 ** (-5 + i / 100):.6g}" for i in range(400)), "--beta1", "0.8,0.9,0.95",
                        "--seeds", "1000"], "this study plans 1,200,000 trials, more than one study takes (1,000,000)"),
    "workers huge": (["--workers", "99999999999"], "--workers 99999999999 starts more worker processes"),
    "sampler seed negative": (["--sampler", "random", "--lr", "1e-4,1e-2", "--sampler-seed", "-5"],
                              "--sampler-seed -5 must lie in 0 .. 4,294,967,295"),
    "sampler seed too large": (["--sampler", "qmc", "--lr", "1e-4,1e-2", "--sampler-seed", "4294967296"],
                               "--sampler-seed 4294967296 must lie in"),
    "random with one point": (["--sampler", "random", "--n-trials", "4"],
                              "--sampler random with one learning rate (--lr 0.001) and nothing else varied"),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_sweep_input_is_one_line_exit_2_and_changes_nothing(db, case):
    args, expected = SWEEP_CASES[case]
    before = _fingerprint(db)
    _check_one_line_exit_2(["sweep", "--storage", f"sqlite:///{db}", "--study", "base", *BASE, *args], expected)
    assert _fingerprint(db) == before


def _storage_cases(folder: Path) -> dict[str, tuple[str, str]]:
    return {
        "unknown scheme": ("mongodb://localhost/x", "unknown scheme"),
        "malformed sqlite url": ("sqlite:/studies.db", "is malformed"),
        "a text file": (f"sqlite:///{folder / 'notes.txt'}", "is not an SQLite database"),
        "a bare text file": (str(folder / "notes.txt"), "is not an SQLite database"),
        "another program's database": (f"sqlite:///{folder / 'foreign.db'}", "database of another program"),
        "a text file as journal": (str(folder / "notes.log"), "is not an Optuna journal file"),
        "a folder": (f"sqlite:///{folder}", "is a folder"),
    }


@pytest.mark.parametrize("case", list(_storage_cases(Path("."))))
def test_bad_storage_is_one_line_exit_2_and_leaves_files_untouched(db, case):
    folder = db.parent
    storage, expected = _storage_cases(folder)[case]
    files = {p: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.suffix in (".txt", ".log") or p.name == "foreign.db"}
    # SQLite's own -wal/-shm files beside studies.db come and go with the connections other
    # in-process tests still hold; what must not appear is any new file of the refused command
    def listing():
        return sorted(p.name for p in folder.iterdir() if p.name not in ("studies.db-wal", "studies.db-shm"))
    before = listing()
    _check_one_line_exit_2(["sweep", "--storage", storage, *BASE], expected)
    assert {p: p.read_bytes() for p in files} == files
    assert listing() == before  # nothing created


def test_unreachable_postgresql_fails_fast(db):
    start = time.monotonic()
    # "cannot open storage '...' (connection refused)", or without psycopg2 "storage '...' needs a database driver"
    _check_one_line_exit_2(["sweep", "--storage", "postgresql://nobody@127.0.0.1:1/x", *BASE],
                           "storage 'postgresql://nobody@127.0.0.1:1/x'")
    assert time.monotonic() - start < 30


WORKER_CASES = {
    "no such study": (["--study", "nope"], "no study 'nope'"),
    "not made by a sweep": (["--study", "plain"], "not created by adamrag-sens sweep"),
    "absent device": (["--study", "base", "--device", "cuda:99"], "cuda:99"),
    "threads zero": (["--study", "base", "--threads", "0"], "--threads 0 must lie in 1 .. 1024"),
}


@pytest.mark.parametrize("case", list(WORKER_CASES))
def test_bad_worker_input_is_one_line_exit_2_and_changes_nothing(db, case):
    args, expected = WORKER_CASES[case]
    before = _fingerprint(db)
    _check_one_line_exit_2(["worker", "--storage", f"sqlite:///{db}", *args], expected)
    assert _fingerprint(db) == before


def test_worker_on_a_missing_database_creates_nothing(tmp_path):
    _check_one_line_exit_2(["worker", "--storage", f"sqlite:///{tmp_path}/none.db", "--study", "x"], "no SQLite database at")
    _check_one_line_exit_2(["worker", "--storage", str(tmp_path / "none.log"), "--study", "x"], "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_bad_heartbeat_setting_is_one_line_exit_2(db):
    before = _fingerprint(db)
    _check_one_line_exit_2(["sweep", "--storage", f"sqlite:///{db}", "--study", "base", *BASE], "ADAMRAG_SENS_HEARTBEAT_S",
                           env={"ADAMRAG_SENS_HEARTBEAT_S": "soon"})
    assert _fingerprint(db) == before


@pytest.mark.parametrize("args, expected", [
    (["bench", "optimizer", "--paths", "", "--sizes", "tiny"], "--paths names no path"),
    (["bench", "optimizer", "--paths", " , ", "--sizes", "tiny"], "--paths names no path"),
    (["bench", "optimizer", "--sizes", ""], "--sizes names no size"),
])
def test_an_empty_benchmark_list_is_refused_not_run_as_nothing(args, expected):
    _check_one_line_exit_2(args, expected)


def test_compare_of_a_study_with_itself_is_one_line_exit_2_and_writes_nothing(db, tmp_path):
    before = _fingerprint(db)
    out = tmp_path / "cmp"
    _check_one_line_exit_2(["compare", "--storage", str(db), "--storage", f"sqlite:///{db}", "--study", "base",
                            "--study", "base", "--out", str(out)], "'base' in")
    assert _fingerprint(db) == before
    assert not out.exists()
