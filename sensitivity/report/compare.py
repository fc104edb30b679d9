"""Several studies side by side: one table of tolerance metrics per task and optimizer, performance
profiles across tasks, and the lr curves of every task in one figure grid.

This is how a claim such as "robust across image, language and reinforcement-learning workloads"
is judged: each study (one task, possibly in its own storage) is summarised exactly as its report
does (:func:`sensitivity.report.analysis.summarize`, on the same lr axis and thresholds), and the
figures that are unit-free or direction-free across tasks -- the interpolated tolerance widths, the
good-region share and Wortsman's LR sensitivity -- are put through Dolan-More performance profiles
(Dolan & More 2002, Math. Program. 91:201-213; as AlgoPerf uses them, Dahl et al. 2023, arXiv
2306.07179): rho_s(tau) is the share of tasks on which optimizer s is within a factor tau of the best.

:func:`build_compare` writes ``compare.html`` (self-contained), ``compare.md``, ``compare.csv``
(the table), ``profiles.csv`` and the figures ``performance_profiles`` and ``lr_curves`` in every
requested format, through the same staging as :func:`sensitivity.report.build_report`.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import os
from pathlib import Path
from typing import Sequence

import optuna
import pandas as pd

from sensitivity.errors import UserError
from sensitivity.report import compare_figures, findings, html_report, improvement, markdown_report, metrics, prose
from sensitivity.report.analysis import StudyAnalysis, analyze
from sensitivity.report.build import FigureSpec, check_formats, save_figure, staged
from sensitivity.report.csv_tables import write_csv
from sensitivity.report.effective_lr import LR_AXES
from sensitivity.report.frame import TrialsData, load_trials
from sensitivity.report.tolerance import DEFAULT_TAU
from sensitivity.storage import is_journal_path, mask_storage, normalize_storage_url, sqlite_path

PROFILE_METRICS = (
    ("tolerance_width_decades", True, "tolerance width (higher is better)"),
    ("relative_width_decades", True, "relative width (higher is better)"),
    ("good_share_lr_beta1", True, "good-region share lr x beta1 (higher is better)"),
    ("lr_sensitivity", False, "LR sensitivity (lower is better)"),
)
"""(summary column, higher is better, panel title) of each figure profiled across tasks."""

TABLE_COLUMNS = (
    "task", "study", "storage", "metric", "metric_unit", "epochs", "seeds", "optimizer", "optimizer_display",
    "trials", "learned",
    "best_value", "best_lr", "tolerance_width_decades", "tolerance_censored", "relative_width_decades",
    "relative_censored", "good_share_lr_beta1", "lr_sensitivity", "divergence_rate", "lr_main_share",
    "lr_main_effect_normalised",
)
"""Leading columns of :func:`compare_table` (each metric's ``_low``/``_high`` and the other share
columns follow when present). ``metric_unit`` is the unit each study declared for its metric (one
name can carry two units: ``val_loss`` is nats/example for a classifier, nats/char for char-lm);
best values and LR sensitivities are in it. ``epochs`` (per trial) and ``seeds`` are the study's budget:
two studies of one task on other budgets are not measured alike. ``lr_main_share`` is the share of the objective's variance that lr's
main effect explains and ``lr_main_effect_normalised`` that variance divided by (L0 - L*)^2, unit-free
and comparable across optimizers and tasks (:mod:`sensitivity.report.importance`)."""

IMPROVEMENT_COLUMNS = ("task", "study", "a", "b", "probability", "low", "high", "n_seeds", "decided")
"""Columns of ``improvement.csv``: the probability that optimizer ``a``'s tuned result (its best
configuration, per seed) beats ``b``'s (rliable's probability of improvement), per study with its
seed-bootstrap interval, and over all studies (``task`` ``"all tasks"``: the mean of the per-study
probabilities, stratified bootstrap interval; ``n_seeds`` then counts the studies)."""


def _lr_main_effect(analysis: StudyAnalysis) -> pd.DataFrame:
    """Per optimizer: lr's main-effect share and normalised variance with their bounds (NaN where undefined)."""
    imp = analysis.importance
    rows = imp[(imp["region"] == "all") & (imp["term"] == "lr") & (imp["kind"] == "main")]
    out = pd.DataFrame({
        "optimizer": rows["optimizer"].to_numpy(),
        "lr_main_share": rows["share"].to_numpy(float),
        "lr_main_share_low": rows["share_low"].to_numpy(float),
        "lr_main_share_high": rows["share_high"].to_numpy(float),
        "lr_main_effect_normalised": rows["variance_normalised"].to_numpy(float),
        "lr_main_effect_normalised_low": rows["variance_normalised_low"].to_numpy(float),
        "lr_main_effect_normalised_high": rows["variance_normalised_high"].to_numpy(float),
    })
    return out


