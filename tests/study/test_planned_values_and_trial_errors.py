"""Every planned value is one its optimizer accepts, and an error inside
one trial never stops a sweep (the point is stored FAIL with its error, retried a bounded number
of times, listed at the end, and the exit code is non-zero)."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from sensitivity import records
from sensitivity.cli import app
from sensitivity.optim.registry import build_optimizer
from sensitivity.storage import open_storage
from sensitivity.study import trial as trial_module
from sensitivity.study.space import plan_points
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import MAX_RETRIES, run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()
SMALL = dict(train_size=256, val_size=128)
"""digits-mlp at a size that trains in a blink (4 batches an epoch): these sweeps check that every point runs."""


def _trials(url: str, name: str = "digits-mlp") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=open_storage(url, read_only=True)).get_trials()


# ---- kind 3: values the optimizer refuses never reach it --------------------------------------

def test_nag_at_momentum_zero_is_plain_sgd_step_for_step():
    torch.manual_seed(0)
    w0 = torch.randn(5)
    target = torch.randn(5)
    paths = []
    for build in (lambda p: build_optimizer("nag", p, {"lr": 0.1, "beta1": 0.0}),
                  lambda p: torch.optim.SGD(p, lr=0.1)):
        w = torch.nn.Parameter(w0.clone())
        opt = build([w])
        for _ in range(4):
            opt.zero_grad()
            ((w - target) ** 2).sum().backward()
            opt.step()
        paths.append(w.detach().clone())
    # plain gradient descent on (w - t)^2: w <- w - 0.1 * 2 (w - t), i.e. (w - t) shrinks by 0.8 each step
    expected = target + (w0 - target) * 0.8 ** 4
    torch.testing.assert_close(paths[0], expected)
    torch.testing.assert_close(paths[1], expected)


def test_nag_momentum_zero_point_runs_in_a_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_sweep(StudySpec(optimizers=("nag",), lr=(1e-2,), beta1=(0.0, 0.9), epochs=1, storage=url,
                                 **SMALL))
    assert (result.ran, result.failures) == (2, [])
    assert sorted(t.state for t in _trials(url)) == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize("sampler", ["random", "qmc"])
@pytest.mark.parametrize("name,values", [("beta1", (0.9, 0.9999999)), ("beta2", (0.99, 0.99999999)),
                                         ("gamma", (0.5, 0.9999999))])
def test_sampled_values_never_round_onto_the_range_bound(sampler, name, values):
    spec = StudySpec(optimizers=("adamrag", "adam"), sampler=sampler, n_trials=64, lr=(1e-4, 1e-2),
                     epochs=1, **{name: values})
    drawn = [p[name] for p in plan_points(spec) if name in p]
    assert len(drawn) >= 64
    assert all(values[0] <= v <= values[1] for v in drawn), max(drawn)
    assert max(drawn) > 0.99999  # the top of the range is reached, and stays below 1
    for p in plan_points(spec):  # every point builds
        build_optimizer(p["optimizer"], [torch.nn.Parameter(torch.zeros(1))],
                        {k: v for k, v in p.items() if k not in ("optimizer", "seed")})


def test_sampled_lr_and_weight_decay_stay_inside_the_given_range():
    lo, hi = 1.00001e-3, 1.00009e-3  # rounding to 4 digits would give 1e-3 < lo
    spec = StudySpec(optimizers=("adam",), sampler="random", n_trials=32, lr=(lo, hi), weight_decay=(0.12345, 0.12349))
    points = plan_points(spec)
    assert all(lo <= p["lr"] <= hi for p in points)
    assert all(0.12345 <= p["weight_decay"] <= 0.12349 for p in points)


def test_random_sweep_to_beta1_near_one_runs_every_point(tmp_path):
    """The issue's input: 8 random points with beta1 in [0.9, 0.9999999]; before, 4 became 1.0."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = run_sweep(StudySpec(sampler="random", optimizers=("adam",), beta1=(0.9, 0.9999999), n_trials=8,
                                 epochs=1, storage=url, lr=(1e-3, 1e-2), **SMALL))
    assert result.failures == [] and result.progress.complete == 8
    assert all(t.params["beta1"] < 1 for t in _trials(url))


