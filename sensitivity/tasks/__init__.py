"""The workload registry: what a trial trains.

Built-in tasks (:data:`TASKS`): ``digits-mlp``, ``fmnist-cnn``, ``resnet18``, ``char-lm``,
``cartpole``. A user's own task needs no change to this package: :func:`get_task` also accepts

* ``package.module:factory`` or ``path/to/file.py:factory`` -- an importable module (the current
  directory is searched too, as uvicorn and gunicorn do for their ``module:app`` targets) and an
  attribute that is a :class:`Task`, or a callable returning one;
* the name of an entry point in the group :data:`ENTRY_POINT_GROUP` (``adamrag_sens.tasks``)
  of an installed package, whose value is such a ``module:factory``.

The task contract is :class:`Task` (and :class:`TensorTask`, the fast path for supervised
learning on tensors); see :mod:`sensitivity.tasks.base`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from sensitivity.errors import UserError
from sensitivity.records import NAME_RULE, valid_name
from sensitivity.tasks.base import VAL_ACC, VAL_LOSS, Metric, Task, TaskData, TensorData, TensorTask
from sensitivity.tasks.cartpole import CARTPOLE
from sensitivity.tasks.char_lm import CHAR_LM
from sensitivity.tasks.digits import DIGITS_MLP
from sensitivity.tasks.fmnist_cnn import FMNIST_CNN
from sensitivity.tasks.resnet import RESNET18

TASKS: dict[str, Task] = {task.name: task for task in (DIGITS_MLP, FMNIST_CNN, RESNET18, CHAR_LM, CARTPOLE)}
"""Every built-in workload by registry name."""

ENTRY_POINT_GROUP = "adamrag_sens.tasks"
"""Entry-point group under which installed packages offer tasks (name -> ``module:factory``)."""

_LOADED: dict[str, Task] = {}


def get_task(name: str) -> Task:
    """The task called ``name``: a built-in, an entry point, or a ``module:factory`` target.

    The task of a target is built once per process (its factory is called once).

    Raises:
        UserError: no such task, module, file or attribute, an attribute that is not a task and
            not a callable returning one, a module or factory that fails or exits
            (``sys.exit()``, ``exit()``, any ``BaseException`` but ``KeyboardInterrupt``, which
            still stops the tool), or a task :func:`check_task` refuses; one line naming the fix.
            A user's code that calls ``os._exit()`` ends the process: nothing can catch that.
            What a user's code prints while loading goes to stderr.
    """
    key = name.strip()
    if key.lower() in TASKS:
        return TASKS[key.lower()]
    if key in _LOADED:
        return _LOADED[key]
    if ":" in key:
        task = _from_target(key)
    else:
        entry = _entry_points().get(key)
        if entry is None:
            known = ", ".join([*TASKS, *_entry_points()])
            raise UserError(f"unknown task {name!r}; choose one of: {known} (see `adamrag-sens tasks`), "
                            f"or give your own as package.module:factory")
        task = _from_target(entry, shown=f"entry point {key!r} ({entry})")
    _LOADED[key] = task
    return task


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def entry_point_tasks() -> dict[str, str]:
    """``{entry point name: module:factory}`` of the group :data:`ENTRY_POINT_GROUP`."""
    return dict(_entry_points())


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _from_target(target: str, shown: str | None = None) -> Task:
    shown = shown or f"--task {target}"
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise UserError(f"{shown}: give the task as module:factory, e.g. my_tasks:make_task")
    module = _import(module_name, shown)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{shown}: module {module_name!r} has no attribute {attr!r}; check the name after the colon")
        obj = getattr(obj, part)
    if not isinstance(obj, Task):
        if not callable(obj):
            raise UserError(f"{shown}: {attr!r} is {_a(type(obj).__name__)}, not a Task or a function returning one")
        try:
            with _user_code():
                obj = obj()
        except (UserError, KeyboardInterrupt):
            raise
        except BaseException as err:  # noqa: BLE001 - a user's factory failing (or exiting) is the user's to fix
            raise UserError(f"{shown}: calling {attr}() {_failed(err)}") from None
        if not isinstance(obj, Task):
            raise UserError(f"{shown}: {attr}() returned {_a(type(obj).__name__)}, not a sensitivity.tasks.Task")
    check_task(obj, shown)
    return obj


def _import(module_name: str, shown: str) -> Any:
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise UserError(f"{shown}: no file {path}; check the path before the colon")
        mod_name = f"_adamrag_sens_task_{abs(hash(str(path.resolve())))}"
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            with _user_code():
                spec.loader.exec_module(module)
        except KeyboardInterrupt:
            del sys.modules[mod_name]
            raise
        except BaseException as err:  # noqa: BLE001 - sys.exit() at import included
            del sys.modules[mod_name]
            raise UserError(f"{shown}: importing {path} {_failed(err)}") from None
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a module beside the user, as `python -m` would find it
    try:
        with _user_code():
            return importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise UserError(f"{shown}: no module named {module_name!r} (searched the current directory "
                            f"and installed packages); check the name before the colon") from None
        raise UserError(f"{shown}: importing {module_name} failed (no module named {err.name!r})") from None
    except BaseException as err:  # noqa: BLE001 - the user's module raising (or exiting) at import
        raise UserError(f"{shown}: importing {module_name} {_failed(err)}") from None


@contextlib.contextmanager
def _user_code() -> Iterator[None]:
    """Run a user's module or factory with its prints sent to stderr: the tool's stdout (a table,
    ``--json``, a piped report line) carries only what the tool writes."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _failed(err: BaseException) -> str:
    """What a user's code did instead of returning, for a message: ``failed (Type: message)``, or
    for ``sys.exit()``/``exit()``/``raise SystemExit`` ``exited (sys.exit(...)) instead of
    returning``, whatever the exit code (0 included: a factory that exits made no task).

    ``os._exit()`` cannot be caught: it ends the process at once, without Python's cleanup."""
    if isinstance(err, SystemExit):
        code = err.code
        shown = "" if code is None else repr(code)
        return (f"exited (sys.exit({shown})) instead of returning; a task's code must raise an "
                f"exception, not exit, so that the other tasks stay usable")
    text = str(err)
    return f"failed ({type(err).__name__}{': ' + text if text else ''})"


