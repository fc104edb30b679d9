"""The report's words and its figures state the same facts, read once from the analysis: an
optimizer that never improved on its initial value has no "best" in any panel title, and a good
region is "the only one" only when no other optimizer swept that pair."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from sensitivity.report import analyze, figures, findings, heatmaps
from tests.helpers.trial_frames import INITIAL, grid_study

LRS = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
BETAS = [0.8, 0.9, 0.99]


def _learns(i, j):
    """A bowl in the lr level with its floor at lr 1e-2 and beta1 0.9: far below INITIAL."""
    return 1.0 + (i - 2) ** 2 + 0.5 * abs(j - 1)


def _never(i, j):
    """Every run ends above where it started: clipped to INITIAL, never an improvement."""
    return INITIAL + 10.0 + i + j


def _study(*optimizers):
    frames = [grid_study(f, LRS, BETAS, optimizer=name) for name, f in optimizers]
    return analyze(pd.concat(frames, ignore_index=True), "val_loss")


@pytest.fixture(scope="module")
def one_learns():
    return _study(("adam", _learns), ("nag", _never))


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


def test_an_optimizer_that_never_improved_has_no_best_in_any_panel(one_learns):
    assert one_learns.never_improved == ("nag",)
    words = " ".join(findings.study_findings(one_learns))
    assert "nag never improved on its initial value: no best lr" in words
    heat = _titles(heatmaps.pair_heatmaps(one_learns, "lr", "beta1"))
    nag = [t for t in heat if t.startswith("nag")]
    assert nag == ["nag: never improved on its initial value"]
    curves = one_learns.complete[["trial", "optimizer", "lr", "beta1", "beta2", "gamma", "weight_decay", "seed",
                                  "diverged"]].assign(epoch=1, train_loss=1.0, val_loss=INITIAL)
    loss = _titles(figures.loss_curves_figure(one_learns, curves))
    assert any(t.startswith("nag") and "never improved" in t and "best" not in t for t in loss), loss
    for fig in (figures.lr_sensitivity_figure(one_learns), figures.relative_performance_figure(one_learns)):
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(t.startswith("nag (never improved") for t in legend), legend


def test_a_heatmap_title_states_the_summary_best(one_learns):
    """With the default aggregation (best over the other hyperparameters) the best cell of lr x beta1
    is the summary's best point: the same value at the same lr and beta1."""
    row = one_learns.summary.set_index("optimizer").loc["adam"]
    assert row["best_value"] == pytest.approx(1.0) and row["best_lr"] == pytest.approx(1e-2)  # the bowl's floor
    title = next(t for t in _titles(heatmaps.pair_heatmaps(one_learns, "lr", "beta1")) if t.startswith("adam"))
    assert title == f"adam: best {row['best_value']:.3g} at lr 1e-2, beta1 {row['best_beta1']:g}"


def test_the_only_optimizer_with_a_region_is_not_called_the_only_one_that_swept(one_learns):
    words = " ".join(findings.study_findings(one_learns))
    assert "the only optimizer" not in words
    sentence = next(s for s in findings.study_findings(one_learns) if "good region" in s)
    assert sentence.startswith("adam's good region covers")
    assert "nag also swept beta1 but has no good region: it never improved on its initial value." in sentence


def test_a_region_alone_in_its_pair_is_still_the_only_one():
    alone = _study(("adam", _learns))
    sentence = next(s for s in findings.study_findings(alone) if "good region" in s)
    assert sentence.endswith("(the only optimizer that swept beta1).")


def test_a_ranking_of_regions_names_the_optimizer_without_one():
    three = _study(("adam", _learns), ("adamrag", lambda i, j: _learns(i, j) + 0.3 * j), ("nag", _never))
    sentence = next(s for s in findings.study_findings(three) if s.startswith("Share of the swept lr x beta1 box"))
    shares = three.summary.set_index("optimizer")["good_share_lr_beta1"]
    assert shares[["adam", "adamrag"]].notna().all() and pd.isna(shares["nag"])
    assert re.search(r"adam \d+%, adamrag \d+%|adamrag \d+%, adam \d+%", sentence), sentence
    assert sentence.endswith("nag also swept beta1 but has no good region: it never improved on its initial value.")
