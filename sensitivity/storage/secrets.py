"""Secrets in storage URLs: how every part of the package shows a storage (the password as ``***``,
:func:`mask_storage`), writes one into a command to copy (:func:`storage_without_password`), and
masks a password in foreign text such as a driver's error message (:func:`scrub_secrets`).
Nothing here stores the URL."""

from __future__ import annotations

import os
import re

import optuna

from sensitivity.storage.journal import is_journal_path

MASK = "***"
"""What a password is shown as (SQLAlchemy's own ``render_as_string(hide_password=True)`` mask)."""

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "sslpassword")
"""Query-string keys whose value is a password (libpq and psycopg2: ``password``, ``sslpassword``;
PyMySQL and mysqlclient: ``passwd``; ODBC: ``pwd``), compared case-insensitively."""
_SECRET_QUERY_RE = re.compile(r"([?&](?:%s)=)([^&#]*)" % "|".join(_SECRET_QUERY_KEYS), re.IGNORECASE)
_KEY_VALUE_RE = re.compile(r"""(\b(?:%s)\s*=\s*)('[^']*'|"[^"]*"|[^\s&,;)]+)""" % "|".join(_SECRET_QUERY_KEYS), re.IGNORECASE)
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_URLISH_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def mask_storage(storage: str | os.PathLike | optuna.storages.BaseStorage) -> str:
    """``storage`` as it may be shown anywhere (terminal, progress, errors, reports, logs): its
    password replaced by ``***``. Every place that shows a storage URL calls this.

    An Optuna storage object is shown by its URL (masked) where it has one (``RDBStorage.url``),
    otherwise by its class name (``InMemoryStorage``, ``JournalStorage``).

    The URL is parsed and rendered by SQLAlchemy (``make_url(url).render_as_string(hide_password=True)``,
    the library's own mask), which also handles percent-encoded passwords; a password given in the
    query string (``?password=``, ``?passwd=``, ``?pwd=``, ``?sslpassword=``) is masked too, and so is
    an unencoded ``@`` in a password (which SQLAlchemy reads as part of the host). Storage without a
    secret (SQLite URLs, journal and database file paths, ``postgresql://user@host/db``) is returned
    unchanged, character for character. Text SQLAlchemy cannot parse is masked from the ``:`` after
    the user name to the last ``@``.

    Example: ``mask_storage("postgresql://me:s3cret@db/sens") == "postgresql://me:***@db/sens"``.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        url = getattr(storage, "url", None)
        return _redact(url, keep=True) if isinstance(url, str) else type(storage).__name__
    return _redact(os.fspath(storage), keep=True)


def storage_without_password(storage: str | os.PathLike) -> str:
    """``storage`` for a command to copy: the same database with the password left out (not masked),
    so the command works where the password comes from elsewhere (``PGPASSWORD``, ``~/.pgpass``).
    Storage without a secret is returned unchanged; text SQLAlchemy cannot parse is masked as by
    :func:`mask_storage`.

    Example: ``storage_without_password("postgresql://me:s3cret@db/sens") == "postgresql://me@db/sens"``.
    """
    return _redact(os.fspath(storage), keep=False)


def has_password(storage: str | os.PathLike) -> bool:
    """True when ``storage`` carries a password (in the user part or in the query string)."""
    text = os.fspath(storage)
    return _redact(text, keep=True) != text


def scrub_secrets(text: str, storage: str | os.PathLike | None = None) -> str:
    """``text`` (a driver's or SQLAlchemy's error message, an exception stored with a trial) with
    every secret masked: the password of ``storage`` (as written and decoded), the password of any
    URL in the text, and any ``password=...`` pair (libpq connection strings).
    """
    for secret in sorted(_secrets_of(os.fspath(storage)) if storage is not None else (), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_IN_TEXT_RE.sub(lambda m: _mask_unparsed(m.group(0)), text)  # masked in place, not re-rendered
    return _KEY_VALUE_RE.sub(lambda m: m.group(1) + MASK, text)


def _redact(text: str, *, keep: bool) -> str:
    """The core of :func:`mask_storage` (``keep=True``: password shown as ``***``) and
    :func:`storage_without_password` (``keep=False``: password left out)."""
    if "://" not in text:
        if is_journal_path(text) or not _URLISH_RE.match(text):
            return text  # a file path: nothing secret in it
        return _mask_unparsed(text)
    from sqlalchemy.engine import URL, make_url

    try:
        url = make_url(text)
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError (a bad port): show it masked as text
        return _mask_unparsed(text)
    secret_keys = [k for k in url.query if k.lower() in _SECRET_QUERY_KEYS]
    if url.host and "@" in url.host:  # "user:p@ss@host": SQLAlchemy's password stops at the first @
        url = url.set(host=url.host.rsplit("@", 1)[1])
    elif url.password is None and not secret_keys:
        return text
    if not keep:  # URL.set ignores None, so the URL is built again without its password
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        return url.difference_update_query(secret_keys).render_as_string(hide_password=False)
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + MASK, url.render_as_string(hide_password=True))


def _password_span(text: str) -> tuple[int, int] | None:
    """Where the password of URL-like ``text`` is written, read as text: (start, end) from after
    the ``:`` that follows the user name to the last ``@`` (so an unencoded ``@`` in it is
    included); None without a user part (``sqlite:///a:b@c.db``) or without a ``:`` in it."""
    start = text.find("://")
    start = start + 3 if start >= 0 else text.find(":") + 1
    if text.startswith("/", start):
        return None
    at = text.rfind("@", start)
    colon = text.find(":", start, at) if at >= 0 else -1
    return (colon + 1, at) if colon >= 0 else None


def _mask_unparsed(text: str) -> str:
    """Mask URL-like text without parsing it: the span of :func:`_password_span` and the values
    of password keys in a query string."""
    span = _password_span(text)
    if span is not None:
        text = f"{text[:span[0]]}{MASK}{text[span[1]:]}"
    return _SECRET_QUERY_RE.sub(lambda m: m.group(1) + MASK, text)


def _secrets_of(storage: str) -> set[str]:
    """The secret strings ``storage`` holds: its password as written (percent-encoded or not) and
    decoded, and the values of password keys in its query string. Empty for storage without one."""
    if "://" not in storage and (is_journal_path(storage) or not _URLISH_RE.match(storage)):
        return set()
    from sqlalchemy.engine import make_url

    try:
        url = make_url(storage)
    except Exception:  # noqa: BLE001 - masked as text
        url = None
    found: set[str] = set()
    span = _password_span(storage) if url is None or url.password is not None else None
    if span is not None:
        found.add(storage[span[0] : span[1]])  # as written (percent-encoded, or with an unencoded @)
    if url is not None and url.password:
        found.add(str(url.password))
    found.update(match.group(2) for match in _SECRET_QUERY_RE.finditer(storage))
    from urllib.parse import unquote

    found |= {unquote(s) for s in found}
    return {s for s in found if s}
