"""The findings pipeline (scripts/findings.py, `make findings`) on tiny budgets: two workloads swept
from their definitions into one storage, reported (the main study, and the gamma companion against
the main study's baselines), importance and convergence tables, run records, the compare across
workloads; a rerun resumes (trains nothing) and rewrites identical tables; bad input exits 2."""

from __future__ import annotations

import importlib.util
import json
import sys
import sysconfig
from pathlib import Path

import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _script():
    spec = importlib.util.spec_from_file_location("findings_script", ROOT / "scripts" / "findings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TINY = """
optimizers = {optimizers}
sampler = "grid"
lr = [1e-3, 1e-2]
beta1 = [0.9]
gamma = [{gamma}]
epochs = 4
seeds = 2
device = "cpu"
"""


def _definitions(folder: Path, text_file: Path) -> None:
    workloads = {
        "findings-digits": 'task = "digits-mlp"\ntrain_size = 200\nval_size = 100\n',
        "findings-char-lm": f'task = "char-lm"\ntext_file = "{text_file}"\ntrain_size = 1300\nval_size = 650\n',
    }
    for stem, head in workloads.items():
        (folder / f"{stem}.toml").write_text(
            head + f'study = "{stem}"\n' + TINY.format(optimizers='["adamrag", "adam"]', gamma=0.5))
        (folder / f"{stem}-gamma09.toml").write_text(
            head + f'study = "{stem}-gamma09"\n' + TINY.format(optimizers='["adamrag"]', gamma=0.9))


@pytest.fixture()
def setup(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()[:6000])
    studies = tmp_path / "studies"
    studies.mkdir()
    _definitions(studies, text)
    storage = f"sqlite:///{tmp_path / 'findings.db'}"
    out = tmp_path / "findings"
    args = ["--storage", storage, "--out", str(out), "--studies-dir", str(studies),
            "--only", "digits-mlp", "--only", "char-lm"]
    return _script(), storage, out, args


def test_the_pipeline_sweeps_reports_and_resumes(setup):
    script, storage, out, args = setup
    assert script.main(args) == 0

    # every point of both definitions stored once: 2 optimizers x 2 lr x 2 seeds, companion 2 x 2
    for study, n in (("findings-digits", 8), ("findings-digits-gamma09", 4), ("findings-char-lm", 8),
                     ("findings-char-lm-gamma09", 4)):
        trials = optuna.load_study(study_name=study, storage=storage).trials
        assert len(trials) == n and all(t.state.name == "COMPLETE" for t in trials)

    digits = out / "digits-mlp"
    for name in ("summary.csv", "differences.csv", "importance.csv", "importance.png", "convergence.csv",
                 "expected_best_intervals.csv",
                 "expected_best.csv", "trials.csv", "lr_sensitivity.png", "report.md", "runs.jsonl"):
        assert (digits / name).stat().st_size > 0, name
    assert not (digits / "report.html").exists()
    diffs = pd.read_csv(digits / "differences.csv")
    assert {("adamrag", "adam")} == set(zip(diffs["a"], diffs["b"]))
    assert "tolerance_width_decades" in set(diffs["metric"])
    assert ((diffs["low"] <= diffs["difference"]) & (diffs["difference"] <= diffs["high"])).all()
    importance = pd.read_csv(digits / "importance.csv")
    lr_main = importance[(importance["term"] == "lr") & (importance["kind"] == "main") & (importance["region"] == "all")]
    assert set(lr_main["optimizer"]) == {"adamrag", "adam"}
    assert ((lr_main["share"] >= 0) & (lr_main["share"] <= 1)).all()

    # the companion: AdamRAG at gamma 0.9 only, beside the main study's Adam trials, unchanged
    main_trials = pd.read_csv(digits / "trials.csv")
    comp_trials = pd.read_csv(digits / "gamma-0.9" / "trials.csv")
    assert set(comp_trials.loc[comp_trials["optimizer"] == "adamrag", "gamma"]) == {0.9}
    assert set(main_trials.loc[main_trials["optimizer"] == "adamrag", "gamma"]) == {0.5}
    key = ["lr", "seed"]
    adam_main = main_trials[main_trials["optimizer"] == "adam"].sort_values(key)["value"].to_numpy()
    adam_comp = comp_trials[comp_trials["optimizer"] == "adam"].sort_values(key)["value"].to_numpy()
    assert adam_main.tolist() == adam_comp.tolist()

    # convergence: the best point's final mean equals the mean of its trials' final val_loss
    conv = pd.read_csv(digits / "convergence.csv").set_index("optimizer")
    for name in ("adamrag", "adam"):
        mine = main_trials[main_trials["optimizer"] == name]
        best_lr = mine.groupby("lr")["value"].mean().idxmin()
        assert conv.loc[name, "lr"] == best_lr
        assert conv.loc[name, "final"] == pytest.approx(mine.loc[mine["lr"] == best_lr, "final_val_loss"].mean())
        assert conv.loc[name, "epochs"] == 4

    record = json.loads((digits / "runs.jsonl").read_text())
    assert {"python", "torch", "optuna"} <= set(record["versions"])
    assert [s["returncode"] for s in record["sweeps"]] == [0, 0]
    assert all("--config" in s["command"] and s["wall_s"] >= 0 for s in record["sweeps"])
    compare = pd.read_csv(out / "compare" / "compare.csv")
    assert sorted(set(compare["study"])) == ["findings-char-lm", "findings-digits"]
    assert (out / "compare" / "performance_profiles.png").stat().st_size > 0

    # a rerun resumes: nothing trained again, the same tables
    before = (digits / "summary.csv").read_bytes(), (digits / "differences.csv").read_bytes()
    assert script.main(args[:-2]) == 0  # digits-mlp alone
    assert len(optuna.load_study(study_name="findings-digits", storage=storage).trials) == 8
    assert ((digits / "summary.csv").read_bytes(), (digits / "differences.csv").read_bytes()) == before
    runs = [json.loads(line) for line in (digits / "runs.jsonl").read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["sweeps"][0]["command"] == runs[1]["sweeps"][0]["command"]


def test_an_unknown_workload_exits_2_and_writes_nothing(setup, capsys):
    script, storage, out, args = setup
    assert script.main(["--storage", storage, "--out", str(out), "--only", "imagenet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imagenet" in err[0] and "digits-mlp" in err[0]
    assert not out.exists()
