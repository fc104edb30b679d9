"""The HTML report and the compare page in a real headless browser (Debian's chromium): the page
loads with no console error, every image decodes to a non-zero size, and a screenshot is kept.

Skipped where chromium is not installed, unless ADAMRAG_SENS_REQUIRE_BROWSER=1 (set by .ci/run,
which installs it): then a missing browser fails the test. Screenshots go to
$ADAMRAG_SENS_ARTIFACTS (default build/test-artifacts/).
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest

from sensitivity.report import build_report
from sensitivity.report.compare import StudyRef, build_compare
from tests.helpers.browser import Chromium, find_chromium
from tests.helpers.toy_studies import stored_toy_study

pytestmark = pytest.mark.slow  # builds two reports and starts a browser: about half a minute

ARTIFACTS = Path(os.environ.get("ADAMRAG_SENS_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("ADAMRAG_SENS_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (ADAMRAG_SENS_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with Chromium(binary) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    a = stored_toy_study(root, seeds=(0, 1), with_other_states=False, file_name="a.db")
    b = stored_toy_study(root, "other", with_other_states=False, file_name="b.db")
    optuna.load_study(study_name="other", storage=b).set_user_attr("task", "other-task")
    report = build_report(a, "toy", root / "report")
    compare = build_compare([StudyRef(a, "toy"), StudyRef(b, "other")], root / "compare")
    return {"report": (report.report_html, len(report.figures)), "compare": (compare.compare_html, len(compare.figures))}


@pytest.mark.parametrize("page", ["report", "compare"])
def test_page_loads_without_errors_and_every_image_decodes(browser, pages, page):
    path, n_figures = pages[page]
    shot = ARTIFACTS / f"{page}.png"
    seen = browser.inspect(path.resolve().as_uri(), shot)
    assert seen["errors"] == []
    assert len(seen["images"]) == n_figures
    for image in seen["images"]:
        assert image["error"] == "" and image["width"] > 0 and image["height"] > 0 and image["shown_width"] > 0, image
    assert seen["title"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_the_browser_check_sees_console_errors_and_broken_images(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title><link rel="icon" href="data:,"></head><body>'
                    '<script>console.error("boom")</script><img src="missing.png"></body></html>')
    seen = browser.inspect(page.as_uri(), tmp_path / "broken.png")
    assert any("boom" in e for e in seen["errors"])
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in seen["errors"]), seen["errors"]
    assert seen["images"][0]["width"] == 0 and seen["images"][0]["error"]
