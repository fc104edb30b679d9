"""The hyperparameters a trial stores are the ones its optimizer trained with.

The defaults here are read from the libraries (torch's and lion-pytorch's signatures), not from
the catalog, so a catalog default that disagrees with what the optimizer really uses is caught.
"""

from __future__ import annotations

import inspect
import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from sensitivity.catalog import OPTIMIZERS
from sensitivity.optim.registry import build_optimizer, optimizer_settings
from sensitivity.records import POINT_KEY, param_distributions
from sensitivity.storage import open_storage
from sensitivity.study.queue import PlanStart, PointQueue, enqueue_missing
from sensitivity.study.space import plan_points, point_key, resolve_key
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import failed_points

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _library_default(cls, name: str):
    return inspect.signature(cls.__init__).parameters[name].default


@pytest.mark.parametrize("sampler", ["grid", "random", "qmc"])
def test_every_point_holds_the_weight_decay_its_optimizer_uses(sampler):
    spec = StudySpec(optimizers=tuple(OPTIMIZERS), sampler=sampler, lr_points=2, n_trials=2)
    plan = plan_points(spec)
    assert plan
    adamw_default = _library_default(torch.optim.AdamW, "weight_decay")
    assert adamw_default == 0.01  # torch's AdamW default, the value that used to be stored blank
    for p in plan:
        hp = {k: v for k, v in p.items() if k not in ("optimizer", "seed")}
        params = [torch.nn.Parameter(torch.zeros(2))]
        opt = build_optimizer(p["optimizer"], params, hp)
        group = opt.param_groups[0]
        assert "weight_decay" in p
        assert group["weight_decay"] == p["weight_decay"]  # stored == used
        if p["optimizer"] == "adamw":
            assert p["weight_decay"] == adamw_default
        if "betas" in group:
            assert tuple(group["betas"]) == (p["beta1"], p["beta2"])
        if "momentum" in group:
            assert group["momentum"] == p["beta1"]
        if "gamma" in group:
            assert group["gamma"] == p["gamma"]


def test_the_optimizer_settings_record_the_library_defaults():
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam = optimizer_settings(build_optimizer("adam", params, {"lr": 1e-3}))
    assert adam["eps"] == _library_default(torch.optim.Adam, "eps")
    assert adam["maximize"] is False and adam["amsgrad"] is False
    assert adam["betas"] == [0.9, 0.999] and "foreach" not in adam
    nag = optimizer_settings(build_optimizer("nag", params, {"lr": 0.1, "beta1": 0.9}))
    assert nag["nesterov"] is True and nag["dampening"] == 0
    from lion_pytorch import Lion

    lion = optimizer_settings(build_optimizer("lion", params, {"lr": 1e-4}))
    assert lion["betas"] == [0.9, 0.99] == list(_library_default(Lion, "betas"))
    json.dumps(adam), json.dumps(nag), json.dumps(lion)  # storable as user attributes


def test_a_trained_trial_stores_its_optimizer_settings():
    from sensitivity.tasks import get_task
    from sensitivity.train import train_trial

    task = get_task("digits-mlp")
    config = task.config(epochs=1, train_size=64, val_size=32, batch_size=32)
    result = train_trial(task, config, "adamw", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.01},
                         seed=0, epochs=1, divergence_factor=5.0)
    attrs = result.to_user_attrs()
    assert attrs["optimizer_settings"]["weight_decay"] == 0.01
    assert attrs["optimizer_settings"]["eps"] == _library_default(torch.optim.AdamW, "eps")
    assert attrs["optimizer_settings"]["decoupled_weight_decay"] is True


def _legacy(point: dict) -> dict:
    """The point as a study stored it before weight decay was resolved: no weight_decay unless swept."""
    return {k: v for k, v in point.items() if k != "weight_decay"}


@pytest.fixture
def study(tmp_path):
    return optuna.create_study(study_name="old", storage=open_storage(f"sqlite:///{tmp_path}/old.db"))


def _add_complete(study, point: dict, value: float = 1.0) -> None:
    dists = param_distributions(sorted(OPTIMIZERS))
    study.add_trial(optuna.trial.create_trial(
        params=point, distributions={k: dists[k] for k in point}, value=value,
        user_attrs={POINT_KEY: point_key(point)}, state=TrialState.COMPLETE))


@pytest.mark.parametrize("given", [None, (0.01,)])
def test_a_study_stored_before_the_fix_resumes_without_running_its_points_again(study, given):
    """Old AdamW/Adam trials (no weight_decay stored) are the points with the default weight decay,
    resumed without --weight-decay or with --weight-decay 0.01 (AdamW only: Adam's default is 0)."""
    old_spec = StudySpec(optimizers=("adam", "adamw"), lr_points=3, beta1=(0.9,))
    new_plan = plan_points(StudySpec(optimizers=("adamw",) if given else ("adam", "adamw"), lr_points=3,
                                     beta1=(0.9,), weight_decay=given))
    for p in plan_points(old_spec):
        _add_complete(study, _legacy(p))
    before = len(study.trials)
    assert enqueue_missing(study, new_plan) == PlanStart(total=len(new_plan), complete=len(new_plan))
    assert len(study.trials) == before  # nothing queued, nothing duplicated
    queue = PointQueue(study, new_plan)
    assert queue.pop() is None
    assert queue.progress().complete == len(new_plan)
    assert failed_points(study, new_plan) == []


def test_an_old_waiting_trial_is_taken_as_its_point(study):
    plan = plan_points(StudySpec(optimizers=("adamw",), lr_points=2, beta1=(0.9,)))
    old = _legacy(plan[0])
    study.enqueue_trial(old, user_attrs={POINT_KEY: point_key(old)})
    # the old queued trial holds plan[0]
    assert enqueue_missing(study, plan) == PlanStart(total=len(plan), waiting=1, queued=len(plan) - 1)
    taken = PointQueue(study, plan).pop()
    assert taken is not None and taken.number == 0


def test_a_swept_weight_decay_other_than_the_default_is_a_new_point(study):
    for p in plan_points(StudySpec(optimizers=("adamw",), lr_points=2, beta1=(0.9,))):
        _add_complete(study, _legacy(p))
    plan = plan_points(StudySpec(optimizers=("adamw",), lr_points=2, beta1=(0.9,), weight_decay=(0.1,)))
    assert enqueue_missing(study, plan) == PlanStart(total=len(plan), queued=len(plan))


def test_resolve_key_leaves_current_keys_and_optimizers_without_decay_alone():
    current = point_key({"optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0, "seed": 0})
    assert resolve_key(current) == current
    assert resolve_key("not json") == "not json" and resolve_key(None) is None
    old = point_key({"optimizer": "adamw", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "seed": 0})
    assert json.loads(resolve_key(old))["weight_decay"] == 0.01
    old_adam = point_key({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "seed": 0})
    assert json.loads(resolve_key(old_adam))["weight_decay"] == _library_default(torch.optim.Adam, "weight_decay")
