"""A user's own workload without editing the package: module:factory, file.py:factory, and the
adamrag_sens.tasks entry-point group; every bad target is one line naming the fix."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app, terminal
from sensitivity.errors import UserError
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import join_study, run_sweep
from sensitivity.tasks import ENTRY_POINT_GROUP, TensorTask, entry_point_tasks, get_task
from sensitivity.train import train_trial

TASK_SOURCE = textwrap.dedent('''
    import torch
    from sensitivity.tasks import TensorData, TensorTask

    def load(config):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(120, 5, generator=g)
        y = (x[:, 0] > 0).long()
        return TensorData(x[:80], y[:80], x[80:], y[80:], num_classes=2, description="sign of x0")

    def make_task():
        return TensorTask(name="sign", description="sign of the first feature",
                          defaults={"epochs": 2, "batch_size": 16}, load=load,
                          build_model=lambda config, data: torch.nn.Linear(5, 2))

    TASK = make_task()
    NOT_A_TASK = 42

    def returns_a_string():
        return "nope"

    def raises():
        raise RuntimeError("no data here")

    def load_fails(config):
        raise FileNotFoundError("my data file is missing")

    def make_failing_load():
        return TensorTask(name="sign-broken", defaults={"epochs": 1, "batch_size": 16}, load=load_fails,
                          build_model=lambda config, data: torch.nn.Linear(5, 2))

    def make_none_load():
        return TensorTask(name="sign-none", defaults={"epochs": 1, "batch_size": 16}, load=lambda config: None,
                          build_model=lambda config, data: torch.nn.Linear(5, 2))
''')


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    """A module file in a fresh current directory, under a name no other test uses."""
    name = f"user_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def test_module_factory_from_the_current_directory_trains(user_module):
    task = get_task(f"{user_module}:make_task")
    assert isinstance(task, TensorTask) and task.name == "sign"
    assert get_task(f"{user_module}:make_task") is task  # the factory runs once per process
    result = train_trial(task, task.config(), "adam", {"lr": 0.05}, seed=0, epochs=2, divergence_factor=5.0)
    assert result.epochs_run == 2 and result.steps == 2 * (80 // 16)
    assert result.metrics["val_acc"][-1] > 0.8  # a linear model learns the sign of a feature


def test_a_task_object_and_a_file_path_work_too(user_module, tmp_path):
    assert get_task(f"{user_module}:TASK").name == "sign"
    assert get_task(f"{tmp_path / user_module}.py:make_task").name == "sign"


@pytest.mark.parametrize("target, message", [
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'.*check the name before the colon"),
    ("{m}:missing", "has no attribute 'missing'; check the name after the colon"),
    ("{m}:NOT_A_TASK", "'NOT_A_TASK' is an int, not a Task or a function returning one"),
    ("{m}:returns_a_string", r"returns_a_string\(\) returned a str, not a sensitivity.tasks.Task"),
    ("{m}:raises", r"calling raises\(\) failed \(RuntimeError: no data here\)"),
    ("{m}:", "give the task as module:factory"),
    ("nowhere/tasks.py:make", "no file nowhere/tasks.py"),
    ("not-a-task", "unknown task 'not-a-task'; choose one of: digits-mlp, fmnist-cnn, resnet18, char-lm, cartpole"),
])
def test_bad_targets_are_one_line_user_errors(user_module, target, message):
    with pytest.raises(UserError, match=message) as info:
        get_task(target.format(m=user_module))
    assert "\n" not in str(info.value)


def _installed_package(tmp_path, monkeypatch, prefix: str, entry_points: dict[str, str]) -> str:
    """A module holding TASK_SOURCE, installed as a package (a dist-info folder on sys.path) with the
    entry point ``<ep>-<module> = <module>:<attr>`` for each ``ep: attr``; returns the module's name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_SOURCE)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{ep}-{name} = {name}:{attr}\n" for ep, attr in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_entry_point_of_an_installed_package(tmp_path, monkeypatch):
    name = _installed_package(tmp_path, monkeypatch, "ep_tasks", {"sign": "make_task"})
    assert entry_point_tasks()[f"sign-{name}"] == f"{name}:make_task"
    assert get_task(f"sign-{name}").name == "sign"
    sys.modules.pop(name, None)


def test_a_task_without_epochs_in_its_defaults_is_refused(tmp_path, monkeypatch):
    name = f"bad_defaults_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TASK_SOURCE.replace('{"epochs": 2, "batch_size": 16}', '{"batch_size": 16}'))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="defaults lack epochs"):
        get_task(f"{name}:make_task")
    sys.modules.pop(name, None)


