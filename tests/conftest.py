"""Shared fixtures: running the command line in a child process, and fast heartbeats."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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
    (the same interpreter and package), with stdout and stderr captured; returns the Popen."""

    def start(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "sensitivity.cli", *args], cwd=tmp_path, env=_child_env(env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
        )

    return start


@pytest.fixture()
def run_cli(cli_process):
    """``run_cli(*args, env=None, timeout=180)`` runs ``adamrag-sens ARGS`` to the end; returns
    (exit code, stdout, stderr)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, str, str]:
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
