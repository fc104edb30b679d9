"""The variance decomposition, ablation path and probability of improvement as the report and
`compare` write them: importance.csv recomputable from trials.csv, the figure and the findings
sentences, ablation.csv, compare's normalised lr main effect and improvement.csv."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from sensitivity.report import build_report
from sensitivity.report.compare import IMPROVEMENT_COLUMNS, build_compare, pair_refs
from tests.helpers.toy_studies import make_study, stored_toy_study

REQUIRED = ("optimizer", "term", "kind", "share", "share_low", "share_high")


@pytest.fixture
def seeded(seeded_toy_report):
    """A grid study with two seeds, and its report (tests only read them)."""
    return seeded_toy_report


def _main_share_from_trials(trials: pd.DataFrame, optimizer: str, hp: str, others: tuple[str, ...]) -> float:
    """The functional-ANOVA main share of ``hp`` recomputed by hand: the objective min(L, L0) (L0 for a
    diverged run), cell means over seeds, the variance over ``hp`` of the mean over the other
    hyperparameters divided by the variance of the cell means plus the within-cell (seed) variance,
    every cell weighted equally."""
    done = trials[(trials["state"] == "COMPLETE") & (trials["optimizer"] == optimizer)].copy()
    y = np.minimum(done["final_val_loss"].astype(float), done["initial_val_loss"].astype(float))
    y = y.where(~(done["diverged"].fillna(False).astype(bool) | ~np.isfinite(done["final_val_loss"].astype(float))),
                done["initial_val_loss"].astype(float))
    done["y"] = y
    cells = done.groupby([hp, *others])["y"]
    means = cells.mean()
    within = (done["y"] - cells.transform("mean")).pow(2).groupby([done[hp], *(done[o] for o in others)]).mean()
    total = means.var(ddof=0) + within.mean()
    main = means.groupby(level=hp).mean().var(ddof=0)
    return float(main / total)


def test_importance_csv_has_every_index_and_the_grid_share_is_recomputable_from_trials_csv(seeded):
    _, paths = seeded
    table = pd.read_csv(paths.importance_csv)
    assert all(c in table.columns for c in REQUIRED)
    assert set(table["kind"]) >= {"main", "interaction", "total", "noise"}
    trials = pd.read_csv(paths.trials_csv)
    for optimizer in ("adam", "adamrag", "nag"):
        row = table[(table.optimizer == optimizer) & (table.region == "all") & (table.term == "lr")
                    & (table.kind == "main")].iloc[0]
        assert row["share"] == pytest.approx(_main_share_from_trials(trials, optimizer, "lr", ("beta1",)), abs=1e-9)
        assert row["share_low"] <= row["share"] + 1e-12 and row["share"] <= row["share_high"] + 1e-12
        inter = table[(table.optimizer == optimizer) & (table.region == "all") & (table.kind == "interaction")]
        assert list(inter["term"]) == ["lr x beta1"]


def test_the_report_draws_the_importance_figure_and_says_it_in_the_findings(seeded):
    _, paths = seeded
    assert paths.figures["importance"].exists() and paths.figures["importance"].stat().st_size > 10_000
    sentences = [s for s in paths.findings if "of the variance" in s]
    assert {s.split(":")[0] for s in sentences} == {"AdamRAG", "Adam", "NAG", "Lion"}
    assert all("[" in s for s in sentences)  # two seeds: every share has its interval
    md = paths.report_md.read_text()
    assert "importance.csv" in md and "importance.png" in md and "ablation.csv" in md
    assert "Which hyperparameter matters" in paths.report_html.read_text()


def test_ablation_csv_walks_from_the_library_defaults_to_the_best_point(seeded):
    _, paths = seeded
    ablation = pd.read_csv(paths.ablation_csv)
    adam = ablation[ablation.optimizer == "adam"].sort_values("step")
    assert adam.iloc[0]["note"].startswith("library defaults")  # lr 1e-3, beta1 0.9 is on the toy grid
    summary = pd.read_csv(paths.summary_csv).set_index("optimizer")
    assert adam.iloc[-1]["value"] == pytest.approx(summary.loc["adam", "best_value"])
    gains = adam["improvement"].dropna()
    total = adam.iloc[0]["value"] - adam.iloc[-1]["value"]
    assert gains.sum() == pytest.approx(total)


@pytest.mark.slow  # a second whole report build
def test_with_one_seed_the_shares_carry_no_interval_and_the_findings_claim_none(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "one-seed")
    paths = build_report(url, "one-seed", tmp_path / "r")
    table = pd.read_csv(paths.importance_csv)
    lr = table[(table.region == "all") & (table.term == "lr") & (table.kind == "main")]
    assert lr["share"].between(0, 1).all() and lr["share_low"].isna().all()  # one seed: no interval
    sentences = [s for s in paths.findings if "of the variance" in s]
    assert len(sentences) == 4 and not any("[" in s for s in sentences)
    assert all("no interval" in s for s in sentences if "explains most" not in s and not s.startswith("Lion"))


@pytest.mark.slow  # a second study's report and the compare page
def test_compare_shows_the_normalised_lr_main_effect_and_the_probability_of_improvement(seeded, tmp_path):
    _, paths = seeded
    url = stored_toy_study(tmp_path, seeds=(0, 1))  # a copy of the seeded study, beside which "toy-2" is written
    make_study(url, "toy-2", seeds=(0, 1, 2))
    out = build_compare(pair_refs([url], ["toy", "toy-2"]), tmp_path / "cmp")
    table = pd.read_csv(out.compare_csv)
    imp = pd.read_csv(paths.importance_csv)
    for _, row in table[table.study == "toy"].iterrows():
        want = imp[(imp.optimizer == row["optimizer"]) & (imp.region == "all") & (imp.term == "lr")
                   & (imp.kind == "main")].iloc[0]
        assert row["lr_main_share"] == pytest.approx(want["share"])
        assert row["lr_main_effect_normalised"] == pytest.approx(want["variance_normalised"])
    md = out.compare_md.read_text()
    # one table per study; the two studies of one task are told apart by name
    assert "### toy-task (toy): val\\_loss in nats/example" in md and "### toy-task (toy-2): val\\_loss" in md
    # lr's main effect side by side: an optimizer per row, a study per column
    from sensitivity.report.compare import LR_EFFECT_HEADING, _lr_effect_readable

    assert LR_EFFECT_HEADING.split(":")[0] in md
    effect = _lr_effect_readable(table).set_index("optimizer")
    assert list(effect.columns) == ["toy-task (toy)", "toy-task (toy-2)"] and len(effect) == 4
    adamrag = table[(table.study == "toy") & (table.optimizer == "adamrag")].iloc[0]
    assert effect.loc["AdamRAG", "toy-task (toy)"].startswith(f"{100 * adamrag['lr_main_share']:.0f}% [")
    improvement = pd.read_csv(out.improvement_csv)
    assert tuple(improvement.columns) == IMPROVEMENT_COLUMNS
    per_study = improvement[improvement.study == "toy"]
    pairs = per_study.set_index(["a", "b"])["probability"]
    for (a, b), p in pairs.items():  # P(a beats b) + P(b beats a) = 1 (ties count one half each)
        assert p + pairs[(b, a)] == pytest.approx(1.0)
    overall = improvement[improvement.task == "all tasks"]
    assert len(overall) == 12 and (overall["n_seeds"] == 2).all()
    assert overall["probability"].between(0, 1).all()
