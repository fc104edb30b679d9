"""The report side end to end on small studies written directly with Optuna (no training)."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import optuna
import pandas as pd
import pytest

from sensitivity.errors import UserError
from sensitivity.report import analyze, build_report, load_trials, summarize
from sensitivity.report import figures, heatmaps, metrics, style, tolerance
from tests.helpers.toy_studies import EPOCHS, L0, add, make_study, stored_toy_study

ONE_PROCESS = True  # its tests share one stored study (tests/conftest.py)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(scope="module")
def toy_url(tmp_path_factory):
    return stored_toy_study(tmp_path_factory.mktemp("toy"))


@pytest.fixture
def toy(toy_url):
    """URL of a module-wide SQLite study named "toy", one seed (tests only read it)."""
    return toy_url


# ---- load_trials --------------------------------------------------------------------------------

def test_load_trials_gives_one_tidy_row_per_trial_with_every_state(toy):
    data = load_trials(toy, "toy")
    t = data.trials
    assert len(t) == 8 * 2 + 8 + 4 + 2
    assert t["state"].value_counts().to_dict() == {"COMPLETE": 28, "FAIL": 1, "RUNNING": 1}
    for col in ("trial", "optimizer", "optimizer_display", "lr", "beta1", "beta2", "gamma", "weight_decay",
                "seed", "value", "diverged", "initial_val_loss", "final_val_loss", "final_val_acc",
                "epochs_run", "wall_time_s", "throughput", "device", "datetime_start", "datetime_complete"):
        assert col in t.columns, col
    assert set(t.loc[t["optimizer"] == "adamrag", "optimizer_display"]) == {"AdamRAG"}
    nag = t[t["optimizer"] == "nag"]
    assert nag["beta2"].isna().all() and nag["gamma"].isna().all()
    failed = t[t["state"] == "FAIL"].iloc[0]
    assert math.isnan(failed["value"]) and math.isnan(failed["final_val_loss"])
    assert data.meta["metric"] == "val_loss" and data.meta["direction"] == "minimize"
    assert data.meta["task"] == "toy-task" and data.meta["study_name"] == "toy"
    assert len(data.complete) == 28


def test_diverged_trials_are_kept_with_value_clipped_to_initial_loss(toy):
    t = load_trials(toy, "toy").trials
    div = t[t["diverged"].fillna(False)]
    # NAG at lr 10 (log10 = 1 > -0.5 + 1.4) diverges for both beta1 values.
    assert sorted(div["optimizer"] + "@" + div["lr"].astype(str)) == ["nag@10.0", "nag@10.0"]
    assert np.allclose(div["value"], L0)
    assert div["final_val_loss"].isna().all()
    assert (div["diverged_reason"] == "non-finite loss at step 12").all()


def test_curves_are_long_with_epoch_zero_at_the_initial_loss(toy):
    data = load_trials(toy, "toy")
    c = data.curves
    first = data.complete.iloc[0]["trial"]
    mine = c[c["trial"] == first]
    assert mine["epoch"].tolist() == [0, 1, 2, 3]
    assert mine["val_loss"].iloc[0] == pytest.approx(L0)
    assert math.isnan(mine["train_loss"].iloc[0])
    div_trial = data.trials.loc[data.trials["diverged"].fillna(False), "trial"].iloc[0]
    d = c[c["trial"] == div_trial]
    assert d["epoch"].tolist() == [0, 1, 2] and math.isnan(d["val_loss"].iloc[-1])
    assert math.isnan(d["train_loss"].iloc[-1])  # inf stored as None -> NaN, never inf
    running = data.trials.loc[data.trials["state"] == "RUNNING", "trial"].iloc[0]
    assert c.loc[c["trial"] == running, "val_loss"].tolist() == [1.9]  # from intermediate values


def test_missing_study_names_the_studies_that_exist(toy):
    with pytest.raises(UserError, match=r"no study named 'nope'.*studies there: toy"):
        load_trials(toy, "nope")


def test_missing_database_is_a_user_error_and_is_not_created(tmp_path):
    path = tmp_path / "absent.db"
    with pytest.raises(UserError, match="no SQLite database"):
        load_trials(f"sqlite:///{path}", "x")
    with pytest.raises(UserError):
        load_trials(str(path), "x")
    assert not path.exists()


def test_study_without_completed_trials_is_a_user_error(sqlite_url):
    study = optuna.create_study(storage=sqlite_url, study_name="empty")
    add(study, "adam", 1e-3, state="FAIL")
    with pytest.raises(UserError, match="no completed trial"):
        load_trials(sqlite_url, "empty")


def test_loading_never_writes_to_the_database(toy):
    path = Path(toy.removeprefix("sqlite:///"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    load_trials(toy, "toy")
    load_trials(str(path), "toy")  # a bare path is read as SQLite too
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_journal_file_storage_is_read(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "study.log"
    make_study(optuna.storages.JournalStorage(JournalFileBackend(str(path))), "j", with_other_states=False)
    data = load_trials(str(path), "j")
    assert len(data.trials) == 28


# ---- figures ------------------------------------------------------------------------------------

def test_heatmap_panels_share_one_colour_scale_and_mark_divergence(toy):
    data = load_trials(toy, "toy")
    fig = heatmaps.pair_heatmaps(analyze(data.trials, "val_loss"), "lr", "beta1", thresholds={})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4  # one panel per optimizer
    norms = {(im.norm.vmin, im.norm.vmax, type(im.norm)) for im in images}
    assert len(norms) == 1
    vmin, vmax, kind = norms.pop()
    values = metrics.grid_table(data.trials, "val_loss")["value"]
    assert vmin == pytest.approx(values.min()) and vmax == pytest.approx(values.max())
    assert kind is mcolors.LogNorm  # losses spanning more than a factor 3
    by_title = {ax.get_title().split(":")[0]: ax for ax in fig.axes if ax.images}
    assert by_title["Lion"].images[0].get_array().shape == (1, 4)  # one beta1 -> a single row
    nag = by_title["NAG"]
    assert nag.images[0].get_array().shape == (2, 4)
    assert nag.get_ylabel() == "beta1 (momentum)"  # the catalog's meaning of beta1 for NAG
    assert len(nag.patches) == 2  # lr 10 diverged at both beta1 values: hatched
    assert any(t.get_text().startswith("div") for t in nag.texts)


def test_heatmaps_outline_the_cells_within_tolerance(toy):
    data = load_trials(toy, "toy")
    grid = metrics.grid_table(data.trials, "val_loss")
    lion = grid[grid["optimizer"] == "lion"].sort_values("lr")
    # a threshold between Lion's second-best and best cell: exactly one cell outlined
    limit = float(np.mean(np.sort(lion["value"])[:2]))
    fig = heatmaps.pair_heatmaps(analyze(data.trials, "val_loss"), "lr", "beta1", thresholds={"lion": limit})
    ax = next(a for a in fig.axes if a.get_title().startswith("Lion"))
    outlined = [p for p in ax.patches if p.get_edgecolor()[:3] == (1.0, 1.0, 1.0)]
    assert len(outlined) == 1


def test_lr_sensitivity_figure_marks_diverged_points_and_initial_loss(toy):
    data = load_trials(toy, "toy")
    fig = figures.lr_sensitivity_figure(analyze(data.trials, "val_loss"))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    xs = [tuple(c.get_offsets()[:, 0]) for c in ax.collections if len(c.get_offsets())]
    assert (10.0,) in xs  # NAG's diverged lr is drawn (at its clipped value), not dropped
    l0 = [ln for ln in ax.get_lines() if ln.get_label().startswith("initial loss L0")]  # (optimizers' lines are dashed too)
    assert l0 and l0[0].get_ydata()[0] == pytest.approx(L0)
    assert "best over beta1" in fig.get_suptitle()
    # each optimizer's interpolated tolerance width is in its legend entry
    widths = tolerance.tolerance_table(metrics.lr_curve(data.trials, "val_loss"), higher_is_better=False)
    labels = ax.get_legend().get_texts()
    assert any(f"width {widths.loc['adam', 'tolerance_width_decades']:.2f} dec" in t.get_text() for t in labels)


def test_lr_sensitivity_legend_marks_censored_widths_and_lists_diverged_only_when_a_run_diverged(sqlite_url):
    study = optuna.create_study(storage=sqlite_url, study_name="edge", direction="minimize")
    for key, value in (("task", "toy-task"), ("metric", "val_loss"), ("epochs", EPOCHS), ("sampler", "grid")):
        study.set_user_attr(key, value)
    for lr, final in ((1e-4, 0.2), (1e-3, 0.5), (1e-2, 1.0), (1e-1, 1.5)):  # best at the lowest swept lr
        add(study, "adam", lr, beta2=0.999, final=final)
    for lr, final in ((1e-2, 1.5), (1e-1, 0.2), (1.0, 1.5)):  # best inside the swept range
        add(study, "nag", lr, final=final)
    trials = load_trials(sqlite_url, "edge").trials
    widths = tolerance.tolerance_table(metrics.lr_curve(trials, "val_loss"), higher_is_better=False)
    assert widths.loc["adam", "tolerance_censored"] and not widths.loc["nag", "tolerance_censored"]
    labels = [t.get_text() for t in figures.lr_sensitivity_figure(analyze(trials, "val_loss")).axes[0].get_legend().get_texts()]
    adam = next(t for t in labels if t.startswith("Adam "))
    nag = next(t for t in labels if t.startswith("NAG "))
    assert f"width >= {widths.loc['adam', 'tolerance_width_decades']:.2f} dec" in adam  # the true width may be larger
    assert ">=" not in nag.split("(")[1]
    assert not any("diverged" in t for t in labels)  # no run diverged: no legend entry for a marker never drawn
    add(study, "nag", 10.0, final=math.nan)
    labels = [t.get_text() for t in figures.lr_sensitivity_figure(analyze(load_trials(sqlite_url, "edge").trials, "val_loss"))
              .axes[0].get_legend().get_texts()]
    assert any(t.startswith("diverged") for t in labels)


@pytest.mark.slow
def test_figures_save_headless(toy, tmp_path):
    data = load_trials(toy, "toy")
    analysis = analyze(data.trials, "val_loss")
    for fig in (figures.loss_curves_figure(analysis, data.curves), figures.relative_performance_figure(analysis)):
        out = tmp_path / "f.png"
        fig.savefig(out, dpi=style.DPI)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- build_report -------------------------------------------------------------------------------

@pytest.fixture
def report(seeded_toy_report):
    """The report of the toy study with two seeds (tests only read it)."""
    return seeded_toy_report[1]


def test_build_report_writes_every_file_and_a_self_contained_html(report):
    paths, out = report, report.out_dir
    for p in paths.all():
        assert p.is_file() and p.stat().st_size > 0, p
    assert {p.name for p in out.iterdir()} == {p.name for p in paths.all()}  # no staging left behind
    assert set(paths.figures) == {"lr_sensitivity", "heatmap_lr_beta1", "loss_curves", "relative_performance",
                                  "expected_best", "importance"}
    html = paths.report_html.read_text()
    assert html.count("data:image/png;base64,") == len(paths.figures)
    assert html.index('class="findings"') < html.index("<h2>Summary</h2>")  # the findings open the page
    assert not re.search(r'src="(?!data:)', html)
    assert "Wortsman" in html and "toy-task" in html and "COMPLETE: 56" in html
    md = paths.report_md.read_text()
    for fig in paths.figures.values():
        assert f"]({fig.name})" in md
    summary = pd.read_csv(paths.summary_csv)
    assert summary["optimizer"].tolist() == ["adamrag", "adam", "nag", "lion"]
    nag = summary.set_index("optimizer").loc["nag"]
    assert nag["divergence_rate"] == pytest.approx(2 / 8)
    assert nag["best_lr"] == pytest.approx(0.1) and nag["best_beta1"] == pytest.approx(0.9)
    assert len(pd.read_csv(paths.trials_csv)) == 58  # 2 seeds x 28 points, a failed and a running trial


@pytest.mark.slow  # two whole report builds
def test_build_report_twice_replaces_the_files(toy, tmp_path):
    report = build_report(toy, "toy", tmp_path / "r")
    before = pd.read_csv(report.summary_csv)
    second = build_report(toy, "toy", report.out_dir, tolerance=0.5)
    assert second.summary_csv == report.summary_csv
    after = pd.read_csv(second.summary_csv)
    wider = after["tolerance_width_decades"] - before["tolerance_width_decades"]
    assert (wider >= 0).all() and (wider > 0).any()
    assert len(list(report.out_dir.iterdir())) == len(second.all())


def test_build_report_for_a_missing_study_writes_nothing(toy, tmp_path):
    with pytest.raises(UserError):
        build_report(toy, "missing", tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # a whole report build of a seeded study
def test_several_seeds_are_averaged_with_a_band(sqlite_url):
    make_study(sqlite_url, "s", seeds=(0, 1), with_other_states=False)
    data = load_trials(sqlite_url, "s")
    curve = metrics.lr_curve(data.trials, "val_loss")
    assert (curve["n_seeds"] == 2).all()
    fig = figures.lr_sensitivity_figure(analyze(data.trials, "val_loss"), show_tolerance=False)
    assert "mean over 2 seeds" in fig.get_suptitle()
    bands = [c for c in fig.axes[0].collections if "FillBetween" in type(c).__name__]
    assert len(bands) == 4  # one min-max band per optimizer


@pytest.mark.slow  # a whole report build for another metric
def test_accuracy_report_uses_accuracy_semantics(toy, tmp_path):
    paths = build_report(toy, "toy", tmp_path / "acc", metric="val_acc")
    summary = pd.read_csv(paths.summary_csv).set_index("optimizer")
    data = load_trials(toy, "toy")
    adam = data.complete[data.complete["optimizer"] == "adam"]
    assert summary.loc["adam", "best_value"] == pytest.approx(adam["final_val_acc"].max())
    assert "accuracy within 1 point of the best" in paths.report_md.read_text()


def test_random_samples_are_binned_for_the_heatmap_and_storage_objects_are_accepted():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="rnd")
    rng = np.random.default_rng(0)
    for _ in range(30):
        add(study, "adam", float(10 ** rng.uniform(-4, -1)), beta1=float(rng.uniform(0.8, 0.99)), beta2=0.999)
    data = load_trials(storage, "rnd")
    fig = heatmaps.pair_heatmaps(analyze(data.trials, "val_loss"), "lr", "beta1")
    rows, cols = fig.axes[0].images[0].get_array().shape
    assert cols <= 7 and rows <= 8  # half decades over 3 decades; beta1 binned
    assert "learning rate binned to half decades" in fig.get_suptitle()
    # beta1 in [0.8, 0.99] falls in half decades of 1 - beta1: 0.8 (1-0.2 ~ 10^-0.5 bin), 0.9, 0.968, 0.99
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels and all(float(x) < 1 for x in labels), labels
    assert np.isfinite(summarize(data.trials, "val_loss")["lr_sensitivity"]).all()


def test_a_study_without_trials_is_a_user_error():
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="bare")
    with pytest.raises(UserError, match="no completed trial"):
        load_trials(storage, "bare")


def test_html_tables_keep_each_e_notation_number_on_one_line():
    """A browser breaks "3.16e-3" after its hyphen in a narrow column, which reads as two values."""
    import pandas as pd

    from sensitivity.report.html_report import table_html

    html = table_html(pd.DataFrame({"optimizer": ["AdamRAG"], "best lr": ["3.16e-3"], "range": ["1e-5 .. 1e+1"],
                                    "task": ["char-lm"]}))
    assert '<span class="num">3.16e-3</span>' in html
    assert '<span class="num">1e-5</span> .. <span class="num">1e+1</span>' in html
    assert "char-lm" in html and html.startswith('<div class="scroll">')