# ---- kind 4: one trial's error never stops the sweep -----------------------------------------

@pytest.fixture()
def failing_lr(monkeypatch):
    """Trials at lr = 0.01 raise (as a user's task or CUDA running out of memory would). The tests that
    use it run the single-trial path (population 1); a population's failures are tested in
    tests/population/test_population_sweep.py."""
    real = trial_module.train_trial
    calls = []

    def train(task, config, optimizer, hp, **kwargs):
        calls.append(hp["lr"])
        if math.isclose(hp["lr"], 0.01):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(task, config, optimizer, hp, **kwargs)

    monkeypatch.setattr(trial_module, "train_trial", train)
    return calls


@pytest.mark.slow
def test_a_failing_point_is_retried_then_left_fail_and_the_sweep_goes_on(tmp_path, failing_lr):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 3e-2), beta1=(0.9,), epochs=1, storage=url, population=1)
    result = run_sweep(spec)
    assert result.ran == 2  # both other points ran, one of them after the failing one
    assert failing_lr.count(0.01) == 1 + MAX_RETRIES
    assert [(f.params["lr"], f.error) for f in result.failures] == [(0.01, "RuntimeError: CUDA out of memory (simulated)")]
    trials = _trials(url)
    fails = [t for t in trials if t.state == TrialState.FAIL]
    assert len(fails) == 1 + MAX_RETRIES
    assert all(t.params["lr"] == 0.01 for t in fails)
    assert [t.user_attrs.get(records.RETRY_OF, []) for t in fails] == [[], [fails[0].number],
                                                                        [fails[0].number, fails[1].number]]
    assert result.progress.failed == 1 and result.progress.complete == 2
    # the next run tries the failed point again (with a fresh retry budget) and keeps the rest
    again = run_sweep(spec)
    assert again.ran == 0 and failing_lr.count(0.01) == 2 * (1 + MAX_RETRIES)
    assert len(again.failures) == 1


def test_cli_lists_failed_points_with_their_errors_and_exits_non_zero(tmp_path, failing_lr):
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["sweep", "--storage", url, "--optimizers", "adam", "--lr", "1e-3,1e-2",
                                 "--beta1", "0.9", "--epochs", "1", "--population", "1"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1
    assert "lr=0.01" in failed[0] and "RuntimeError: CUDA out of memory (simulated)" in failed[0]
    assert "1 of 2 points complete; 1 failed" in result.stdout
    assert result.stdout.count("trial #") >= 1 + MAX_RETRIES  # each attempt said it failed


def test_worker_command_goes_on_after_a_failing_point(tmp_path, failing_lr):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2), beta1=(0.9,), epochs=1, storage=url, population=1)
    from sensitivity.study.sweep import prepare_sweep

    prepare_sweep(spec)  # queued, nothing run
    result = runner.invoke(app, ["worker", "--storage", url, "--study", "digits-mlp"])
    assert result.exit_code == 1, result.output
    states = sorted(t.state.name for t in _trials(url))
    assert states.count("COMPLETE") == 1 and states.count("FAIL") == 1 + MAX_RETRIES
    assert "failed: trial #" in result.stderr


def test_a_point_the_optimizer_refuses_is_refused_before_the_study_is_written():
    from sensitivity.errors import UserError
    from sensitivity.study.sweep import check_points

    check_points([{"optimizer": "nag", "lr": 0.1, "beta1": 0.0, "weight_decay": 0.0, "seed": 0}])
    with pytest.raises(UserError, match=r"adam refuses the planned point lr=0\.001 beta1=1 .*beta parameter"):
        check_points([{"optimizer": "adam", "lr": 1e-3, "beta1": 1.0, "seed": 0}])
