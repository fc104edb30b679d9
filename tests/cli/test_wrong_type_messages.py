"""Study definitions with values of the wrong type, and messages that named
the wrong problem. Each refusal is one line, exit 2, and leaves the study database as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import run_sweep
from tests.helpers.sqlite_files import database_digest

ONE_PROCESS = True  # its cases share one swept study (tests/conftest.py)

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()
BASE = ["--optimizers", "adam", "--lr", "1e-3", "--beta1", "0.9", "--epochs", "1"]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("messages") / "studies.db"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), epochs=1, storage=f"sqlite:///{path}")
    assert run_sweep(spec).ran == 1
    return path


def _one_line_exit_2(args: list[str], expected: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    return lines[0]


# ---- kind 5: a study definition's values have the flag's type ----------------------------------

DEFINITION_CASES = {
    "boolean seeds": ("seeds = true", "seeds = true is a boolean, but seeds takes a whole number"),
    "float seeds": ("seeds = 2.0", "seeds = 2.0 is a number, but seeds takes a whole number"),
    "string epochs": ('epochs = "2"', "epochs = '2' is a string, but epochs takes a whole number"),
    "boolean n_trials": ("n_trials = false", "n_trials = false is a boolean"),
    "string divergence factor": ('divergence_factor = "5"', "divergence_factor = '5' is a string, but divergence_factor takes a number"),
    "boolean in an lr list": ("lr = [1e-3, true]", "lr = [0.001, True] is a list, but lr takes a number or a list of numbers"),
    "strings in a beta1 list": ('beta1 = ["0.9"]', "beta1 = ['0.9'] is a list"),
    "empty beta1 list": ("beta1 = []", "beta1 = [] is a list"),
    "number as download": ("download = 1", "download = 1 is a whole number, but download takes true or false"),
    "number as a path": ("data_dir = 3", "data_dir = 3 is a whole number, but data_dir takes a string"),
    "number in optimizers": ('optimizers = ["adam", 1]', "optimizers = ['adam', 1] is a list, but optimizers takes a name"),
    "boolean as metric": ("metric = true", "metric = true is a boolean, but metric takes a string"),
    "table as task": ("[task]\nname = 'x'", "task = {'name': 'x'} is a table"),
}


@pytest.mark.parametrize("case", list(DEFINITION_CASES))
def test_definition_value_of_the_wrong_type_is_one_line_naming_the_key(db, tmp_path, case):
    text, expected = DEFINITION_CASES[case]
    config = tmp_path / "study.toml"
    config.write_text(f'study = "digits-mlp"\n{text}\n')
    before = database_digest(db)
    _one_line_exit_2(["sweep", "--config", str(config), "--storage", f"sqlite:///{db}"], expected)
    assert database_digest(db) == before


def test_definition_values_of_the_right_type_are_taken(db, tmp_path):
    """An integer where a number is wanted is a number; numbers and lists of numbers are both lists."""
    config = tmp_path / "study.toml"
    config.write_text('optimizers = "adam"\nlr = 1e-3\nbeta1 = [0.9]\nepochs = 1\ndivergence_factor = 5\nseeds = 1\n')
    result = runner.invoke(app, ["sweep", "--config", str(config), "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert "nothing to run: all 1 points" in result.stdout


# ---- kind 8: messages that name the real problem ------------------------------------------------

SWEEP_CASES = {
    "epochs not a number": (["--epochs", "abc"], "Invalid value for '--epochs'"),
    "seeds not a whole number": (["--seeds", "2.5"], "Invalid value for '--seeds'"),
    # the refused value is quoted, in either spelling of the flag (the last one given counts)
    "batch size not a number": (["--batch-size", "x"], "'--batch-size': Input should be a valid integer, unable to parse string as an integer (got 'x')"),
    "epochs= not a number": (["--epochs=1e", "--seeds", "1"], "(got '1e')"),
    "repeated flag": (["--epochs", "2", "--epochs", "two"], "(got 'two')"),
    "unknown flag": (["--learning-rate", "1e-3"], "No such option: --learning-rate"),
    "weight decay nan": (["--weight-decay", "nan"], "--weight-decay value nan is not a number"),
    "lr nan": (["--lr", "nan"], "--lr value nan is not a number"),
    "beta1 inf": (["--beta1", "inf"], "--beta1 value inf is not finite"),
    "weight decay above the stored range": (["--weight-decay", "20"], "is above the largest weight decay a study can hold"),
    "lr above the stored range": (["--lr", "1e7"], "outside the learning rates a study can hold"),
    "n-trials zero with grid": (["--n-trials", "0"], "--n-trials 0 must be >= 1"),
    "n-trials negative with random": (["--n-trials", "-1", "--sampler", "random"], "--n-trials -1 must be >= 1"),
    "gamma without adamrag": (["--gamma", "0.5"], "--gamma is given but none of --optimizers adam takes gamma"),
    "beta2 for nag only": (["--optimizers", "nag", "--beta2", "0.99"], "--beta2 is given but none of --optimizers nag"),
}


@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_flag_is_one_line_naming_the_problem(db, case):
    args, expected = SWEEP_CASES[case]
    before = database_digest(db)
    line = _one_line_exit_2(["sweep", "--storage", f"sqlite:///{db}", *BASE, *args], expected)
    assert "Usage:" not in line
    assert database_digest(db) == before


def test_report_flag_that_is_not_a_number_is_one_line(db):
    _one_line_exit_2(["report", "--storage", f"sqlite:///{db}", "--tolerance", "x"], "Invalid value for '--tolerance'")
    _one_line_exit_2(["bench", "sweep", "--points", "[x]"], "(got '[x]')")  # markup-like text printed as given


@pytest.fixture()
def newer_schema_db(db, tmp_path) -> Path:
    path = tmp_path / "newer.db"
    path.write_bytes(db.read_bytes())
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'v9.0.0.a'")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("command", [["sweep", *BASE], ["report", "--out", "r"], ["worker", "--study", "digits-mlp"]])
def test_newer_schema_names_the_stored_version_and_what_to_do(newer_schema_db, command):
    before = database_digest(newer_schema_db)
    line = _one_line_exit_2([command[0], "--storage", f"sqlite:///{newer_schema_db}", *command[1:]],
                            f"holds Optuna table schema v9.0.0.a, newer than this Optuna {optuna.__version__}")
    assert "pip install -U optuna" in line and "credentials" not in line
    assert database_digest(newer_schema_db) == before


def test_older_schema_says_how_to_upgrade_it(newer_schema_db):
    con = sqlite3.connect(newer_schema_db)
    con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    con.commit()
    con.close()
    before = database_digest(newer_schema_db)
    line = _one_line_exit_2(["report", "--storage", f"sqlite:///{newer_schema_db}"], "schema v3.0.0.d, older than")
    assert "optuna storage upgrade --storage" in line
    assert database_digest(newer_schema_db) == before


@pytest.mark.parametrize("args, expected", [
    (["swep"], "No such command 'swep'. Did you mean 'sweep'? (`adamrag-sens --help` lists the commands)"),
    (["bench", "swep"], "(`adamrag-sens bench --help` lists the commands)"),
    (["sweep", "--optimzers", "adam"], "No such option: --optimzers"),
    (["sweep", "--optimzers", "adam"], "(`adamrag-sens sweep --help` lists the flags)"),
])
def test_a_misspelled_command_points_to_the_commands_and_a_misspelled_flag_to_the_flags(args, expected):
    _one_line_exit_2(args, expected)
