"""Study-definition files (``studies/*.toml``, ``adamrag-sens sweep --config``): a TOML file whose
keys are the sweep's flags with ``_`` for ``-``, read and type-checked here, without the command line.

The type rules are the flags' own: TOML's ``true`` is not ``1`` and ``"3"`` is not ``3``; a list of
numbers (``lr = [1e-3, 1e-2]``) or of names (``optimizers = ["adam", "nag"]``) stands for the
flag's comma-separated text. :func:`read_study_definition` returns each value as the command line
would give it, so a file and the command line accept and refuse the same things: the values go on
to the same parsing and :meth:`~sensitivity.study.spec.StudySpec.validate`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from sensitivity.errors import UserError
from sensitivity.study.spec import COUNT_EXAMPLES, LIST_EXAMPLES, OTHER_EXAMPLES

NUMBER_LIST, NAME_LIST, GPU_LIST = "number list", "name list", "gpu list"
TEXT, PATH, INTEGER, NUMBER, BOOLEAN = "text", "path", "integer", "number", "boolean"
POPULATION = "population"
"""A whole number or ``"auto"`` (``--population``)."""

KEYS: dict[str, str] = {
    "task": TEXT, "optimizers": NAME_LIST, "sampler": TEXT, "lr": NUMBER_LIST, "lr_points": INTEGER,
    "beta1": NUMBER_LIST, "beta2": NUMBER_LIST, "gamma": NUMBER_LIST, "weight_decay": NUMBER_LIST,
    "n_trials": INTEGER, "epochs": INTEGER, "seeds": INTEGER, "metric": TEXT, "device": TEXT, "storage": TEXT,
    "study": TEXT, "dataset": TEXT, "text_file": PATH, "schedule": TEXT, "warmup_epochs": NUMBER,
    "data_dir": PATH, "download": BOOLEAN, "train_size": INTEGER, "val_size": INTEGER, "batch_size": INTEGER,
    "divergence_factor": NUMBER, "precise_bn": INTEGER, "sampler_seed": INTEGER, "workers": INTEGER,
    "gpus": GPU_LIST, "trials_per_gpu": INTEGER, "population": POPULATION,
}
"""Every key a study definition may hold (the ``sweep`` flags, in their order) -> its kind."""

def _example(key: str, kind: str) -> str:
    """A value ``key`` accepts, as TOML: the flag's own example where the command line has one
    (:data:`~sensitivity.study.spec.LIST_EXAMPLES`, :data:`~sensitivity.study.spec.COUNT_EXAMPLES`,
    :data:`~sensitivity.study.spec.OTHER_EXAMPLES`), so a refused learning rate is shown learning rates, not a beta."""
    flag = "--" + key.replace("_", "-")
    if flag in LIST_EXAMPLES:
        return f"{key} = [{', '.join(LIST_EXAMPLES[flag].split(','))}]"
    for table in (COUNT_EXAMPLES, OTHER_EXAMPLES):
        if flag in table:
            return f"{key} = {table[flag]}"
    return {NAME_LIST: f'{key} = ["adamrag", "adam"]', GPU_LIST: f"{key} = [0, 1]", BOOLEAN: f"{key} = true",
            POPULATION: f'{key} = "auto"'}.get(kind, f'{key} = "..."')


def read_study_definition(path: Path) -> dict[str, Any]:
    """The values of a TOML study definition, checked, as the command line would give them.

    Lists become comma-separated text (``[1e-3, 1e-2]`` -> ``"0.001,0.01"``), paths
    :class:`~pathlib.Path`, numbers float; whole numbers, booleans and text keep their TOML type.

    Raises:
        UserError: an unreadable file, a TOML syntax error, an unknown key (a table too), or a value
            of the wrong type; one line naming the file and the fix.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read study definition {path} ({err.strerror}); check --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"study definition {path} is not valid TOML ({err}); fix the file") from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UserError(f"study definition {path}: unknown key(s) {', '.join(unknown)}; "
                        f"keys are the sweep flags with _ for -, e.g. {', '.join(list(KEYS)[:6])}")
    values = {}
    for key, value in data.items():
        check_value(path, key, value)
        values[key] = _as_flag(KEYS[key], value)
    return values


def _as_flag(kind: str, value: Any) -> Any:
    """A checked TOML value as the flag's parser gives it: lists (and a single number or GPU of a
    list flag) as comma-separated text, paths as Path, numbers as float."""
    if kind in (NUMBER_LIST, NAME_LIST, GPU_LIST):
        return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == PATH:
        return Path(value)
    if kind == POPULATION:
        return str(value)
    if kind == NUMBER:
        return float(value)
    return value


def _toml_kind(value: Any) -> str:
    return {bool: "a boolean", int: "a whole number", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), f"a {type(value).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_of(value: Any, ok: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(ok(v) for v in value)


def check_value(path: Path, key: str, value: Any) -> None:
    """Refuse a TOML value whose type is not the flag's (``key`` one of :data:`KEYS`).

    Raises:
        UserError: one line naming the file, the key, the value's type and the type wanted, with an
            example.
    """
    kind = KEYS[key]
    if kind == NUMBER_LIST:
        ok, wanted = _is_number(value) or isinstance(value, str) or _list_of(value, _is_number), \
            "a number or a list of numbers"
    elif kind == NAME_LIST:
        ok = isinstance(value, str) or _list_of(value, lambda v: isinstance(v, str))
        wanted = "a name or a list of names"
    elif kind == GPU_LIST:
        ok = isinstance(value, str) or _is_whole(value) or _list_of(value, _is_whole)
        wanted = "a GPU number or a list of them"
    elif kind == BOOLEAN:
        ok, wanted = isinstance(value, bool), "true or false"
    elif kind == INTEGER:
        ok, wanted = _is_whole(value), "a whole number"
    elif kind == POPULATION:
        ok = _is_whole(value) or (isinstance(value, str) and value.strip().lower() == "auto")
        wanted = 'a whole number or "auto"'
    elif kind == NUMBER:
        ok, wanted = _is_number(value), "a number"
    else:  # text and paths
        ok, wanted = isinstance(value, str), "a string"
    if not ok:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise UserError(f"study definition {path}: {key} = {shown} is {_toml_kind(value)}, but {key} takes "
                        f"{wanted} (e.g. {_example(key, kind)}); fix the file")