def test_every_built_in_task_meets_the_contract():
    from sensitivity.tasks import TASKS, check_task

    for task in TASKS.values():
        check_task(task, task.name)  # raises UserError on a broken declaration
        assert task.metric(task.reference).direction in ("minimize", "maximize")
        assert task.data_source and task.epoch and task.example_unit


@pytest.mark.parametrize("factory, message", [
    ("make_failing_load", r"loading its data failed \(FileNotFoundError: my data file is missing\); fix the task's load\(\)"),
    ("make_none_load", r"load\(\) returned NoneType, not data with a .to\(device, memory_format\) method"),
])
def test_a_task_whose_load_fails_is_one_line_exit_2_before_anything_is_written(user_module, tmp_path, factory, message):
    db = tmp_path / "studies.db"
    result = CliRunner().invoke(app, ["sweep", "--task", f"{user_module}:{factory}", "--optimizers", "adam",
                                      "--lr", "1e-2", "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --task ")
    import re
    assert re.search(message, lines[0]), lines[0]
    assert not db.exists()  # refused before the storage was opened


def test_a_file_target_is_stored_by_its_absolute_path_so_workers_elsewhere_and_resumes_find_it(
        user_module, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tasks.py").write_text(TASK_SOURCE)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(task="sub/tasks.py:make_task", optimizers=("adam",), lr=(1e-2,), beta1=(0.9,), epochs=1,
                     storage=url, study_name="sign")
    assert spec.task == f"{tmp_path / 'sub' / 'tasks.py'}:make_task"
    assert run_sweep(spec).ran == 1
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # a worker started in another folder reads the stored target and finds the file
    _, joined, plan = join_study(url, "sign")
    assert joined.task == spec.task and len(plan) == 1
    # a resume naming the same file by another relative path is the same task, not a refusal
    again = StudySpec(task="../sub/./tasks.py:make_task", optimizers=("adam",), lr=(1e-2,), beta1=(0.9,), epochs=1,
                      storage=url, study_name="sign")
    result = run_sweep(again)
    assert result.ran == 0 and result.complete_before == 1


def test_a_worker_that_cannot_load_the_stored_task_says_so_without_naming_a_flag_it_lacks(
        user_module, tmp_path, monkeypatch):
    import sensitivity.tasks as tasks_module

    (tmp_path / "tasks.py").write_text(TASK_SOURCE)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(task=f"{tmp_path / 'tasks.py'}:make_task", optimizers=("adam",), lr=(1e-2, 1e-1),
                     beta1=(0.9,), epochs=1, storage=url, study_name="sign")
    assert run_sweep(spec).ran == 2
    (tmp_path / "tasks.py").rename(tmp_path / "moved.py")  # the worker's machine lacks the file
    monkeypatch.setattr(tasks_module, "_LOADED", {})  # as in a fresh process
    result = CliRunner().invoke(app, ["worker", "--storage", url, "--study", "sign"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--task" not in lines[0], lines
    assert lines[0].startswith(f"error: study 'sign' was swept with task '{spec.task}', which this machine "
                               f"cannot load: no file {tmp_path / 'tasks.py'}"), lines[0]


def test_tasks_lists_an_entry_point_with_its_metrics_and_a_broken_one_with_why(tmp_path, monkeypatch):
    name = _installed_package(tmp_path, monkeypatch, "ep_list", {"good": "make_task", "bad": "raises"})
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(terminal.console, "width", 250)  # made at import: COLUMNS alone comes too late
    result = CliRunner().invoke(app, ["tasks"])
    assert result.exit_code == 0, result.stderr
    good = next(line for line in result.stdout.splitlines() if f"good-{name}" in line)
    assert "val_loss" in good and "minimized" in good  # the task's own declaration, read from the factory
    bad = next(line for line in result.stdout.splitlines() if f"bad-{name}" in line)
    assert "broken:" in bad and "RuntimeError" in result.stdout
    sys.modules.pop(name, None)


def test_the_readme_shows_the_example_factory_as_it_is_in_examples():
    """The README's copy of examples/my_task.py's factory must not drift from the file a user copies."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def call(text: str) -> str:  # the TensorTask(...) call, without comments and blanks
        body = re.search(r"return TensorTask\((.*?)\n\s*\)", text, re.S).group(1)
        return "".join(re.sub(r"#.*", "", line).strip() for line in body.splitlines())

    assert call((root / "README.md").read_text()) == call((root / "examples" / "my_task.py").read_text())
