"""A database a sweep left half-created (Ctrl-C while Optuna created its tables, before it stamped
its schema version) is named as such by a reader, not as "not writable", and left as it was."""

from __future__ import annotations

import sqlite3

import optuna
import pytest

from sensitivity.errors import UserError
from sensitivity.report import load_trials
from sensitivity.storage import open_storage, release_storage
from tests.helpers.sqlite_files import database_digest


def test_a_reader_names_a_half_created_database_and_leaves_it_untouched(tmp_path):
    path = tmp_path / "half.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(study_name="s", storage=storage)
    release_storage(study)
    del storage, study
    con = sqlite3.connect(path)
    con.execute("DROP TABLE alembic_version")  # what a stop between the tables and the stamp leaves
    con.commit()
    con.close()
    before = database_digest(path)
    with pytest.raises(UserError, match=r"half\.db was left half-created .* run the sweep again"):
        load_trials(f"sqlite:///{path}", "s")
    assert database_digest(path) == before
