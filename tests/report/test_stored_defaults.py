"""A trial stored without a hyperparameter its optimizer takes trained with the catalog default:
the report reads it so (an AdamW study stored before weight decay was stored in every trial), and
its heatmaps and summary count the same trials."""

from __future__ import annotations

import optuna
import pytest

from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import TrialResult, param_distributions
from sensitivity.report import analyze, load_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
LRS = (1e-4, 1e-3, 1e-2, 1e-1)


def _add(study, optimizer: str, lr: float, final: float, **hps) -> None:
    params = {"optimizer": optimizer, "lr": lr, "seed": 0, "beta1": 0.9, **hps}
    dists = param_distributions(list(OPTIMIZERS))
    result = TrialResult(train_loss=[final], metrics={"val_loss": [final], "val_acc": [0.5]},
                         initial={"val_loss": 2.3, "val_acc": 0.1}, epochs_run=1, steps=3, wall_time_s=1.0,
                         throughput=100.0, device="cpu")
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions={k: dists[k] for k in params}, value=result.objective("val_loss"),
        user_attrs=result.to_user_attrs(), intermediate_values={1: final}))


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    """AdamW: four lrs stored without weight decay (they trained with 0.01), four with 1e-3; Adam
    and NAG without weight decay (0)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('wd') / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s")
    study.set_user_attr("metric", "val_loss")
    for i, lr in enumerate(LRS):
        _add(study, "adamw", lr, 1.0 + 0.1 * i)                      # stored before weight decay was
        _add(study, "adamw", lr, 1.2 + 0.1 * i, weight_decay=1e-3)   # swept
        _add(study, "adam", lr, 1.1 + 0.1 * i, beta2=0.999)
        _add(study, "nag", lr, 1.3 + 0.1 * i)
    return load_trials(url, "s")


def test_a_missing_weight_decay_reads_as_the_catalog_default(old_and_new):
    trials = old_and_new.trials.set_index("optimizer")
    assert sorted(trials.loc["adamw", "weight_decay"]) == [1e-3] * 4 + [OPTIMIZERS["adamw"].defaults["weight_decay"]] * 4
    assert (trials.loc["adam", "weight_decay"] == 0.0).all() and (trials.loc["nag", "weight_decay"] == 0.0).all()
    assert (trials.loc["adam", "beta2"] == 0.999).all()
    assert trials.loc["nag", "beta2"].isna().all() and trials.loc["adam", "gamma"].isna().all()  # not theirs
    curves = old_and_new.curves.drop_duplicates("trial").set_index("trial")["weight_decay"]
    assert curves.to_dict() == old_and_new.trials.set_index("trial")["weight_decay"].to_dict()


def test_the_weight_decay_heatmap_holds_every_trial_the_summary_counts(old_and_new):
    analysis = analyze(old_and_new.trials, "val_loss")
    assert ("lr", "weight_decay") in analysis.pairs
    cells = analysis.heatmap_cells[("lr", "weight_decay")].cells  # what the heatmap draws
    adamw = cells[cells["optimizer"] == "adamw"]
    trials = int(analysis.summary.set_index("optimizer").loc["adamw", "trials"])
    assert trials == 8 and int(adamw["n_points"].sum()) == trials
    assert sorted(adamw["weight_decay"].unique()) == [1e-3, 1e-2]
    best = analysis.summary.set_index("optimizer").loc["adamw"]
    assert best["best_weight_decay"] == pytest.approx(1e-2) and best["best_value"] == pytest.approx(1.0)
