"""`adamrag-sens compare`: studies of different tasks (and storages) side by side, and its mistakes."""

from __future__ import annotations

import re

import numpy as np
import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.report.compare import StudyRef, build_compare, pair_refs
from sensitivity.errors import UserError
from tests.helpers.toy_studies import EPOCHS, add, make_study, stored_toy_study

ONE_PROCESS = True  # its cases share stored studies (tests/conftest.py)

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()


@pytest.fixture(scope="module")
def two_storages(tmp_path_factory):
    """Two SQLite files: "toy" (task toy-task, val_loss, 2 seeds) and "acc" (task acc-task, val_acc)."""
    root = tmp_path_factory.mktemp("cmp")
    a = stored_toy_study(root, seeds=(0, 1), with_other_states=False, file_name="a.db")
    b = stored_toy_study(root, "acc", with_other_states=False, file_name="b.db")
    other = optuna.load_study(study_name="acc", storage=b)
    other.set_user_attr("task", "acc-task")
    other.set_user_attr("metric", "val_acc")
    return a, b


@pytest.fixture(scope="module")
def compared(two_storages, tmp_path_factory):
    a, b = two_storages
    out = tmp_path_factory.mktemp("out") / "cmp"
    return build_compare([StudyRef(a, "toy"), StudyRef(b, "acc")], out, formats=("png", "svg"))


@pytest.mark.slow
def test_compare_writes_table_profiles_and_figures(compared):
    for path in compared.all():
        assert path.is_file() and path.stat().st_size > 0, path
    assert {p.name for p in compared.figure_files} == {"performance_profiles.png", "performance_profiles.svg",
                                                      "lr_curves.png", "lr_curves.svg"}
    table = pd.read_csv(compared.compare_csv)
    # one row per task and optimizer, each task with its own metric
    assert sorted(set(zip(table["task"], table["metric"]))) == [("acc-task", "val_acc"), ("toy-task", "val_loss")]
    assert len(table) == 8 and set(table["optimizer"]) == {"adamrag", "adam", "nag", "lion"}
    # the 2-seed study has bounds, the 1-seed one does not
    toy = table[table["task"] == "toy-task"]
    assert toy["tolerance_width_decades_low"].notna().all()
    assert table[table["task"] == "acc-task"]["tolerance_width_decades_low"].isna().all()
    html = compared.compare_html.read_text()
    assert html.count("data:image/png;base64,") == 2 and not re.search(r'src="(?!data:)', html)
    assert html.index('class="findings"') < html.index("<table")


@pytest.mark.slow
def test_profiles_follow_from_the_table(compared):
    table = pd.read_csv(compared.compare_csv)
    prof = pd.read_csv(compared.profiles_csv)
    widths = table.pivot(index="optimizer", columns="task", values="tolerance_width_decades")
    at_one = prof[(prof["metric"] == "tolerance_width_decades") & np.isclose(prof["tau"], 1.0)].set_index("optimizer")
    for name, row in widths.iterrows():
        # rho(1): the share of tasks on which this optimizer has the widest range (ties count for all)
        expected = float(np.mean([row[t] == widths[t].max() for t in widths.columns]))
        assert at_one.loc[name, "rho"] == pytest.approx(expected)


def test_pairing_storages_with_studies():
    assert pair_refs(["s"], ["a", "b"]) == [StudyRef("s", "a"), StudyRef("s", "b")]
    assert pair_refs(["s", "t"], ["a", "b"]) == [StudyRef("s", "a"), StudyRef("t", "b")]
    with pytest.raises(UserError, match="3 --storage values for 2 --study"):
        pair_refs(["s", "t", "u"], ["a", "b"])
    with pytest.raises(UserError, match="at least two studies"):
        pair_refs(["s"], ["a"])


