"""What a test compares to prove a command left an SQLite study database untouched."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path


def database_digest(path: Path) -> str:
    """SHA-256 of the database file after folding its write-ahead log into it, so that the digest
    covers every committed write, whichever of file and log holds it."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