def _is_control(c: str) -> bool:
    """A C0/C1 control character or DEL (an ANSI escape, a newline, a carriage return...)."""
    return unicodedata.category(c) == "Cc"


def check_task(task: Task, shown: str = "task") -> None:
    """Check what the training loop relies on, and the user text a task carries where it enters.

    Raises:
        UserError: no name; a name outside :data:`~sensitivity.records.NAME_PATTERN` (the name is
            the default study name and the report folder's) or a built-in task's name; a
            description, data source or other text with control characters (terminal escapes,
            line breaks); a dataset name outside the name rule; no metrics, a reference that is
            not a metric, or defaults without ``epochs`` and ``batch_size``.
    """
    if not task.name:
        raise UserError(f"{shown}: the task has no name; set Task.name")
    if not valid_name(task.name):
        raise UserError(f"{shown}: task name {task.name!r} is not allowed (it names the task's study and its "
                        f"report folder); set Task.name: {NAME_RULE}")
    builtin = TASKS.get(task.name.lower())
    if builtin is not None and builtin is not task:
        raise UserError(f"{shown}: task name {task.name!r} is the name of a built-in task; give your task a name "
                        f"of its own (its study would be taken for the built-in's)")
    for field in ("description", "data_source", "epoch", "example_unit", "cpu_trial_time"):
        text = getattr(task, field, "")
        if not isinstance(text, str):
            raise UserError(f"{shown}: task {task.name!r}: {field} is {_a(type(text).__name__)}; give it as text")
        bad = next((c for c in text if _is_control(c)), None)
        if bad is not None:
            raise UserError(f"{shown}: task {task.name!r}: {field} holds the control character {bad!r}; "
                            f"give it as plain text on one line")
    for m in task.metrics if isinstance(task.metrics, (tuple, list)) else ():
        for field in ("label", "unit"):
            text = getattr(m, field, "")
            if isinstance(text, str) and any(_is_control(c) for c in text):
                raise UserError(f"{shown}: task {task.name!r}: metric {getattr(m, 'name', '?')!r} {field} holds a "
                                f"control character; give it as plain text on one line")
    for dataset in task.datasets:
        if not valid_name(dataset):
            raise UserError(f"{shown}: task {task.name!r}: dataset name {dataset!r} is not allowed (it can name the "
                            f"study); {NAME_RULE}")
    if not task.metrics or not all(isinstance(m, Metric) for m in task.metrics):
        raise UserError(f"{shown}: task {task.name!r} declares no metrics; give metrics=(Metric(...), ...)")
    names = [m.name for m in task.metrics]
    if len(set(names)) != len(names):
        raise UserError(f"{shown}: task {task.name!r} declares a metric twice ({', '.join(names)})")
    if task.reference not in names:
        raise UserError(f"{shown}: task {task.name!r}: reference {task.reference!r} is not one of its metrics {names}")
    missing = [k for k in ("epochs", "batch_size") if k not in task.defaults]
    if missing:
        raise UserError(f"{shown}: task {task.name!r} defaults lack {', '.join(missing)}; add them")


__all__ = ["ENTRY_POINT_GROUP", "TASKS", "VAL_ACC", "VAL_LOSS", "Metric", "Task", "TaskData", "TensorData",
           "TensorTask", "check_task", "entry_point_tasks", "get_task"]
