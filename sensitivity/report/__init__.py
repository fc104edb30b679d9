"""The report side: a stored study -> tidy frames -> metrics -> figures -> HTML, Markdown, CSV.

Public names: :func:`build_report` (the whole report from storage), :class:`ReportPaths`,
:func:`load_trials` and :class:`TrialsData` (the tidy trials frame, the contract with the study
side), :func:`summarize` (the per-optimizer table of tolerance metrics). The metric functions live
in :mod:`sensitivity.report.metrics`, the figures in :mod:`sensitivity.report.figures`.

Example::

    from sensitivity.report import build_report
    paths = build_report("sqlite:///studies/default.db", "digits-mlp-default", "reports/default")
    print(paths.report_html)
"""

from sensitivity.report.frame import TrialsData, load_trials
from sensitivity.report.summary import summarize
from sensitivity.report.render import ReportPaths, build_report

__all__ = ["ReportPaths", "TrialsData", "build_report", "load_trials", "summarize"]
