"""Study-definition files read by the study side alone (no command line): each key's TOML type is
the flag's, lists stand for comma-separated text, and every refusal is one line naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensitivity.errors import UserError
from sensitivity.study.definition import KEYS, NUMBER_LIST, read_study_definition
from sensitivity.study.spec import LIST_EXAMPLES, parse_floats


def _read(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return read_study_definition(path)


def test_values_come_back_as_the_command_line_gives_them(tmp_path):
    got = _read(tmp_path, 'optimizers = ["adam", "nag"]\nlr = [1e-3, 0.01]\nbeta1 = 0.9\nepochs = 3\n'
                          'warmup_epochs = 1\ndownload = true\ntext_file = "a/b.txt"\ngpus = [0, 1]\n'
                          'trials_per_gpu = 2\nstudy = "s"\n')
    assert got == {"optimizers": "adam,nag", "lr": "0.001,0.01", "beta1": "0.9", "epochs": 3,
                   "warmup_epochs": 1.0, "download": True, "text_file": Path("a/b.txt"), "gpus": "0,1",
                   "trials_per_gpu": 2, "study": "s"}
    assert isinstance(got["warmup_epochs"], float) and isinstance(got["epochs"], int)


@pytest.mark.parametrize("text, message", [
    ("epochs = 2.5\n", "epochs = 2.5 is a number, but epochs takes a whole number (e.g. epochs = 10)"),
    ("epochs = true\n", "epochs = true is a boolean, but epochs takes a whole number"),
    ('seeds = "3"\n', "seeds = '3' is a string, but seeds takes a whole number"),
    ("download = 1\n", "download = 1 is a whole number, but download takes true or false (e.g. download = true)"),
    ("divergence_factor = false\n", "divergence_factor = false is a boolean, but divergence_factor takes a number"),
    ("lr = [true]\n", "lr = [True] is a list, but lr takes a number or a list of numbers"),
    ("lr = []\n", "lr = [] is a list, but lr takes a number or a list of numbers"),
    ("optimizers = [1, 2]\n", "optimizers = [1, 2] is a list, but optimizers takes a name or a list of names"),
    ("gpus = [0.5]\n", "gpus = [0.5] is a list, but gpus takes a GPU number or a list of them"),
    ("task = 3\n", "task = 3 is a whole number, but task takes a string"),
    ("[study]\nname = 'x'\n", "study = {'name': 'x'} is a table, but study takes a string"),
])
def test_a_value_of_the_wrong_type_is_refused_with_the_type_wanted(tmp_path, text, message):
    with pytest.raises(UserError) as err:
        _read(tmp_path, text)
    assert str(err.value).startswith(f"study definition {tmp_path / 's.toml'}: ")
    assert message in str(err.value)
    assert str(err.value).endswith("; fix the file") and "\n" not in str(err.value)


def test_an_unknown_key_or_table_is_refused_naming_the_keys(tmp_path):
    with pytest.raises(UserError) as err:
        _read(tmp_path, "[sweep]\nlr = 1\n")
    assert "unknown key(s) sweep; keys are the sweep flags with _ for -, e.g. " \
           "task, optimizers, sampler, lr, lr_points, beta1" in str(err.value)


def test_a_file_that_is_not_toml_or_not_there_is_named(tmp_path):
    with pytest.raises(UserError, match="is not valid TOML"):
        _read(tmp_path, "epochs = [\n")
    with pytest.raises(UserError, match="cannot read study definition .*nope.toml"):
        read_study_definition(tmp_path / "nope.toml")


def _a_wrong_value(kind: str) -> str:
    return "[{}]" if kind == NUMBER_LIST else "{}"  # an empty table: never a value a key takes


@pytest.mark.parametrize("key", list(KEYS))
def test_the_example_a_refusal_quotes_is_a_value_the_key_takes(tmp_path, key):
    with pytest.raises(UserError) as err:
        _read(tmp_path, f"{key} = {_a_wrong_value(KEYS[key])}\n")
    example = str(err.value).split("(e.g. ", 1)[1].rsplit("); fix the file", 1)[0]
    assert example.startswith(f"{key} = "), example
    got = _read(tmp_path, example + "\n")  # raises UserError if the example is refused
    if KEYS[key] == NUMBER_LIST:  # the sweep's own example for the flag, so its bounds hold too
        flag = "--" + key.replace("_", "-")
        assert parse_floats(flag, got[key]) == parse_floats(flag, LIST_EXAMPLES[flag])


def test_a_refused_lr_list_is_shown_learning_rates_not_a_beta(tmp_path):
    with pytest.raises(UserError) as err:
        _read(tmp_path, 'lr = ["a", "b"]\n')
    assert "(e.g. lr = [1e-4, 1e-3, 1e-2])" in str(err.value) and "0.9" not in str(err.value)