def improvement_frame(loaded: Sequence[tuple["StudyRef", TrialsData]],
                      analyses: Sequence[StudyAnalysis]) -> pd.DataFrame:
    """``improvement.csv`` (:data:`IMPROVEMENT_COLUMNS`): every ordered pair of optimizers, per study and over all."""
    frames, tuned_by_task, hib_by_task = [], {}, {}
    for label, (ref, data), analysis in zip(_labels(loaded), loaded, analyses):
        metric = analysis.settings.metric
        tuned = improvement.tuned_results(analysis.nominal, metric)
        key = f"{label} [{ref.study}]"
        tuned_by_task[key], hib_by_task[key] = tuned, analysis.settings.higher_is_better
        frames.append(improvement.improvement_table(tuned, metric).assign(task=label, study=ref.study))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(IMPROVEMENT_COLUMNS))
    names = metrics.optimizer_order(rows["a"]) if not rows.empty else []
    overall = []
    for a, b in itertools.permutations(names, 2) if len(loaded) > 1 else ():
        agg = improvement.probability_of_improvement_across_tasks(tuned_by_task, hib_by_task, a, b)
        if agg["tasks"]:
            decided = bool(agg["low"] > 0.5 or agg["high"] < 0.5)
            overall.append({"task": "all tasks", "study": "", "a": a, "b": b, "probability": agg["probability"],
                            "low": agg["low"], "high": agg["high"], "n_seeds": agg["tasks"], "decided": decided})
    if overall:
        rows = pd.concat([rows, pd.DataFrame(overall)], ignore_index=True)
    return rows[list(IMPROVEMENT_COLUMNS)]


@dataclasses.dataclass(frozen=True)
class StudyRef:
    """A study to compare: its storage (URL, path, or an Optuna storage object) and name."""

    storage: str | os.PathLike | optuna.storages.BaseStorage
    study: str


def pair_refs(storages: Sequence[str], studies: Sequence[str]) -> list[StudyRef]:
    """Pair ``--storage`` and ``--study`` values: one storage for every study, or one per study in order.

    Raises:
        UserError: fewer than two studies, as many storages as neither 1 nor the number of studies, or one
            study named twice (the same name in the same storage, however the storage is spelled).
    """
    if len(studies) < 2:
        raise UserError("compare needs at least two studies; pass --study twice or more (--study A --study B)")
    if len(storages) == 1:
        refs = [StudyRef(storages[0], s) for s in studies]
    elif len(storages) != len(studies):
        raise UserError(f"{len(storages)} --storage values for {len(studies)} --study values; give one --storage "
                        "for all studies, or one per --study in the same order")
    else:
        refs = [StudyRef(a, b) for a, b in zip(storages, studies)]
    check_distinct(refs)
    return refs


