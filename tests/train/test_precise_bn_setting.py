"""The precise-BN setting is part of what a study stores, compares on resume and reports."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from sensitivity import records
from sensitivity.errors import UserError
from sensitivity.report.prose import study_facts
from sensitivity.report.frame import load_trials
from sensitivity.storage import open_storage
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import create_or_load_study, join_study, run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_task_defaults_and_the_flag_make_the_stored_setting():
    assert StudySpec(task="resnet18").task_config()["precise_bn"] == 8
    assert StudySpec(task="resnet18", precise_bn=0).task_config()["precise_bn"] == 0
    assert StudySpec(task="digits-mlp").task_config()["precise_bn"] == 0
    with pytest.raises(UserError, match="--precise-bn -2 must be >= 0"):
        StudySpec(precise_bn=-2).validate()


def test_a_study_made_before_the_option_resumes_only_without_recalibration(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), epochs=1, storage=url, study_name="old",
                     precise_bn=3)
    assert run_sweep(spec).ran == 1
    storage = open_storage(url)
    study = optuna.load_study(study_name="old", storage=storage)
    assert study.user_attrs[records.TASK_CONFIG]["precise_bn"] == 3
    facts = dict(study_facts(load_trials(storage, "old")))
    assert facts["BatchNorm statistics"].startswith("recomputed on 3 training batches")
    assert "min(L, L0)" in facts["bad runs"]
    with pytest.raises(UserError, match=r"precise_bn: 3 -> 0"):
        create_or_load_study(dataclasses.replace(spec, precise_bn=0), storage)

    # what an older version stored: no precise_bn at all, which meant no recalibration
    config = {k: v for k, v in study.user_attrs[records.TASK_CONFIG].items() if k != "precise_bn"}
    study.set_user_attr(records.TASK_CONFIG, config)
    assert create_or_load_study(dataclasses.replace(spec, precise_bn=None), storage).study_name == "old"  # digits: 0
    with pytest.raises(UserError, match=r"precise_bn: 0 -> 3"):
        create_or_load_study(spec, storage)
    facts = dict(study_facts(load_trials(storage, "old")))
    assert facts["BatchNorm statistics"].startswith("not recalibrated")


def test_a_worker_joining_a_study_trains_with_the_stored_setting(tmp_path):
    # the sweep stores its spec; a spec stored without the option (an older version) means off,
    # not the task's default of today
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = StudySpec(task="digits-mlp", optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), epochs=1, storage=url,
                     study_name="joined", precise_bn=3)
    assert run_sweep(spec).ran == 1
    assert join_study(url, "joined", check=False)[1].task_config()["precise_bn"] == 3
    study = optuna.load_study(study_name="joined", storage=url)
    old = {k: v for k, v in study.user_attrs[records.SPEC].items() if k != "precise_bn"}
    study.set_user_attr(records.SPEC, old)
    study.set_user_attr(records.TASK_CONFIG, {k: v for k, v in study.user_attrs[records.TASK_CONFIG].items()
                                              if k != "precise_bn"})
    study.set_user_attr(records.TASK, "resnet18")  # whose default today is not 0
    study.set_user_attr(records.SPEC, {**old, "task": "resnet18"})
    assert join_study(url, "joined", check=False)[1].task_config()["precise_bn"] == 0
