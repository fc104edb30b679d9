"""The findings script's run record (scripts/findings.py, ``runs.jsonl``): one line per invocation,
rewritten as each step starts and ends, so that a run stopped mid-sweep still says what it did."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.end_to_end.test_findings_pipeline import _script


def test_the_line_of_this_invocation_is_rewritten_in_place_and_earlier_lines_are_kept(tmp_path):
    script = _script()
    path = tmp_path / "w" / "runs.jsonl"
    path.parent.mkdir()
    path.write_text('{"workload": "w", "started": "earlier"}\n')
    record = {"workload": "w", "sweeps": []}
    log = script.RunLog(path, record)
    log.save()
    record["sweeps"].append({"command": "adamrag-sens sweep ...", "returncode": None})
    log.save()
    record["sweeps"][0]["returncode"] = 0
    log.save()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"workload": "w", "started": "earlier"}
    assert lines[1:] == [{"workload": "w", "sweeps": [{"command": "adamrag-sens sweep ...", "returncode": 0}]}]
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.slow
def test_a_failed_sweep_leaves_its_step_in_the_record(tmp_path):
    """A sweep that stops (here: a definition naming no known task, exit 2) is recorded with its
    command, start and exit status; no report is written."""
    script = _script()
    studies = tmp_path / "studies"
    studies.mkdir()
    for stem in ("findings-x", "findings-x-gamma09"):
        (studies / f"{stem}.toml").write_text(f'task = "no-such-task"\nstudy = "{stem}"\nlr = [1e-3]\nepochs = 1\n')
    args = argparse.Namespace(storage=f"sqlite:///{tmp_path / 'f.db'}", out=tmp_path / "out", studies_dir=studies,
                              workers=1, no_sweep=False)
    assert script.run_workload(script.Workload("x", "findings-x", "findings-x-gamma09"), args) is None
    (line,) = (tmp_path / "out" / "x" / "runs.jsonl").read_text().splitlines()
    record = json.loads(line)
    (step,) = record["sweeps"]  # the companion never started
    assert step["command"].startswith("adamrag-sens sweep --config") and step["started"]
    assert step["returncode"] == 2 and step["wall_s"] is not None
    assert "finished" not in record and "main" not in record
    assert sorted(p.name for p in (tmp_path / "out" / "x").iterdir()) == ["runs.jsonl"]
