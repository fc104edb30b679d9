"""Study definitions (studies/*.toml, `sweep --config`): the file fills flags, the command line wins."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.study import definition
from sensitivity.study.definition import KEYS
from sensitivity.study.spec import StudySpec

runner = CliRunner()
STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _sweep_parameters() -> dict:
    """The ``sweep`` command's parameters by name (its study flags), read from its signature."""
    import inspect

    from sensitivity.cli.sweep import sweep

    params = dict(inspect.signature(inspect.unwrap(sweep)).parameters)
    return {k: v for k, v in params.items() if k not in ("ctx", "config")}


def test_a_definition_takes_exactly_the_sweep_flags_each_with_the_flags_type():
    """The study side's key table (sensitivity.study.definition.KEYS) and the command's signature
    are written apart; this holds them together, kind by kind."""
    import typing

    from sensitivity.cli.sweep import sweep

    params = _sweep_parameters()
    assert list(KEYS) == list(params)  # the same keys, in the flags' order
    hints = typing.get_type_hints(inspect.unwrap(sweep), include_extras=False)
    python_type = {definition.INTEGER: int, definition.NUMBER: float, definition.BOOLEAN: bool,
                   definition.PATH: Path, definition.TEXT: str, definition.NUMBER_LIST: str,
                   definition.NAME_LIST: str, definition.GPU_LIST: str, definition.POPULATION: str}
    for key, kind in KEYS.items():
        args = [a for a in typing.get_args(hints[key]) if a is not type(None)] or [hints[key]]
        assert args[0] is python_type[kind], key


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_definitions_name_only_sweep_flags_and_validate(path):
    data = tomllib.loads(path.read_text())
    assert set(data) <= set(_sweep_parameters())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
              if k in StudySpec.__dataclass_fields__}
    StudySpec(**fields).validate()  # raises UserError on a bad value


def test_config_fills_flags_and_the_command_line_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(
        'study = "from-file"\noptimizers = ["adam", "nag"]\nlr = [1e-3, 1e-2]\nbeta1 = [0.9]\nepochs = 3\n'
    )
    result = runner.invoke(app, ["sweep", "--config", "s.toml", "--epochs", "1", "--optimizers", "adam"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="from-file", storage="sqlite:///studies/adamrag-sens.db")
    assert study.user_attrs["epochs"] == 1  # the flag, not the file's 3
    assert sorted(t.params["lr"] for t in study.trials) == [1e-3, 1e-2]  # from the file
    assert {t.params["optimizer"] for t in study.trials} == {"adam"}  # the flag


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus = 1\n", "unknown key(s) bogus"),
        ('epochs = "many"\n', "epochs = 'many' is a string, but epochs takes a whole number"),
        ("epochs = [\n", "is not valid TOML"),
        ("lr = [1e-3, -2]\n", "--lr value -2 must be > 0"),
    ],
)
def test_a_bad_definition_is_one_line_and_exit_2(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(text)
    result = runner.invoke(app, ["sweep", "--config", "bad.toml"])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "studies").exists()


def test_a_missing_definition_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", "--config", "nope.toml"])
    assert result.exit_code == 2 and "cannot read study definition nope.toml" in result.output


def test_default_toml_is_what_a_sweep_without_flags_runs():
    from sensitivity.study.space import plan_points

    data = tomllib.loads((STUDIES / "default.toml").read_text())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    from_file, default = StudySpec(**fields), StudySpec()
    for key in fields:  # each key either restates the spec's default or spells out the grid it implies
        assert getattr(from_file, key) == getattr(default, key) or (key, getattr(default, key)) == ("beta1", None)
    assert plan_points(from_file) == plan_points(default)


def test_sweep_flag_defaults_are_the_specs():
    default = StudySpec()
    checked = 0
    for name, param in _sweep_parameters().items():
        if name in StudySpec.__dataclass_fields__:
            flag_default = param.default
            if name == "population":  # text ("auto" or a size), as the spec reads it
                from sensitivity.study.spec import parse_population

                flag_default = parse_population(flag_default)
            spec_default = getattr(default, name)
            if isinstance(spec_default, tuple):
                spec_default = ",".join(spec_default) if spec_default and isinstance(spec_default[0], str) else spec_default
            assert flag_default == spec_default, name
            checked += 1
    assert checked >= 12


def test_a_table_is_refused_even_when_its_key_is_given_on_the_command_line(tmp_path, monkeypatch):
    """A ``[study]`` table was once dropped without a word when ``--study`` was given too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.toml").write_text('[study]\nname = "x"\n')
    result = runner.invoke(app, ["sweep", "--config", "t.toml", "--study", "given"])
    assert result.exit_code == 2
    assert "study = {'name': 'x'} is a table, but study takes a string" in result.output
    assert not (tmp_path / "studies").exists()
