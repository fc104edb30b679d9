"""The importance figure and findings sentences read the table, and say only what the intervals allow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sensitivity.report import importance as I
from sensitivity.report import importance_figure as IF
from tests.helpers.trial_frames import grid_study

LRS = [1e-4, 1e-3, 1e-2]
BETA1S = [0.8, 0.9]


def _seeded(f, optimizer="lion"):
    return grid_study(f, LRS, BETA1S, seeds=(0, 1, 2), noise={0: -0.05, 1: 0.0, 2: 0.05}, optimizer=optimizer)


def test_findings_name_the_lead_and_the_interaction_with_their_intervals():
    a, b = [0.0, 2.0, 4.0], [0.0, 1.0]
    study = _seeded(lambda i, j: a[i] + b[j] + 4.0 * (i == 2) * (j == 1))
    table = I.importance_table(study, "val_loss")
    (sentence,) = IF.importance_findings(table, display={"lion": "Lion"})
    lr = table[(table.term == "lr") & (table.kind == "main") & (table.region == "all")].iloc[0]
    inter = table[(table.kind == "interaction") & (table.region == "all")].iloc[0]
    expect_lr = f"{100 * lr.share:.0f} % [{100 * lr.share_low:.0f}, {100 * lr.share_high:.0f}]"
    assert inter.share >= 0.05 and inter.share_low > 0  # the premise: an interaction worth naming
    expect_inter = f"{100 * inter.share:.0f} % [{100 * inter.share_low:.0f}, {100 * inter.share_high:.0f}]"
    assert sentence.startswith(f"Lion: lr explains most, {expect_lr} of the variance")
    assert f"the lr x beta1 interaction {expect_inter}" in sentence


def test_findings_do_not_rank_shares_whose_intervals_overlap():
    # lr and beta1 effects of equal size, seed noise as large: the intervals overlap
    rng = np.random.default_rng(0)
    study = grid_study(lambda i, j: [0.0, 1.0, 0.0][i] + [0.0, 1.0][j], LRS, BETA1S, seeds=(0, 1, 2))
    study["final_val_loss"] += rng.normal(scale=0.8, size=len(study))
    table = I.importance_table(study, "val_loss")
    mains = table[(table.kind == "main") & (table.region == "all")].set_index("term")
    assert not (mains.loc["beta1", "share_high"] < mains.loc["lr", "share_low"]
                or mains.loc["lr", "share_high"] < mains.loc["beta1", "share_low"])  # the premise
    (sentence,) = IF.importance_findings(table)
    assert "do not separate" in sentence
    assert "most" not in sentence


def test_one_swept_hyperparameter_is_said_to_be_the_only_one():
    # one beta1: lr explains all the variance between points, which the sentence must not sell as a finding
    study = grid_study(lambda i, j: [0.0, 2.0, 4.0][i], LRS, [0.9], seeds=(0, 1, 2), noise={0: -0.05, 1: 0.0, 2: 0.05})
    table = I.importance_table(study, "val_loss")
    (sentence,) = IF.importance_findings(table)
    assert sentence.startswith("adam: lr, the only hyperparameter swept, explains "), sentence
    assert "beta1" not in sentence


def test_findings_of_a_constant_objective_say_undefined():
    (sentence,) = IF.importance_findings(I.importance_table(grid_study(lambda i, j: 1.0, LRS, BETA1S), "val_loss"))
    assert sentence == "adam: no variance decomposition (undefined: the objective does not vary)."


def test_figure_has_a_bar_panel_and_an_interaction_matrix_per_optimizer(tmp_path):
    study = pd.concat([_seeded(lambda i, j: i + j * i), _seeded(lambda i, j: j, optimizer="adam")], ignore_index=True)
    table = I.importance_table(study, "val_loss")
    fig = IF.importance_figure(table, display={"lion": "Li$on"})  # a '$' is no mathtext
    axes = fig.get_axes()
    assert len(axes) == 4
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles[0] == "Adam: exact (grid)" or titles[0].startswith("adam")
    assert any(t.startswith("Li\\$on") for t in titles)
    # one key for every panel, below them (inside a panel it hid the ends of the bars)
    assert all(ax.get_legend() is None for ax in axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["main effect", "total effect", "noise (seeds)"]
    fig.savefig(tmp_path / "importance.png")
    top_of_key = legend.get_window_extent().y1
    assert all(top_of_key <= ax.get_tightbbox().y0 + 1 for ax in axes)  # below every panel
    assert (tmp_path / "importance.png").stat().st_size > 10_000
