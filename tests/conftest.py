"""Shared fixtures: running the command line in a child process, fast heartbeats, and pausing
trials of child processes so that a test signals them at a known point.

Tests that signal, kill or race processes wait for events the processes make happen (a marker
file, a process ending), never for a window of time. Every wait has a ceiling (``HUNG_S``) that
only a hung process reaches: it is not how long anything is expected to take.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HUNG_S = 600.0
"""Ceiling (seconds) for a child process or an awaited event: reached only by a hung process."""


SHARED_FIXTURE_GROUPS = ("seeded_toy_report",)
"""Session fixtures that take seconds to build: the tests using one run in one test process under
``--dist loadgroup``, so it is built once rather than once per process."""

ONE_PROCESS = "ONE_PROCESS"
"""A test module that sets ``ONE_PROCESS = True`` (its tests share a module fixture that takes
seconds, such as a swept study) has its other tests run in one test process under ``--dist
loadgroup``, so the fixture is built once."""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Group tests for pytest-xdist's ``--dist loadgroup`` (what ``make test`` and ``make quick`` pass):
    the tests that use the PostgreSQL server (marked ``postgres``, or a ``postgres`` storage
    parameter) run in one test process, one after another, so one test database serves one process
    at a time (each is also safe beside the others); the tests of each fixture in
    :data:`SHARED_FIXTURE_GROUPS`, and those of each module that sets :data:`ONE_PROCESS`, run in one
    process each."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("postgres") or any(isinstance(v, str) and v == "postgres" for v in params.values()):
            item.add_marker(pytest.mark.xdist_group("postgres"))
            continue
        shared = [name for name in SHARED_FIXTURE_GROUPS if name in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
        elif getattr(getattr(item, "module", None), ONE_PROCESS, False):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist sends the ids to the scheduler
def pytest_collection_finish(session):
    """Under ``--dist loadgroup`` pytest-xdist sends each test's group to the scheduler as a suffix
    of its id ("test_x@postgres"), written to ``item._nodeid``. Since pytest 9.2 the id is read from
    ``item._id`` instead, so with pytest-xdist 3.8.0 no group reaches the scheduler and grouped tests
    are spread over the processes (pytest-dev/pytest-xdist#1386). Put the suffix where this pytest
    reads it. Nothing depends on it for correctness (the PostgreSQL tests are safe side by side); it
    keeps each shared fixture to one process."""
    if not session.config.getoption("loadgroup", default=False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before structured ids: pytest-xdist's own suffix took effect
        return
    for item in session.items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and not item.nodeid.endswith("@" + "_".join(names)) and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture(autouse=True)
def _no_storage_from_the_environment(monkeypatch):
    """A developer's ADAMRAG_SENS_STORAGE (the default of --storage) must not redirect the tests'
    sweeps and reports; tests that use it set it themselves."""
    monkeypatch.delenv("ADAMRAG_SENS_STORAGE", raising=False)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # children share 2 cores with the test process
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture()
def cli_process(tmp_path):
    """``cli_process(*args, env=None)`` starts ``adamrag-sens ARGS`` as a child process in ``tmp_path``
    (the same interpreter and package), with stdout and stderr captured; returns the Popen. Children
    still running when the test ends (it failed) are killed, so that they cannot slow later tests."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sensitivity.cli", *args], cwd=tmp_path, env=_child_env(env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()  # a coordinator's workers notice and stop (they watch their parent)
            proc.communicate()


@pytest.fixture()
def run_cli(cli_process):
    """``run_cli(*args, env=None, timeout=HUNG_S)`` runs ``adamrag-sens ARGS`` to the end; returns
    (exit code, stdout, stderr)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = HUNG_S) -> tuple[int, str, str]:
        proc = cli_process(*args, env=env)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    return run


@pytest.fixture()
def fast_heartbeat(monkeypatch):
    """Heartbeats every second, stale after 10 s (this process and the children it starts); a shorter
    grace lets a busy 2-core machine fail live trials whose heartbeat thread was briefly starved."""
    monkeypatch.setenv("ADAMRAG_SENS_HEARTBEAT_S", "1")
    monkeypatch.setenv("ADAMRAG_SENS_GRACE_S", "10")
    return {"ADAMRAG_SENS_HEARTBEAT_S": "1", "ADAMRAG_SENS_GRACE_S": "10"}


def wait_until(condition, what: str, proc: subprocess.Popen | None = None, ceiling: float = HUNG_S):
    """Poll ``condition()`` until it returns something true, and return that.

    For states that last once reached (a file written, a process ended), so how often it is polled
    does not matter. Fails at once, with its stderr, if ``proc`` ends first; fails after
    ``ceiling`` seconds (a hung process).
    """
    deadline = time.monotonic() + ceiling
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (exit code {proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {ceiling:.0f} s: a process hung")
        time.sleep(0.05)
    return value


class TrialPause:
    """The test side of ``sensitivity.train.pause_for_test``: child processes started with
    :attr:`env` pause their first trial after each of ``epochs`` (stored in the study by then),
    until :meth:`release`."""

    def __init__(self, folder: Path, epochs: tuple[int, ...] = (1,)) -> None:
        folder.mkdir()
        self.folder = folder
        (folder / "epochs").write_text(",".join(map(str, epochs)))
        # imported here, not at the top: pytest-xdist's controller loads this file too, and would
        # import torch for nothing
        from sensitivity.train import TEST_PAUSE_ENV

        self.env = {TEST_PAUSE_ENV: str(folder)}

    def in_this_process(self, monkeypatch) -> "TrialPause":
        """Make trials run by this (test) process pause, as a fresh child process's would."""
        import sensitivity.train as train

        monkeypatch.setenv(train.TEST_PAUSE_ENV, str(self.folder))
        monkeypatch.setattr(train, "_test_paused", set())
        return self

    def paused_pids(self, epoch: int = 1) -> list[int]:
        """Process ids of the children paused after ``epoch`` so far."""
        return sorted(int(p.name.split(".")[0]) for p in self.folder.glob(f"*.{epoch}.paused"))

    def wait(self, count: int, proc: subprocess.Popen, epoch: int = 1) -> list[int]:
        """Wait until ``count`` processes are paused after ``epoch`` (their pids); fails at once
        if ``proc`` (the sweep that started them) ends first."""
        def enough() -> list[int] | None:
            pids = self.paused_pids(epoch)
            return pids if len(pids) >= count else None

        return wait_until(enough, f"{count} trial(s) paused after epoch {epoch}", proc)

    def release(self, epoch: int | None = None) -> None:
        """Let the trials paused after ``epoch`` go on; None: every pause, now and later."""
        (self.folder / ("release" if epoch is None else f"release.{epoch}")).touch()


@pytest.fixture()
def trial_pause(tmp_path) -> TrialPause:
    """A :class:`TrialPause` in a folder of ``tmp_path``; pass ``trial_pause.env`` to the child."""
    return TrialPause(tmp_path / "pause")