@pytest.mark.parametrize("storages, studies", [
    (["s.db"], ["a", "a"]),                                      # one storage for both
    (["s.db", "./s.db"], ["a", "a"]),                            # one file spelled two ways
    (["s.db", "sqlite:///s.db"], ["a", "a"]),                    # a path and its URL
    (["s.db"], ["a", "b", "a"]),                                 # the repeat is not next to its twin
    (["run.log", "./run.log"], ["a", "a"]),                      # a journal file
    (["postgresql://u@h/db"], ["a", "a"]),                       # a server URL
])
def test_one_study_named_twice_is_refused(storages, studies, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="'a' in .* is given twice; compare needs different studies"):
        pair_refs(storages, studies)


def test_build_compare_refuses_one_study_given_twice_before_writing(tmp_path):
    """Library callers pass StudyRefs straight in: the same study twice (one storage object, or one
    file by two spellings) is refused there too, and no output folder is made."""
    url = stored_toy_study(tmp_path / "db")
    storage = optuna.storages.InMemoryStorage()
    for refs in ([StudyRef(storage, "toy"), StudyRef(storage, "toy")],
                 [StudyRef(url, "toy"), StudyRef(url.removeprefix("sqlite:///"), "toy")]):
        with pytest.raises(UserError, match="'toy' in .* is given twice"):
            build_compare(refs, tmp_path / "cmp")
        assert not (tmp_path / "cmp").exists()


def test_same_name_in_two_storages_is_two_studies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(pair_refs(["a.db", "b.db"], ["s", "s"])) == 2
    assert len(pair_refs(["postgresql://u@h/one", "postgresql://u@h/two"], ["s", "s"])) == 2