def check_distinct(refs: Sequence[StudyRef]) -> None:
    """Refuse a study given twice: the same name in the same storage, however the storage is spelled.

    Raises:
        UserError: the first repeated study, named with its (masked) storage.
    """
    seen: set[tuple[object, str]] = set()
    for ref in refs:
        key = (_storage_identity(ref.storage), ref.study)
        if key in seen:
            raise UserError(f"study {ref.study!r} in {mask_storage(ref.storage)} is given twice; compare "
                            "needs different studies (drop the repeated --study)")
        seen.add(key)


def _storage_identity(storage: str | os.PathLike | optuna.storages.BaseStorage) -> object:
    """One spelling per storage, so that ``x.db``, ``./x.db`` and ``sqlite:///x.db`` are known as one file:
    the resolved path of an SQLite or journal file, otherwise the URL as given; a storage object is itself."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    storage = os.fspath(storage)
    if is_journal_path(storage):
        return "journal:" + str(Path(storage).expanduser().resolve())
    url = normalize_storage_url(storage)
    path = sqlite_path(url)
    return "sqlite:" + str(path.expanduser().resolve()) if path is not None else url


def load_studies(refs: Sequence[StudyRef]) -> list[tuple[StudyRef, TrialsData]]:
    """Load every study before anything is written.

    Raises:
        UserError: a storage cannot be read or a study does not exist (the message names it).
    """
    return [(ref, load_trials(ref.storage, ref.study)) for ref in refs]


def _labels(loaded: Sequence[tuple[StudyRef, TrialsData]]) -> list[str]:
    """A label per study: its task, ``task (study)`` when two studies share a task, and ``#k`` (its
    position on the command line) when they share both (same study name in two storages)."""
    tasks = [str(d.meta.get("task") or ref.study) for ref, d in loaded]
    labels = [t if tasks.count(t) == 1 else f"{t} ({ref.study})" for t, (ref, _) in zip(tasks, loaded)]
    return [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def analyze_studies(
    loaded: Sequence[tuple[StudyRef, TrialsData]],
    *,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
    lr_axis: str = "nominal",
    aggregation: str = "best",
) -> list[StudyAnalysis]:
    """:func:`~sensitivity.report.analysis.analyze` of each study, once, on its own objective metric
    (direction and units from the study); ``tau``, the relative tolerance and the lr axis the same for all."""
    return [analyze(data.trials, data.meta["metric"], tau=tolerance, relative_tolerance=relative_tolerance,
                    aggregation=aggregation, lr_axis=lr_axis, declaration=data.declaration(data.meta["metric"]))
            for _, data in loaded]


def compare_table(
    loaded: Sequence[tuple[StudyRef, TrialsData]],
    *,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
    lr_axis: str = "nominal",
    aggregation: str = "best",
    analyses: Sequence[StudyAnalysis] | None = None,
) -> pd.DataFrame:
    """One row per task (study) and optimizer with every tolerance metric of :func:`~sensitivity.report.analysis.summarize`.

    Each study is read with its own objective metric (direction and units from the study); ``tau``
    and the relative tolerance are the same for every study. ``analyses``: the studies'
    :func:`analyze_studies`, when already computed.

    Returns:
        The frame, :data:`TABLE_COLUMNS` first, then the remaining summary columns; ``storage`` is
        shown with its password masked (:func:`sensitivity.storage.mask_storage`).
    """
    if analyses is None:
        analyses = analyze_studies(loaded, tolerance=tolerance, relative_tolerance=relative_tolerance,
                                   lr_axis=lr_axis, aggregation=aggregation)
    frames = []
    for label, (ref, data), analysis in zip(_labels(loaded), loaded, analyses):
        summary = analysis.summary.merge(_lr_main_effect(analysis), on="optimizer", how="left")
        summary.insert(0, "seeds", analysis.n_seeds)
        summary.insert(0, "epochs", data.meta.get("epochs"))
        summary.insert(0, "metric_unit", analysis.settings.metric_unit)
        summary.insert(0, "metric", analysis.settings.metric)
        summary.insert(0, "storage", mask_storage(ref.storage))  # a password never reaches a file
        summary.insert(0, "study", ref.study)
        summary.insert(0, "task", label)
        frames.append(summary)
    table = pd.concat(frames, ignore_index=True)
    lead = [c for c in TABLE_COLUMNS if c in table.columns]
    return table[lead + [c for c in table.columns if c not in lead]]


def profiles(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Performance profile of each :data:`PROFILE_METRICS` figure present in ``table`` (NaN counts as failure)."""
    out = {}
    for column, higher, _ in PROFILE_METRICS:
        if column not in table or table[column].notna().sum() == 0:
            continue
        wide = table.pivot_table(index="optimizer", columns="task", values=column, aggfunc="first", dropna=False)
        wide = wide.reindex(metrics.optimizer_order(table["optimizer"]))
        out[column] = metrics.performance_profile(wide, higher_is_better=higher)
    return out


