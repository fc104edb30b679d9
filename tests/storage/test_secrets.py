"""Database credentials stay secret: never printed, stored, reported or put on a command line.

The masking functions are checked on URL variants against hand-written expectations; the command
line's errors, the stored study and the local workers' command lines on SQLite; and the whole
scenario (a password-protected role, ``sweep --workers 2``, then ``report``) on the PostgreSQL
server that .ci/run starts (skipped without ADAMRAG_SENS_TEST_POSTGRES_URL).

Worker command lines are read from /proc while the workers cannot finish: once the sweep has
printed its plan line (its plan is queued, its workers not yet started), the test holds a write
lock on the study's database, so each worker blocks at its first storage access and stays in the
process list until the test lets go.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.storage import has_password, mask_storage, open_storage, scrub_secrets, storage_without_password
from sensitivity.study.spec import STORAGE_ENV, StudySpec
from sensitivity.study.sweep import prepare_sweep

runner = CliRunner()

# ---- the masking functions ------------------------------------------------------------------------

MASKED = [
    # (storage as given, as it must be shown)
    ("postgresql://me:s3cret@db.example.org:5432/sens", "postgresql://me:***@db.example.org:5432/sens"),
    ("postgresql+psycopg2://me:p%40ss%2Fw%3Ard@db/sens", "postgresql+psycopg2://me:***@db/sens"),
    ("postgresql://me:100%25sure@db/sens", "postgresql://me:***@db/sens"),
    ("postgresql://me:p@ss@db/sens", "postgresql://me:***@db/sens"),  # an @ the user forgot to encode
    ("postgresql://me@db/sens?password=s3cret&sslmode=require", "postgresql://me@db/sens?password=***&sslmode=require"),
    ("postgresql://me@db/sens?PASSWORD=s3cret", "postgresql://me@db/sens?PASSWORD=***"),
    ("mysql+pymysql://me:s3cret@db/sens?charset=utf8mb4", "mysql+pymysql://me:***@db/sens?charset=utf8mb4"),
    ("mysql+pymysql://me@db/sens?passwd=s3cret", "mysql+pymysql://me@db/sens?passwd=***"),
    ("postgresql:me:s3cret@db", "postgresql:me:***@db"),  # malformed: no //
    ("postgresql://me:s3cret@db:port/sens", "postgresql://me:***@db:port/sens"),  # SQLAlchemy cannot parse the port
]
UNCHANGED = [
    "postgresql://me@db.example.org:5432/sens",
    "postgresql:///sens",
    "mysql+pymysql://me@db/sens?charset=utf8mb4",
    "sqlite:///studies/adamrag-sens.db",
    "sqlite:////srv/me:x@y/studies.db",
    "studies/adamrag-sens.db",
    "studies/run.log",
    "/shared/me:x@y/sens.log",
]


@pytest.mark.parametrize("given, shown", MASKED)
def test_a_password_is_shown_as_stars(given, shown):
    assert mask_storage(given) == shown
    assert has_password(given)


@pytest.mark.parametrize("given", UNCHANGED)
def test_storage_without_a_password_is_shown_as_given(given):
    assert mask_storage(given) == given
    assert storage_without_password(given) == given
    assert not has_password(given)


def test_a_storage_object_is_shown_by_its_masked_url_or_its_kind(tmp_path):
    import optuna

    sqlite = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    assert mask_storage(sqlite) == f"sqlite:///{tmp_path / 's.db'}"
    assert mask_storage(optuna.storages.InMemoryStorage()) == "InMemoryStorage"
    server = optuna.storages.InMemoryStorage()
    server.url = "postgresql://me:s3cret@db/sens"  # as RDBStorage keeps it
    assert mask_storage(server) == "postgresql://me:***@db/sens"


@pytest.mark.parametrize("given, expected", [
    ("postgresql://me:s3cret@db.example.org:5432/sens", "postgresql://me@db.example.org:5432/sens"),
    ("postgresql+psycopg2://me:p%40ss%2Fw%3Ard@db/sens", "postgresql+psycopg2://me@db/sens"),
    ("postgresql://me:p@ss@db/sens", "postgresql://me@db/sens"),
    ("postgresql://me@db/sens?password=s3cret&sslmode=require", "postgresql://me@db/sens?sslmode=require"),
    ("mysql+pymysql://me:s3cret@db/sens?charset=utf8mb4", "mysql+pymysql://me@db/sens?charset=utf8mb4"),
])
def test_a_command_to_copy_names_the_same_database_without_the_password(given, expected):
    assert storage_without_password(given) == expected
    url = make_url(expected)
    assert url.password is None and "password" not in url.query


def test_driver_messages_are_scrubbed_of_every_form_of_the_password():
    storage = "postgresql://me:p%40ss%2Fw%3Ard@db/sens"
    message = 'invalid dsn: missing "=" after "p@ss/w:rd" in connection info string (p%40ss%2Fw%3Ard)'
    assert scrub_secrets(message, storage) == 'invalid dsn: missing "=" after "***" in connection info string (***)'
    assert scrub_secrets("host=db user=me password=s3cret dbname=sens") == "host=db user=me password=*** dbname=sens"
    assert scrub_secrets("could not use postgresql://me:other@db/sens: refused") == (
        "could not use postgresql://me:***@db/sens: refused")
    assert scrub_secrets("nothing secret here", "sqlite:///studies/x.db") == "nothing secret here"


# ---- the command line -------------------------------------------------------------------------------

SECRET = "s3cr3t/p@ss%w0rd"
FRAGMENTS = ("s3cr3t", "w0rd")
"""Parts of the password on either side of its special characters: a leak of any part is a leak."""


def _leaks(text: str, fragments: tuple[str, ...] = FRAGMENTS) -> list[str]:
    low = text.lower()
    return [f for f in fragments if f.lower() in low]


UNREACHABLE = f"postgresql://me:{quote(SECRET, safe='')}@127.0.0.1:1/sens"


@pytest.mark.parametrize("args, env", [
    (["report", "--storage", UNREACHABLE, "--study", "x"], None),
    (["report", "--study", "x"], {STORAGE_ENV: UNREACHABLE}),
    (["worker", "--study", "x"], {STORAGE_ENV: UNREACHABLE}),
    (["compare", "--storage", UNREACHABLE, "--study", "x", "--study", "y"], None),
    (["compare", "--study", "x", "--study", "y"], {STORAGE_ENV: UNREACHABLE}),
    (["sweep", "--storage", UNREACHABLE, "--optimizers", "adam", "--lr", "1e-3", "--beta1", "0.9", "--epochs", "1"],
     None),
], ids=["report-flag", "report-env", "worker-env", "compare-flag", "compare-env", "sweep-flag"])
def test_an_unreachable_server_is_named_with_its_password_masked(args, env):
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert not _leaks(result.output), result.output
    assert "postgresql://me:***@127.0.0.1:1/sens" in result.output  # the storage the variable supplied, masked


def test_help_never_shows_the_storage_variable_s_value():
    for command in ("sweep", "worker", "report", "compare"):
        result = runner.invoke(app, [command, "--help"], env={STORAGE_ENV: UNREACHABLE})
        assert result.exit_code == 0 and STORAGE_ENV in result.output and not _leaks(result.output)


def test_the_stored_spec_holds_no_storage(tmp_path):
    db = tmp_path / "where-it-lives.db"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3,), beta1=(0.9,), epochs=1, storage=f"sqlite:///{db}",
                     study_name="s")
    prepare_sweep(spec)
    con = sqlite3.connect(db)
    try:
        rows = dict(con.execute("SELECT key, value_json FROM study_user_attributes").fetchall())
    finally:
        con.close()
    assert "storage" not in json.loads(rows["spec"])
    assert not [key for key, value in rows.items() if "where-it-lives" in value]


# ---- worker command lines, read from /proc while a `--workers 2` sweep runs ---------------------------


WORKER_MODULE = "sensitivity.study.worker_process"


def _argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        pairs = [a.decode(errors="replace").split("=", 1) for a in fh.read().split(b"\0") if b"=" in a]
    return dict(pairs)


def _worker_pids(parent: int) -> list[int]:
    """Children of ``parent`` that run ``python -m sensitivity.study.worker_process`` (exec'd, not merely forked)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid == parent and WORKER_MODULE in _argv(int(entry)):
                pids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return pids


def _workers_while_blocked(sweep, hold_lock, count: int = 2, ceiling_s: float = 300.0):
    """(plan line, [(argv, environ) of each worker]) of a running ``sweep --workers COUNT``, read while
    ``hold_lock()`` keeps every worker at its first storage access. The ceiling only bounds a hang."""
    plan_line = sweep.stdout.readline()  # printed after the plan is queued and before the workers start
    assert f"on {count} worker processes" in plan_line, (plan_line, sweep.stderr.read() if sweep.poll() else "")
    with hold_lock():
        deadline = time.monotonic() + ceiling_s
        while len(pids := _worker_pids(sweep.pid)) < count:
            assert sweep.poll() is None, sweep.communicate()
            assert time.monotonic() < deadline, f"{count} workers did not start within {ceiling_s} s"
            time.sleep(0.05)
        seen = [(_argv(pid), _environ(pid)) for pid in pids]
    return plan_line, seen


@contextlib.contextmanager
def _sqlite_write_lock(path: Path):
    con = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        con.execute("BEGIN IMMEDIATE")  # every transaction of the product's engine starts so: they wait
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


@pytest.mark.slow
def test_workers_get_the_storage_through_their_environment_not_their_command_line(tmp_path, cli_process):
    db = tmp_path / "private-place.db"
    url = f"sqlite:///{db}"
    sweep = cli_process("sweep", "--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1",
                        "--study", "env", "--workers", "2", env={STORAGE_ENV: url})
    _, workers = _workers_while_blocked(sweep, lambda: _sqlite_write_lock(db))
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    for argv, environ in workers:
        assert not [a for a in argv if "private-place" in a], argv
        assert environ[STORAGE_ENV] == url
    # the printed follow-up keeps the storage in the variable, and works
    line = next(line for line in out.splitlines() if line.startswith("report: "))
    command = shlex.split(line[len("report: "):].split("  (")[0])
    assert command[:2] == ["adamrag-sens", "report"] and "--storage" not in command
    result = runner.invoke(app, [*command[1:], "--out", str(tmp_path / "report")], env={STORAGE_ENV: url})
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "report" / "trials.csv").read_text().strip().splitlines()) == 1 + 2


