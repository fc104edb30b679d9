"""Commands pay at start-up only for what they use: `--help` and `report` never import torch."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import TrialResult, param_distributions
from sensitivity.storage import open_storage

# Runs the command line in this interpreter, then says which heavy packages got imported.
_RUN = r"""
import json, runpy, sys
sys.argv = ["adamrag-sens", *sys.argv[1:]]
try:
    runpy.run_module("sensitivity.cli", run_name="__main__")
except SystemExit as err:
    code = err.code
print(json.dumps({"code": code, "loaded": sorted(m for m in ("torch", "torchvision", "sklearn", "optuna") if m in sys.modules)}))
"""


def _run(*args: str, cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_help_imports_neither_torch_nor_optuna(tmp_path):
    for args in ((), ("--help",), ("sweep", "--help"), ("report", "--help"), ("bench", "sweep", "--help")):
        got = _run(*args, cwd=tmp_path)
        assert got["loaded"] == [], (args, got)


@pytest.mark.slow  # a whole report built in a child process
def test_report_command_writes_a_report_without_importing_torch(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="toy", storage=open_storage(url, heartbeat=False))
    dists = param_distributions(sorted(OPTIMIZERS))
    for lr in (1e-3, 1e-2, 1e-1):
        r = TrialResult(train_loss=[1.0], metrics={"val_loss": [0.5 + lr], "val_acc": [0.8]},
                        initial={"val_loss": 2.3, "val_acc": 0.1}, epochs_run=1)
        params = {"optimizer": "adam", "lr": lr, "beta1": 0.9, "seed": 0}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=r.objective("val_loss"), user_attrs=r.to_user_attrs()))
    got = _run("report", "--storage", url, "--study", "toy", "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert got["code"] in (None, 0)
    assert (tmp_path / "rep" / "report.html").is_file()
    assert "torch" not in got["loaded"] and "sklearn" not in got["loaded"]


@pytest.mark.slow  # sweep and report processes, end to end
def test_a_sweep_process_ends_with_its_exit_code_its_output_and_its_trials_stored(run_cli, tmp_path):
    # `sweep` and `worker` leave without the interpreter's teardown (cli.main): nothing may be lost
    url = f"sqlite:///{tmp_path}/fast.db"
    code, out, err = run_cli("sweep", "--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1",
                             "--storage", url)
    assert code == 0, err
    assert "ran 2 trials" in out and out.rstrip().splitlines()[-1].startswith("report: adamrag-sens report")
    trials = optuna.load_study(study_name="digits-mlp", storage=open_storage(url, read_only=True)).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"] and all(t.user_attrs["val_loss"] for t in trials)
    code, out, err = run_cli("report", "--storage", url, "--study", "digits-mlp", "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert len((tmp_path / "rep" / "trials.csv").read_text().strip().splitlines()) == 3
    code, out, err = run_cli("sweep", "--lr", "-1", "--storage", url)
    assert code == 2 and err.strip() == "error: --lr value -1 must be > 0; use e.g. --lr 1e-4,1e-3,1e-2"