@dataclasses.dataclass(frozen=True)
class ComparePaths:
    """Where :func:`build_compare` wrote each file."""

    out_dir: Path
    compare_html: Path
    compare_md: Path
    compare_csv: Path
    profiles_csv: Path
    improvement_csv: Path
    figures: dict[str, Path]
    figure_files: tuple[Path, ...]
    findings: tuple[str, ...] = ()

    def all(self) -> list[Path]:
        """Every file written."""
        return [self.compare_html, self.compare_md, self.compare_csv, self.profiles_csv, self.improvement_csv,
                *self.figure_files]


def _lr_effect_text(row: pd.Series) -> str:
    """``"98% [97, 100]; 0.150 [0.149, 0.152]"``: lr's main-effect share and normalised variance, bounds where known."""
    share, norm = row.get("lr_main_share"), row.get("lr_main_effect_normalised")
    if share is None or pd.isna(share):
        return ""
    text = f"{100 * share:.0f}%"
    if pd.notna(row.get("lr_main_share_low")) and pd.notna(row.get("lr_main_share_high")):
        text += f" [{100 * row['lr_main_share_low']:.0f}, {100 * row['lr_main_share_high']:.0f}]"
    if norm is not None and pd.notna(norm):
        text += f"; {norm:.3f}"
        if pd.notna(row.get("lr_main_effect_normalised_low")) and pd.notna(row.get("lr_main_effect_normalised_high")):
            text += f" [{row['lr_main_effect_normalised_low']:.3f}, {row['lr_main_effect_normalised_high']:.3f}]"
    return text


