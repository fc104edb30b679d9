"""Fixtures shared by the report tests: one report of a seeded study, built once per test process."""

from __future__ import annotations

import pytest

from sensitivity.report import build_report
from tests.helpers.toy_studies import stored_toy_study


@pytest.fixture(scope="session")
def seeded_toy_report(tmp_path_factory):
    """(URL, ReportPaths): the toy study with two seeds, a failed and a running trial, and its report
    with every figure. Built once per test process (a whole report takes seconds); tests only read it."""
    folder = tmp_path_factory.mktemp("seeded-toy")
    url = stored_toy_study(folder, seeds=(0, 1))
    return url, build_report(url, "toy", folder / "report")
