"""Faults of a local SQLite file named for what they are: not writable, a read-only mount, a full
disk, a folder that is a file. None of them is a lost server: rerunning cannot help until the
user changes the file, the folder or the disk, so each is one line naming the path, at once,
without the retries meant for a database server (:mod:`sensitivity.storage.reconnect`).

* :func:`folder_problem`, :func:`write_problem` -- decide, from what the file system says
  (``os.access``, ``statvfs``), whether a sweep can write a database; pure functions of those
  answers, so the decision is testable where permissions do not bind (as root);
* :func:`check_writable` -- the same questions asked of the file system, raising :class:`UserError`;
* :func:`sqlite_fault` -- an ``sqlite3`` error (or one raised from it, e.g. SQLAlchemy's) read as one
  of these faults, in words; None for anything else.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from sensitivity.errors import UserError
from sensitivity.storage.urls import normalize_storage_url, sqlite_path

_FIX = "give another --storage path"


def folder_problem(folder: Path, err: OSError) -> str:
    """The line for a database folder that cannot be made (``mkdir`` raised ``err``): a part of the
    path that is a file, no permission, a read-only file system."""
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        part = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        return f"cannot make the storage folder {folder}: {part} is a file, not a folder; {_FIX}"
    if err.errno == errno.EROFS:
        return f"cannot make the storage folder {folder}: it is on a read-only file system; {_FIX}"
    return f"cannot make the storage folder {folder} ({err.strerror or err}); {_FIX}"


def write_problem(path: Path, *, exists: bool, file_writable: bool, folder_writable: bool,
                  read_only_mount: bool) -> str | None:
    """Why a sweep cannot write the SQLite database ``path``, in one line; None when it can.

    Args:
        exists: whether the file exists.
        file_writable: whether this process may write the file (``os.access(path, os.W_OK)``).
        folder_writable: whether it may create files in its folder (SQLite keeps its write-ahead
            log ``<name>-wal`` and shared memory ``<name>-shm`` there, and makes a new database there).
        read_only_mount: whether the folder is on a file system mounted read-only.
    """
    if read_only_mount:
        return (f"SQLite database {path} is on a read-only file system (a read-only mount); a sweep must write it: "
                f"{_FIX} (`adamrag-sens report` can still read it)")
    if exists and not file_writable:
        return (f"SQLite database {path} is not writable (its permissions); make it writable (chmod u+w) or "
                f"{_FIX} (`adamrag-sens report` can still read it)")
    if not folder_writable:
        what = "create the database" if not exists else f"keep its write-ahead log {path.name}-wal"
        return (f"the folder {path.parent} of SQLite database {path} is not writable, and SQLite must {what} there; "
                f"make the folder writable or {_FIX}")
    return None


def read_only_mount(folder: Path) -> bool:
    """Whether ``folder`` is on a file system mounted read-only (False where that cannot be asked)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_writable(path: Path) -> None:
    """Refuse, before anything is written, an SQLite database a sweep could not write.

    Raises:
        UserError: :func:`write_problem` of what the file system says about ``path``.
    """
    folder = path.parent if str(path.parent) else Path(".")
    problem = write_problem(path, exists=path.exists(), file_writable=os.access(path, os.W_OK),
                            folder_writable=os.access(folder, os.W_OK | os.X_OK),
                            read_only_mount=read_only_mount(folder))
    if problem is not None:
        raise UserError(problem)


_SQLITE_FAULTS = (
    ("attempt to write a readonly database", "is not writable (its permissions, or a read-only mount)"),
    ("database or disk is full", "cannot grow: the disk holding it is full (database or disk is full)"),
    ("disk i/o error", "could not be read or written by the disk (disk I/O error)"),
    ("unable to open database file", "cannot be opened (unable to open database file): its folder is "
                                     "missing or not writable"),
)


def sqlite_fault(err: BaseException) -> str | None:
    """What ``err`` says about the SQLite file, as the end of a sentence whose subject is the
    database ("... is not writable"), when it (or an exception it was raised from) is an
    ``sqlite3`` error of a local fault; None otherwise (e.g. "database is locked", which waits)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, sqlite3.Error):
            text = str(err).lower()
            return next((words for key, words in _SQLITE_FAULTS if key in text), None)
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
    return None


def local_fault_message(err: BaseException, storage: object = None) -> str | None:
    """The one line for a sweep, worker or report stopped by a local SQLite fault (:func:`sqlite_fault`)
    while it ran (a disk that filled up, a file made read-only); None for any other error.
    ``storage``: the ``--storage`` given, named in the line when it is a string. Finished trials
    are stored, each in its own transaction, so the line says what to fix and to run again."""
    fault = sqlite_fault(err)
    if fault is None:
        return None
    path = None
    if isinstance(storage, str) and storage:
        try:
            path = sqlite_path(normalize_storage_url(storage))
        except UserError:
            path = None
    subject = f"SQLite database {path}" if path is not None else "the study's SQLite database"
    return (f"{subject} {fault}; fix that, then run the same command again: finished trials are stored "
            f"and only the unfinished ones run")