# ---- the whole scenario on PostgreSQL -----------------------------------------------------------------

PG_URL = os.environ.get("ADAMRAG_SENS_TEST_POSTGRES_URL")


@pytest.fixture()
def pg_role_with_password():
    """A login role with a password of its own (SECRET's special characters, fragments unique to
    this run, so a study left by an earlier run cannot fail this one) that may use the test
    database (a member of the test URL's role), dropped afterwards with everything it owns.

    Yields:
        (its URL with the password, role name, password, the password's fragments to look for).
    """
    psycopg2 = pytest.importorskip("psycopg2")
    from psycopg2 import sql

    token = uuid.uuid4().hex[:8]
    role = f"sens_secret_{token}"
    fragments = (f"s3cr3t{token}", f"w0rd{token}")
    password = f"{fragments[0]}/p@ss%{fragments[1]}"
    ident = sql.Identifier(role)
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT current_user")
            member_of = sql.Identifier(cur.fetchone()[0])
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
    except psycopg2.Error as err:
        admin.close()
        pytest.skip(f"the test database's role cannot create a role with a password ({err})")
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("GRANT {} TO {}").format(member_of, ident))
        url = make_url(PG_URL).set(username=role, password=password).render_as_string(hide_password=False)
        yield url, role, password, fragments
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(ident))
            cur.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            cur.execute(sql.SQL("DROP ROLE {}").format(ident))
        admin.close()


