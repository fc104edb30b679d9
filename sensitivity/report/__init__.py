"""The report side: a stored study -> tidy frames -> one analysis -> figures -> HTML, Markdown, CSV.

Public names: :func:`build_report` (the whole report from storage), :class:`ReportPaths`,
:func:`load_trials` and :class:`TrialsData` (the tidy trials frame, the contract with the study
side), :func:`analyze` and :class:`StudyAnalysis` (the analysis of a study, computed once, that
figures, findings and renderings read), :func:`summarize` (the per-optimizer table of tolerance
metrics). The metric functions live in :mod:`sensitivity.report.metrics`, the figures in
:mod:`sensitivity.report.figures`.

Example::

    from sensitivity.report import build_report
    paths = build_report("sqlite:///studies/default.db", "digits-mlp-default", "reports/default")
    print(paths.report_html)
"""

from sensitivity.report.frame import TrialsData, load_trials
from sensitivity.report.analysis import StudyAnalysis, analyze, summarize
from sensitivity.report.build import ReportPaths, build_report

__all__ = ["ReportPaths", "StudyAnalysis", "TrialsData", "analyze", "build_report", "load_trials", "summarize"]
