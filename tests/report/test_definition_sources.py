"""Every definition the report prints cites a source a reader of this repository can open: a paper,
or the README's "Metrics" section, where each metric the report names is defined under its name."""

from __future__ import annotations

import re
from pathlib import Path

from sensitivity.report import prose

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else None]


def test_project_sources_are_readme_sections_that_define_the_metric():
    metrics = _section(README.read_text(encoding="utf-8"), "\n## Metrics")
    own = [(name, source) for name, _, source in prose.DEFINITIONS if "adamrag-sens" in source]
    assert own, "the project's own definitions (tolerance width, share) cite the project"
    for name, source in own:
        cited = re.search(r"adamrag-sens (\S+), (\w+)", source)
        assert cited, source
        assert cited.group(1) == "README", f"{name}: cites {cited.group(1)}, which this repository does not hold"
        assert f"## {cited.group(2)}" in README.read_text(encoding="utf-8")
        assert f"**{name}**" in metrics, f"{name} is not defined in the README's Metrics section"


def test_every_definition_has_a_source():
    for name, text, source in prose.DEFINITIONS:
        assert text and source.strip(), name