def _readable(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The compare table as strings for HTML and Markdown, one table per study (bounds in brackets
    where there are seeds): (heading, table) pairs in the order the studies were given. Each study's
    table holds its own metric's columns only, so that a comparison of tasks in different units is
    as narrow as one study's report."""
    parts = []
    for (study, _storage), g in table.groupby(["study", "storage"], sort=False):
        g = g.reset_index(drop=True)
        task, metric, unit = str(g["task"].iloc[0]), str(g["metric"].iloc[0]), str(g["metric_unit"].iloc[0])
        readable = prose.summary_table(g, metric=metric, unit=unit)
        heading = f"{_study_label(task, study)}: {metric}" + (f" in {unit}" if unit else "") + _budget_text(g)
        parts.append((heading, readable.fillna("")))
    return parts


def _budget_text(rows: pd.DataFrame) -> str:
    """``"; 10 epochs, 5 seeds"``: one study's budget for its heading ("" where the table has none)."""
    parts = []
    if "epochs" in rows and pd.notna(rows["epochs"].iloc[0]):
        n = int(rows["epochs"].iloc[0])
        parts.append(f"{n} epoch{'s' if n != 1 else ''}")
    if "seeds" in rows and pd.notna(rows["seeds"].iloc[0]):
        n = int(rows["seeds"].iloc[0])
        parts.append(f"{n} seed{'s' if n != 1 else ''}")
    return "; " + ", ".join(parts) if parts else ""


def _study_label(task: str, study: str) -> str:
    """``"task (study)"``; the task alone where compare_table already named its study (two studies of one task)."""
    return task if task.endswith(f"({study})") else f"{task} ({study})"


LR_EFFECT_HEADING = "lr main effect: share of the objective's variance, and var / (L0 - L*)^2"


def _lr_effect_readable(table: pd.DataFrame) -> pd.DataFrame | None:
    """lr's main effect side by side: one row per optimizer, one column per study (its task and
    name), each cell :func:`_lr_effect_text`; None when no study has the decomposition."""
    if "lr_main_share" not in table or table["lr_main_share"].isna().all():
        return None
    columns: dict[str, dict[str, str]] = {}
    for (study, _storage), g in table.groupby(["study", "storage"], sort=False):
        label = _study_label(str(g["task"].iloc[0]), str(study))
        columns[label] = {str(r["optimizer_display"]): _lr_effect_text(r) for _, r in g.iterrows()}
    frame = pd.DataFrame(columns)
    frame.index.name = "optimizer"
    return frame.reset_index().fillna("")


def build_compare(
    refs: Sequence[StudyRef],
    out_dir: str | os.PathLike,
    *,
    tolerance: float | None = None,
    relative_tolerance: float | None = None,
    lr_axis: str = "nominal",
    formats: Sequence[str] = ("png",),
) -> ComparePaths:
    """Compare stored studies and write the comparison into ``out_dir`` (see the module docstring).

    Args:
        refs: the studies (:func:`pair_refs`).
        out_dir: output folder; created if missing; earlier files of the same names are replaced.
        tolerance, relative_tolerance, lr_axis, formats: as :func:`sensitivity.report.build_report`.

    Raises:
        UserError: a study cannot be read or does not exist, or one study is given twice
            (:func:`check_distinct`); nothing is written then.
        ValueError: unknown lr axis or format, or a negative tolerance.
    """
    formats = check_formats(formats)
    if lr_axis not in LR_AXES:
        raise ValueError(f"unknown lr axis {lr_axis!r}; choose one of {sorted(LR_AXES)}")
    check_distinct(refs)
    loaded = load_studies(refs)
    analyses = analyze_studies(loaded, tolerance=tolerance, relative_tolerance=relative_tolerance, lr_axis=lr_axis)
    table = compare_table(loaded, analyses=analyses)
    profs = profiles(table)
    opening = findings.compare_findings(table) + findings.budget_findings(
        [(label, str(data.meta.get("task") or ref.study), data.meta.get("epochs"))
         for label, (ref, data) in zip(_labels(loaded), loaded)])
    display = dict(zip(table["optimizer"], table["optimizer_display"]))
    labels = {c: t for c, _, t in PROFILE_METRICS}
    lr_label = "effective learning rate" if lr_axis == "effective" else "learning rate"
    panels = list(zip(_labels(loaded), analyses))
    makers = {
        "performance_profiles": lambda: compare_figures.performance_profile_figure(profs, labels=labels, display=display),
        "lr_curves": lambda: compare_figures.lr_curve_grid_figure(panels, lr_label=lr_label),
    }
    headings = {"performance_profiles": "Performance profiles across tasks",
                "lr_curves": "Learning-rate sensitivity of every task"}
    prof_long = pd.concat(
        [p.reset_index().melt(id_vars="tau", var_name="optimizer", value_name="rho").assign(metric=k)
         for k, p in profs.items()], ignore_index=True) if profs else pd.DataFrame(columns=["tau", "optimizer", "rho", "metric"])
    out = Path(out_dir)
    files: list[Path] = []
    pngs: dict[str, bytes] = {}
    with staged(out) as stage:
        for key, make in makers.items():
            pngs[key], written = save_figure(make(), stage, key, formats)
            files += [out / p.name for p in written]
        write_csv(table, stage / "compare.csv")
        write_csv(prof_long, stage / "profiles.csv")
        write_csv(improvement_frame(loaded, analyses), stage / "improvement.csv")
        readable = _readable(table)
        settings = _settings(table, lr_axis, DEFAULT_TAU if tolerance is None else tolerance, relative_tolerance)
        lr_effect = _lr_effect_readable(table)
        (stage / "compare.md").write_text(_markdown(readable, lr_effect, opening, settings, headings, formats[0]),
                                          encoding="utf-8")
        (stage / "compare.html").write_text(_html(readable, lr_effect, opening, settings, headings, pngs, table),
                                            encoding="utf-8")
    return ComparePaths(out_dir=out, compare_html=out / "compare.html", compare_md=out / "compare.md",
                        compare_csv=out / "compare.csv", profiles_csv=out / "profiles.csv",
                        improvement_csv=out / "improvement.csv",
                        figures={k: out / f"{k}.{formats[0]}" for k in makers}, figure_files=tuple(files),
                        findings=tuple(opening))


def _settings(table: pd.DataFrame, lr_axis: str, tau: float, relative_tolerance: float | None) -> str:
    per_task = ", ".join(f"{t}: {m} ({u})" if u else f"{t}: {m}"
                         for t, (m, u) in dict(zip(table["task"], zip(table["metric"], table["metric_unit"]))).items())
    rel = "each metric's default" if relative_tolerance is None else f"{relative_tolerance:g}"
    return (f"Each study is summarised as its report does, on the {lr_axis} lr axis, with tau = {tau:g} "
            f"(a run keeps at least {100 * (1 - tau):g}% of the improvement over initialisation) and relative "
            f"tolerance {rel}. Metrics: {per_task}. Widths in decades of lr; shares of the swept box; LR "
            "sensitivity in each task's metric units; brackets: seed-bootstrap intervals where a study has "
            "two seeds or more.")


def _markdown(readable, lr_effect, findings, settings, headings, fmt) -> str:
    esc = markdown_report.markdown_text
    lines = ["# Comparison across studies", "", "**Findings.** " + esc(" ".join(findings)), "",
             "## Tolerance metrics per study and optimizer", "", esc(settings), ""]
    for heading, frame in readable:
        lines += [f"### {esc(heading)}", "", markdown_report.markdown_table(frame), ""]
    if lr_effect is not None:
        lines += [f"### {esc(LR_EFFECT_HEADING)}", "", markdown_report.markdown_table(lr_effect), ""]
    lines += ["Full numbers: [compare.csv](compare.csv), [profiles.csv](profiles.csv), "
             "[improvement.csv](improvement.csv).", ""]
    for key, heading in headings.items():
        lines += [f"## {esc(heading)}", "", markdown_report.figure_link(FigureSpec(key, key, heading), fmt), ""]
    lines += markdown_report.definitions_markdown()
    return "\n".join(lines) + "\n"


def _html(readable, lr_effect, findings, settings, headings, pngs, table) -> str:
    esc = html.escape
    studies = ", ".join(dict.fromkeys(f"{s} ({st})" for s, st in zip(table["study"], table["storage"])))
    body = [
        "<h1>Comparison across studies</h1>",
        f'<p class="findings"><b>Findings.</b> {esc(" ".join(findings))}</p>',
        f'<p class="note">Studies: {esc(studies)}</p>',
        "<h2>Tolerance metrics per study and optimizer</h2>",
        f'<p class="note">{esc(settings)}</p>',
    ]
    for heading, frame in readable:
        body += [f"<h3>{esc(heading)}</h3>", html_report.table_html(frame)]
    if lr_effect is not None:
        body += [f"<h3>{esc(LR_EFFECT_HEADING)}</h3>", html_report.table_html(lr_effect)]
    for key, heading in headings.items():
        body += [f"<h2>{esc(heading)}</h2>", f'<img alt="{esc(heading)}" src="{html_report.png_uri(pngs[key])}">']
    body += html_report.definitions_html()
    return html_report.html_page("Comparison across studies", body)
