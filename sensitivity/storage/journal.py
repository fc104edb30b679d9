"""Journal files (Optuna's JournalStorage, ``*.log``): the integrity checks that keep a record torn
by a crash from being followed by new ones, and the read-only view of a damaged journal's whole records.
Optuna's file lock orders all writes; the heartbeat Optuna lacks for journals is
:class:`sensitivity.storage._optuna.JournalHeartbeatStorage`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sensitivity.errors import UserError

JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
"""File name endings that make a storage a journal file."""


def is_journal_path(storage: str) -> bool:
    """True for a storage given as a journal file path (``*.log``, ``*.jsonl``, ``*.journal``)."""
    return "://" not in storage and Path(storage).suffix in JOURNAL_SUFFIXES


def check_journal_file(path: Path) -> None:
    """Refuse a path that is a folder or a file that is not an Optuna journal (nothing is written).

    Raises:
        UserError: a folder, an unreadable file, or a first line that is not an Optuna journal record.
    """
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a journal file, e.g. --storage {path}/studies.log")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as fh:
            first = fh.readline(1 << 20)
        record = json.loads(first)
    except OSError as err:
        raise UserError(f"cannot read journal file {path} ({err.strerror}); check its permissions") from None
    except ValueError:
        record = None
    if not (isinstance(record, dict) and "op_code" in record):
        raise UserError(f"{path} is not an Optuna journal file; give another --storage path (the file was left untouched)")


def journal_damage(path: Path) -> tuple[int, int] | None:
    """Where an Optuna journal file stops being whole: ``(line number, byte offset)`` of its first
    record that is cut off (no line end) or not an Optuna record, or None when every line is one.

    A process killed while appending leaves exactly such a torn tail; Optuna skips a torn last line
    but fails on one followed by anything, so a record appended after it corrupts the journal.
    The ``byte offset`` is the size of the whole records before the damage.
    """
    offset = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            whole = line.endswith(b"\n")
            if whole:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                whole = isinstance(record, dict) and "op_code" in record
            if not whole:
                return number, offset
            offset += len(line)
    return None


def _journal_lock(path: Path) -> Any:
    """The lock Optuna's JournalFileBackend takes around every append (its default, Optuna 5.0.0)."""
    from optuna.storages.journal import JournalFileSymlinkLock

    return JournalFileSymlinkLock(str(path))


def check_journal_whole(path: Path) -> None:
    """Refuse to write to a journal with a damaged record: anything appended would follow it.

    A tail that looks torn may be another worker's append in progress, so the check is repeated
    under the journal's own lock, where no append is under way.

    Raises:
        UserError: the journal is damaged; the one line says where and how to cut it back.
    """
    if not path.exists() or journal_damage(path) is None:
        return
    lock = _journal_lock(path)
    lock.acquire()
    try:
        damage = journal_damage(path)
    finally:
        lock.release()
    if damage is not None:
        line, size = damage
        raise UserError(
            f"journal file {path} is damaged at line {line} (a record cut off by a crash, or not an Optuna record); "
            f"appending after it would corrupt the journal for good: back the file up, keep its first {size} bytes "
            f"(truncate -s {size} {path}) and run again (the file was left untouched)"
        )


class _TornTailGuardedBackend:
    """Mixin for Optuna's JournalFileBackend: before every append, under the journal's lock, check
    that the file ends with a whole line, so a record is never appended after one torn by a crash
    of another process (which would corrupt the journal for good)."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:  # Optuna 5.0.0: BaseJournalBackend.append_logs
        lock = self._guard_lock
        lock.acquire()
        try:
            with open(self._guard_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        raise UserError(
                            f"journal file {self._guard_path} ends in a torn record (a write cut off by a crash); "
                            f"nothing more was written to it: run the same command again, it says how to repair it"
                        )
            what = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._guard_path, "ab") as fh:
                fh.write(what.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            lock.release()


def guarded_journal_backend(path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend

    class GuardedJournalFileBackend(_TornTailGuardedBackend, JournalFileBackend):
        pass

    lock = _journal_lock(path)
    backend = GuardedJournalFileBackend(str(path), lock_obj=lock)
    backend._guard_lock, backend._guard_path = lock, str(path)
    return backend


def journal_prefix_backend(path: Path, line: int) -> Any:
    """A read-only journal backend holding the whole records of ``path`` before line ``line``."""
    from optuna.storages.journal import BaseJournalBackend

    records: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for number, text in enumerate(fh, start=1):
            if number >= line:
                break
            records.append(json.loads(text))

    class PrefixBackend(BaseJournalBackend):
        def read_logs(self, log_number_from: int):  # noqa: ANN202
            yield from records[log_number_from:]

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise RuntimeError("a journal read up to a damaged record is read-only")

    return PrefixBackend()
