"""A diverged run is said one way everywhere: "counted at the initial value" in every figure legend
that crosses a diverged point (single-study and compare figures alike) and in the report's words;
compare's lr curves said "clipped to initial" where the single-study figure said "counted at the
initial value"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensitivity.report import analyze, compare_figures, figures, prose, style
from tests.helpers.trial_frames import trials_frame

ROOT = Path(__file__).resolve().parents[2]
OTHER_WORDINGS = ("clipped to initial", "clipped to l0", "counts as l0", "count as that value",
                  "diverged run is clipped", "diverged runs clipped", "drawn at the initial loss", "at their clipped value")
"""Earlier ways of saying it, in lower case."""


@pytest.fixture(scope="module")
def diverging():
    """Adam and NAG on 4 lrs; NAG's largest lr diverged."""
    lrs = list(np.logspace(-3, 0, 4))
    frames = [trials_frame([{"lr": lr, "beta1": 0.9} for lr in lrs], [0.5, 0.3, 0.4, 0.9], optimizer="adam",
                           initial=2.3),
              trials_frame([{"lr": lr, "beta1": 0.9} for lr in lrs], [0.6, 0.3, 0.5, np.nan], optimizer="nag",
                           initial=2.3, diverged=[False, False, False, True])]
    return analyze(pd.concat(frames, ignore_index=True), "val_loss", uncertainty=False)


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_every_figure_that_crosses_a_diverged_point_says_it_one_way(diverging):
    made = {
        "lr sensitivity": figures.lr_sensitivity_figure(diverging),
        "relative performance": figures.relative_performance_figure(diverging),
        "lr curves of every task (compare)": compare_figures.lr_curve_grid_figure([("a", diverging), ("b", diverging)]),
    }
    said = {what: [t for t in _legend_texts(fig) if "diverged" in t] for what, fig in made.items()}
    assert said == {what: [style.DIVERGED] for what in made}
    assert style.DIVERGED == "diverged (counted at the initial value)"


def test_the_reports_words_say_it_the_same_way():
    assert "a diverged run is counted at the initial value" in prose.BAD_RUNS


def test_no_other_wording_is_left_in_the_sources_or_the_readme():
    files = [*sorted((ROOT / "sensitivity").rglob("*.py")), ROOT / "README.md"]
    found = [f"{path.relative_to(ROOT)}: {w!r}" for path in files
             for w in OTHER_WORDINGS if w in path.read_text(encoding="utf-8").lower()]
    assert found == []