@contextlib.contextmanager
def _pg_trials_lock():
    import psycopg2

    con = psycopg2.connect(PG_URL)
    try:
        with con.cursor() as cur:
            cur.execute("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE")  # not even a read of trials passes
        yield
    finally:
        con.rollback()
        con.close()


def _every_stored_value() -> str:
    """Every row of every table of the test database (every study and trial attribute, user and
    system, params, values, the queue), as JSON text, read with SQL rather than through Optuna."""
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(PG_URL)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            tables = [row[0] for row in cur.fetchall()]
            assert {"studies", "study_user_attributes", "trial_user_attributes", "trial_system_attributes"} <= set(tables)
            chunks = []
            for table in tables:
                cur.execute(sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(table)))
                chunks += [row[0] for row in cur.fetchall()]
        return "\n".join(chunks)
    finally:
        con.close()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(not PG_URL, reason="ADAMRAG_SENS_TEST_POSTGRES_URL is not set (.ci/run sets it)")
def test_a_password_protected_sweep_with_two_workers_and_its_report_leak_nothing(
        pg_role_with_password, cli_process, tmp_path):
    secret_url, role, password, fragments = pg_role_with_password
    base = make_url(PG_URL)
    name = f"sec-{uuid.uuid4().hex[:8]}"
    sweep = cli_process("sweep", "--optimizers", "adam", "--lr", "1e-3,1e-2", "--beta1", "0.9", "--epochs", "1",
                        "--storage", secret_url, "--study", name, "--workers", "2")
    plan_line, workers = _workers_while_blocked(sweep, _pg_trials_lock)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    where = f"{base.host}:{base.port}/{base.database}"

    # the terminal: the storage masked, the follow-up command without the password, and a note
    assert f"study {name} in postgresql://{role}:***@{where}" in plan_line
    assert not _leaks(plan_line + out + err, fragments), plan_line + out + err
    assert f"report: adamrag-sens report --storage postgresql://{role}@{where} --study {name}" in out
    assert "PGPASSWORD" in out

    # the process list: no worker was given the URL on its command line
    assert len(workers) == 2
    for argv, environ in workers:
        assert not _leaks(" ".join(argv), fragments) and "--storage" not in argv, argv
        assert environ[STORAGE_ENV] == secret_url

    # the database: no study or trial attribute (or anything else) holds the password
    stored = _every_stored_value()
    assert name in stored and not _leaks(stored, fragments)

    # the printed command works with the password from PGPASSWORD, and the report holds no secret
    command = shlex.split(next(line for line in out.splitlines() if line.startswith("report: "))[len("report: "):])
    out_dir = tmp_path / "report"
    assert command[:2] == ["adamrag-sens", "report"]
    result = runner.invoke(app, [*command[1:], "--out", str(out_dir)], env={"PGPASSWORD": password})
    assert result.exit_code == 0, result.output
    result_env = runner.invoke(app, ["report", "--study", name, "--out", str(tmp_path / "again")],
                               env={STORAGE_ENV: secret_url})
    assert result_env.exit_code == 0, result_env.output
    assert not _leaks(result.output + result_env.output, fragments)
    files = sorted(out_dir.iterdir())
    assert {"report.html", "report.md", "trials.csv", "summary.csv"} <= {f.name for f in files}
    for f in files:
        assert not _leaks(f.read_bytes().decode("latin-1"), fragments), f.name

    # compare names its storages in its table and page: masked there too (beside a second study in
    # the same database: one study given twice is refused)
    from tests.helpers.toy_studies import make_study

    make_study(open_storage(secret_url), f"{name}-toy", with_other_states=False)
    compared = runner.invoke(app, ["compare", "--study", name, "--study", f"{name}-toy", "--out", str(tmp_path / "cmp")],
                             env={STORAGE_ENV: secret_url})
    assert compared.exit_code == 0, compared.output
    assert not _leaks(compared.output, fragments)
    for f in sorted((tmp_path / "cmp").iterdir()):
        assert not _leaks(f.read_bytes().decode("latin-1"), fragments), f.name
    assert f"postgresql://{role}:***@" in (tmp_path / "cmp" / "compare.csv").read_text()
