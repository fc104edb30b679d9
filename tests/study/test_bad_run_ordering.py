"""One ordering for bad runs: objectives clipped at the initial value, diverged runs last at a tie."""

from __future__ import annotations

import math

import optuna
import pytest

from sensitivity.cli.terminal import best_line
from sensitivity.records import TrialResult, rank_key
from sensitivity.study.sweep import best_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _result(val_loss: float, *, diverged: bool = False, acc: float = 0.5) -> TrialResult:
    return TrialResult(train_loss=[1.7], metrics={"val_loss": [val_loss], "val_acc": [acc]},
                       initial={"val_loss": 2.71, "val_acc": 0.09}, diverged=diverged,
                       diverged_reason="epoch 1 mean training loss 20 > 5 x initial 2.71" if diverged else "",
                       epochs_run=1)


def test_objective_is_the_final_loss_clipped_at_l0_and_l0_for_a_diverged_run():
    assert _result(1.07).objective("val_loss") == 1.07
    assert _result(9.18).objective("val_loss") == 2.71  # worse than its start: min(L, L0)
    assert _result(1.07, diverged=True).objective("val_loss") == 2.71
    assert _result(math.nan).objective("val_loss") == 2.71
    assert _result(1.0, acc=0.54).objective("val_acc") == 0.54
    assert _result(1.0, acc=0.05).objective("val_acc") == 0.09  # max(acc, acc0)
    assert _result(1.0, acc=0.54, diverged=True).objective("val_acc") == 0.09
    # a task's own metric, its direction given: a return of 20 below the initial 25 counts as 25
    ret = TrialResult(train_loss=[0.1], metrics={"return": [20.0]}, initial={"return": 25.0}, epochs_run=1)
    assert ret.objective("return", higher_is_better=True) == 25.0
    assert ret.objective("return", higher_is_better=False) == 20.0


def test_rank_key_puts_better_values_first_and_at_a_tie_the_run_that_did_not_diverge():
    runs = [("diverged at L0", 2.71, True), ("finished at 1.2", 1.2, False), ("NaN", math.nan, False),
            ("finished, clipped to L0", 2.71, False), ("finished at 0.9", 0.9, False)]
    ranked = [name for name, v, d in sorted(runs, key=lambda r: rank_key(r[1], r[2], higher_is_better=False))]
    assert ranked == ["finished at 0.9", "finished at 1.2", "finished, clipped to L0", "diverged at L0", "NaN"]
    accs = [("diverged", 0.09, True), ("finished", 0.09, False), ("best", 0.5, False)]
    ranked = [name for name, v, d in sorted(accs, key=lambda r: rank_key(r[1], r[2], higher_is_better=True))]
    assert ranked == ["best", "finished", "diverged"]


def _study(results: list[tuple[str, TrialResult]], metric: str = "val_loss") -> optuna.Study:
    direction = "minimize" if metric == "val_loss" else "maximize"
    study = optuna.create_study(direction=direction)
    study.set_user_attr("metric", metric)
    for optimizer, r in results:
        study.add_trial(optuna.trial.create_trial(
            params={"optimizer": optimizer, "lr": 1e-3},
            distributions={"optimizer": optuna.distributions.CategoricalDistribution(["adam", "adamrag"]),
                           "lr": optuna.distributions.FloatDistribution(1e-8, 1.0, log=True)},
            value=r.objective(metric), user_attrs=r.to_user_attrs()))
    return study


def test_best_trial_names_the_finished_run_when_a_diverged_one_ties_with_it():
    # the case: a diverged AdamRAG (trial #0) and an Adam that finished at 9.18 (> L0)
    # both count as L0 = 2.71; the finished run is the best
    study = _study([("adamrag", _result(21.7, diverged=True)), ("adam", _result(9.18))])
    best = best_trial(study)
    assert best["number"] == 1 and not best["diverged"] and best["value"] == 2.71 and best["final"] == 9.18
    line = best_line(best, "val_loss")
    assert line.startswith("best val_loss 2.7100 (clipped at the initial value: the final val_loss was 9.18)")
    assert "trial #1 optimizer=adam" in line


def test_best_trial_prefers_a_better_value_and_says_when_every_trial_diverged():
    study = _study([("adamrag", _result(1.17)), ("adam", _result(1.07))])
    best = best_trial(study)
    assert best["number"] == 1 and best_line(best, "val_loss").startswith("best val_loss 1.0700: trial #1")
    all_diverged = _study([("adamrag", _result(1.0, diverged=True)), ("adam", _result(1.0, diverged=True))])
    best = best_trial(all_diverged)
    assert best["number"] == 0 and best["diverged"]
    assert "(diverged: epoch 1 mean training loss 20 > 5 x initial 2.71; every trial diverged)" in best_line(best, "val_loss")


def test_best_trial_on_accuracy_ranks_the_finished_run_first_at_acc0():
    study = _study([("adamrag", _result(1.0, acc=0.5, diverged=True)), ("adam", _result(1.0, acc=0.02))], "val_acc")
    best = best_trial(study)
    assert best["number"] == 1 and best["value"] == pytest.approx(0.09) and best["final"] == pytest.approx(0.02)
