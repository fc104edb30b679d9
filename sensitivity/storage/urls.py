"""Where a study lives: a storage given as text (a file path, an SQLAlchemy URL, a journal path)
parsed into the URL or file Optuna opens, and the database driver a bare ``postgresql://`` URL needs."""

from __future__ import annotations

import re
from pathlib import Path

from sensitivity.errors import UserError
from sensitivity.storage.journal import is_journal_path
from sensitivity.storage.secrets import mask_storage

RDB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
DRIVER_HINT = {
    "postgresql": "pip install psycopg2-binary (or: pip install 'adamrag-sens[postgres]')",
    "postgres": "pip install psycopg2-binary (or: pip install 'adamrag-sens[postgres]')",
    "mysql": "pip install pymysql and use mysql+pymysql://...",
    "mariadb": "pip install pymysql and use mysql+pymysql://...",
}


def sqlite_path(url: str) -> Path | None:
    """The file an ``sqlite://`` URL opens, derived exactly as SQLAlchemy derives it
    (``sqlalchemy.engine.make_url(url).database``: percent-escapes decoded, the query dropped), so
    every check acts on the file that will be opened. None for an in-memory database or another scheme.

    Example: ``sqlite_path("sqlite:////tmp/a%20b/s.db") == Path("/tmp/a b/s.db")``.

    Raises:
        UserError: a URL SQLAlchemy cannot parse, or an SQLite URI filename (``?uri=true``).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        raise UserError(f"storage URL {url!r} is malformed ({err}); use sqlite:///path.db") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        raise UserError(f"storage URL {url!r} is an SQLite URI filename (uri=true), which is not supported; "
                        f"give sqlite:///path.db")
    return Path(parsed.database)


def normalize_storage_url(storage: str) -> str:
    """A bare file path becomes a URL: ``x.db``/``x.sqlite`` -> ``sqlite:///x.db``; URLs and journal paths pass through.

    Raises:
        UserError: text that starts like a URL scheme but is not one (``sqlite:/x.db``).
    """
    if "://" in storage or is_journal_path(storage):
        return storage
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", storage):  # "sqlite:/x.db", "postgresql:host": not a path
        raise UserError(
            f"storage URL {mask_storage(storage)!r} is malformed; use sqlite:///path.db, postgresql://user@host/db, "
            f"or a journal file path ending in .log"
        )
    from urllib.parse import quote

    return f"sqlite:///{quote(storage)}"  # SQLAlchemy decodes %XX: a folder named "a%20b" must stay itself


def with_installed_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) without a driver: name the one installed, psycopg2
    (this package's ``postgres`` extra) or psycopg 3. SQLAlchemy 2.1 defaults to psycopg 3 and
    older versions to psycopg2, so a bare URL fails on one or the other; other URLs pass through.

    Example: ``with_installed_driver("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"``
    where psycopg2 is installed.
    """
    scheme, rest = url.split("://", 1)
    if scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"
