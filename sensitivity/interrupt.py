"""Stopping a sweep on Ctrl-C or SIGTERM even when Python swallows the first KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to be when a signal arrives. If
that is inside a garbage-collection or weakref callback, the exception is printed as "Exception
ignored in ..." and dropped, and the sweep would run on. The handler here also sets a flag, and the
training loop and the worker loop call :func:`check` at every step, so a stop request is never lost.
"""

from __future__ import annotations

import signal
from typing import Any

_requested = False


def install() -> None:
    """Route SIGINT and SIGTERM (a scheduler stopping the job) to :func:`request` (main thread only)."""

    def handler(signum: int, frame: Any) -> None:
        request()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def request() -> None:
    """Record a stop request and raise KeyboardInterrupt here.

    Raises:
        KeyboardInterrupt: always.
    """
    global _requested
    _requested = True
    raise KeyboardInterrupt


def check() -> None:
    """Raise KeyboardInterrupt if a stop was requested (cheap: one global read).

    Raises:
        KeyboardInterrupt: a stop was requested earlier.
    """
    if _requested:
        raise KeyboardInterrupt


def requested() -> bool:
    """Whether a stop was requested in this process."""
    return _requested
