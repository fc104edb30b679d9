"""A worker process: the library's own entry point for a process that joins a study and runs its
queued points, ``python -m sensitivity.study.worker_process --study NAME`` (the storage URL from
:data:`~sensitivity.study.spec.STORAGE_ENV`, never on a command line that other users can read).

:func:`join_as_worker` prepares any process that works for a study (the ``adamrag-sens worker``
command uses it too); :func:`main` is the quiet process that ``sweep --workers`` starts
(:func:`sensitivity.study.parallel.worker_command`). It owns its process, so it decides how it ends:
mistakes a user can fix are one ``error:`` line on stderr and exit 2, Ctrl-C or SIGTERM exit 130,
a storage that stopped answering one line and exit 1, and every end skips the interpreter's
teardown (:func:`end_process`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, NoReturn

from sensitivity.errors import UserError, value_error
from sensitivity.study.spec import STORAGE_ENV

MAX_THREADS = 1024
"""The most torch threads a worker takes (--threads); torch itself refuses a count beyond a C int."""


def quiet_optuna() -> None:
    """Optuna logs warnings only (not a line per trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)


def join_as_worker(storage: str, study_name: str, *, device: str | None = None,
                   threads: int | None = None) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Make this process a worker of a stored study: SIGTERM ends it as Ctrl-C does (the running
    trial stored as failed), it stops when the coordinator that started it dies, it uses ``threads``
    torch threads; then join the study and queue again the points whose trial failed earlier.

    Args:
        storage, study_name: the study (made by ``adamrag-sens sweep``).
        device: this worker's device (``cuda:1``), overriding the study's.
        threads: torch intra-op threads (None: torch's default).

    Returns:
        (Optuna study, :class:`~sensitivity.study.spec.StudySpec`, planned points), as
        :func:`~sensitivity.study.sweep.join_study` returns them.

    Raises:
        UserError: ``threads`` < 1, a missing study, or data or a device this machine lacks.
    """
    from sensitivity import interrupt
    from sensitivity.study.parallel import stop_when_parent_dies
    from sensitivity.study.queue import enqueue_missing
    from sensitivity.study.sweep import join_study

    quiet_optuna()
    interrupt.install()
    stop_when_parent_dies()
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise value_error("--threads", threads, f"must lie in 1 .. {MAX_THREADS} (torch threads per worker)", "1")
        import torch

        torch.set_num_threads(threads)
    study, spec, plan = join_study(storage, study_name, device=device)
    enqueue_missing(study, plan)  # points whose trial failed earlier run again
    return study, spec, plan


def lost_connection_message(err: BaseException) -> str | None:
    """The one line for a storage that stopped answering and could not be reconnected (None when
    ``err`` is not that): the cause, secrets scrubbed, and what to do."""
    from sensitivity.storage import RECONNECT_PAUSES_S, is_connection_lost, scrub_secrets

    if not is_connection_lost(err):
        return None
    cause = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    reason = scrub_secrets(" ".join(str(getattr(cause, "orig", None) or cause).split())[:160])
    return (f"lost the connection to the study's storage and could not reconnect within "
            f"{sum(RECONNECT_PAUSES_S):.0f} s ({reason}); finished trials are stored: run the same command "
            f"again once the server is back")


def end_process(code: Any) -> NoReturn:
    """Leave with ``code`` without the interpreter's teardown.

    Tearing down torch, Optuna, SQLAlchemy and scikit-learn module by module took about 1.4 s of
    CPU on the 2-core test machine, paid after the last trial for nothing. A worker (or sweep) has
    by then committed every record (each in its own transaction) and closed its output, so the
    process flushes stdout and stderr and leaves with ``os._exit``. SQLite's write-ahead log is
    folded into the database by the next process that opens it (Optuna's and SQLite's normal
    recovery); nothing is lost. ``code`` as for :class:`SystemExit`: None or an int, or a message
    (printed on stderr, exit 1).
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sensitivity.study.worker_process",
                                     description="Run a stored study's queued points until none is left (quiet).")
    parser.add_argument("--study", required=True, help="name of the study to join")
    parser.add_argument("--device", help="device for this worker (default: the study's)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--no-wait", action="store_true", help="stop when nothing is queued")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run one quiet worker on the study named in ``argv``, the storage from
    :data:`~sensitivity.study.spec.STORAGE_ENV`, and end the process (see the module docstring)."""
    args = _arguments(argv)
    try:
        storage = os.environ.get(STORAGE_ENV)
        if not storage:
            raise UserError(f"no storage: set {STORAGE_ENV} to the study's storage URL")
        from sensitivity.study.sweep import run_worker

        study, spec, plan = join_as_worker(storage, args.study, device=args.device, threads=args.threads)
        run_worker(study, spec, plan, wait=not args.no_wait)
        code = 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as err:  # noqa: BLE001 - a lost storage is one line; anything else is a bug, shown whole
        from sensitivity.storage.local_faults import local_fault_message

        local = local_fault_message(err, os.environ.get(STORAGE_ENV))
        message = local or lost_connection_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        code = 2 if local else 1
    end_process(code)


if __name__ == "__main__":
    main()
