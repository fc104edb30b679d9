"""Local storage faults named for what they are: a folder that is a file, a read-only folder or
file, read by `report` and refused by `sweep` at once.

The read-only cases need a process that file permissions bind: as root (this project's CI machine)
they are skipped, since root writes through a read-only folder; run them as root with
`setpriv --bounding-set -dac_override,-dac_read_search,-fowner --inh-caps -dac_override,-dac_read_search,-fowner
python -m pytest ...`. tests/storage/test_local_faults.py holds the variants that run as root.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import HUNG_S

SMALL = ["--optimizers", "adam", "--lr", "1e-2", "--beta1", "0.9", "--epochs", "1", "--train-size", "64",
         "--val-size", "32"]


def _permissions_bind() -> bool:
    """Whether this process is refused a file in a read-only folder (not so for root with
    CAP_DAC_OVERRIDE; so for root without it, e.g. under `setpriv --bounding-set -dac_override`)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            with open(os.path.join(folder, "probe"), "w"):
                return False
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)


ROOT = not _permissions_bind()
"""True where file permissions do not bind this process (root, as on this project's CI machine)."""


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sensitivity.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=HUNG_S)


@pytest.mark.slow
def test_a_storage_folder_that_is_a_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    done = _cli("sweep", *SMALL, "--storage", "sqlite:///afile/x.db", cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "afile" in lines[0] and "Traceback" not in done.stderr


@pytest.mark.skipif(ROOT, reason="root writes through read-only permissions")
def test_report_reads_a_wal_study_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    done = _cli("sweep", *SMALL, "--storage", f"sqlite:///{folder}/s.db", "--study", "s", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    con = sqlite3.connect(folder / "s.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    os.chmod(folder, 0o555)
    try:
        done = _cli("report", "--storage", f"sqlite:///{folder}/s.db", "--study", "s", "--out",
                    str(tmp_path / "out"), cwd=tmp_path)
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(ROOT, reason="root writes through read-only permissions")
def test_a_sqlite_file_that_cannot_be_written_is_named_at_once(tmp_path):
    db = tmp_path / "s.db"
    done = _cli("sweep", *SMALL, "--storage", f"sqlite:///{db}", "--study", "s", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    os.chmod(db, 0o444)
    done = _cli("sweep", *SMALL, "--lr", "1e-3", "--storage", f"sqlite:///{db}", "--study", "s", cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "s.db" in lines[0], done.stderr
    assert "server" not in lines[0] and "connection" not in lines[0]