@pytest.mark.slow
def test_compare_from_the_command_line_in_two_storages(two_storages, tmp_path):
    a, b = two_storages
    out = tmp_path / "c"
    result = runner.invoke(app, ["compare", "--storage", a, "--study", "toy", "--storage", b, "--study", "acc",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "compare.html").is_file() and "widest tolerated lr range" in result.output


@pytest.fixture(scope="module")
def small_storage(tmp_path_factory):
    """One study "toy" of two trials: enough for the mistakes, which stop before drawing anything
    (and write nothing, so the cases share it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('small') / 'small.db'}"
    study = optuna.create_study(storage=url, study_name="toy")
    for lr in (1e-3, 1e-2):
        add(study, "adam", lr, beta2=0.999)
    return url


@pytest.mark.parametrize("args, message", [
    (["--study", "toy", "--study", "nope"], "no study named 'nope'"),
    (["--study", "toy"], "compare needs at least two studies"),
    (["--study", "toy", "--study", "toy", "--format", "gif"], "unknown figure format gif"),
    (["--study", "toy", "--study", "toy", "--tolerance", "-0.1"], "--tolerance -0.1 must be a finite number >= 0"),
])
def test_compare_mistakes_are_one_line_exit_2_and_write_nothing(small_storage, tmp_path, args, message):
    out = tmp_path / "c"
    result = runner.invoke(app, ["compare", "--storage", small_storage, "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
    assert not out.exists()


def _two_unit_studies(char_first):
    """Two toy val_loss studies in one storage, one declaring nats/example, the other nats/char (an
    Optuna storage object: compare takes one as the report does)."""
    from sensitivity import records

    storage = optuna.storages.InMemoryStorage()
    plain = make_study(storage, "plain", with_other_states=False)
    plain.set_user_attr(records.METRIC_DECLARATIONS, [records.VAL_LOSS.to_dict()])
    chars = make_study(storage, "chars", with_other_states=False)
    chars.set_user_attr("task", "char-task")
    chars.set_user_attr(records.METRIC_DECLARATIONS,
                        [records.Metric("val_loss", "minimize", "nats/char", "validation loss").to_dict()])
    return [StudyRef(storage, s) for s in (["chars", "plain"] if char_first else ["plain", "chars"])]


@pytest.fixture
def registry_restored():
    from sensitivity import records
    yield
    records.declare_metrics([records.VAL_LOSS])  # the process-wide registry as the built-in tasks left it


TWO_UNITS = {"toy-task": "nats/example", "char-task": "nats/char"}


@pytest.mark.parametrize("char_first", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_one_metric_name_in_two_units_keeps_each_studys_unit(char_first, registry_restored):
    """``val_loss`` is nats/example for a classifier and nats/char for char-lm: each study's table
    columns, CSV rows and lr-curve panel carry its own unit, whichever study was loaded last."""
    from sensitivity.report import compare as compare_module
    from sensitivity.report import compare_figures

    loaded = compare_module.load_studies(_two_unit_studies(char_first))
    analyses = compare_module.analyze_studies(loaded)
    table = compare_module.compare_table(loaded, analyses=analyses)
    assert dict(zip(table["task"], table["metric_unit"])) == TWO_UNITS
    readable = dict(compare_module._readable(table))  # one table per study, with its own unit's columns only
    assert list(readable) == [f"{t} ({s}): val_loss in {TWO_UNITS[t]}; 3 epochs, 1 seed"
                              for t, s in (("char-task", "chars"), ("toy-task", "plain"))][:: 1 if char_first else -1]
    for heading, rows in readable.items():
        unit = TWO_UNITS[heading.split(" ")[0]]
        other = "nats/char" if unit == "nats/example" else "nats/example"
        assert (rows[f"LR sensitivity ({unit})"] != "").all() and len(rows) == 4
        assert f"LR sensitivity ({other})" not in rows.columns
    assert "toy-task: val_loss (nats/example)" in compare_module._settings(table, "nominal", 0.05, None)
    fig = compare_figures.lr_curve_grid_figure(list(zip(compare_module._labels(loaded), analyses)))
    labels = {ax.get_title(): ax.get_ylabel() for ax in fig.axes if ax.get_title()}
    assert labels == {task: f"final validation loss ({unit})" for task, unit in TWO_UNITS.items()}


@pytest.mark.slow
def test_the_compare_files_carry_each_studys_unit(tmp_path, registry_restored):
    paths = build_compare(_two_unit_studies(True), tmp_path / "out")
    table = pd.read_csv(paths.compare_csv)
    assert dict(zip(table["task"], table["metric_unit"])) == TWO_UNITS
    assert (table["storage"] == "InMemoryStorage").all()  # a storage object is named by its kind
    md = paths.compare_md.read_text()
    assert "LR sensitivity (nats/example)" in md and "LR sensitivity (nats/char)" in md
    assert "toy-task: val\\_loss (nats/example)" in md and "char-task: val\\_loss (nats/char)" in md


def test_studies_of_one_task_on_other_budgets_are_said_to_differ():
    """The budget (epochs a trial, seeds) heads each study's table and is in compare.csv; studies of one
    task trained for other numbers of epochs get a sentence saying so, tasks compared once do not."""
    storage = optuna.storages.InMemoryStorage()
    short, long_ = make_study(storage, "short", with_other_states=False), make_study(storage, "long", with_other_states=False)
    long_.set_user_attr("epochs", 5)  # the stored budget a report reads (the toy curves stay short)
    from sensitivity.report import compare as compare_module, findings
    refs = [StudyRef(storage, study.study_name) for study in (short, long_)]
    loaded = compare_module.load_studies(refs)
    table = compare_module.compare_table(loaded)
    assert dict(zip(table["study"], table["epochs"])) == {"short": EPOCHS, "long": 5}
    assert set(table["seeds"]) == {1}
    headings = [h for h, _ in compare_module._readable(table)]
    assert headings[0].endswith(f"; {EPOCHS} epochs, 1 seed") and headings[1].endswith("; 5 epochs, 1 seed")
    sentences = findings.budget_findings([("toy (short)", "toy", 2), ("toy (long)", "toy", 5), ("other", "other", 9)])
    assert sentences == ["The toy studies train for different budgets (toy (short) 2 epochs, toy (long) 5 epochs "
                         "a trial): their widths and best values are measured on different budgets, not alike."]
    assert findings.budget_findings([("a", "toy", 3), ("b", "toy", 3), ("c", "other", 9)]) == []
