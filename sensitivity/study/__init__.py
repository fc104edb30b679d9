"""The study side: StudySpec -> an Optuna study in storage, every planned point run exactly once.

Rooms: ``spec`` (the sweep as plain data, validated), ``space`` (spec -> explicit list of points),
``queue`` (points queued in storage, popped exactly once), ``trial`` (one trial: suggest, train,
heartbeat, retry), ``members`` (the points of one optimizer trained as one population, each
member recorded as its own trial), ``sweep`` (the entry point :func:`run_sweep`: plan, queue, run, outcome),
``parallel`` (local worker processes), ``worker_process`` (a worker process's entry point),
``definition`` (study-definition files -> the sweep's settings). Storage itself is :mod:`sensitivity.storage`.

Names are imported on first use, so that ``import sensitivity.study.spec`` (the CLI's flag
parsing) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_STORAGE": "sensitivity.study.spec",
    "StudySpec": "sensitivity.study.spec",
    "SweepResult": "sensitivity.study.sweep",
    "join_study": "sensitivity.study.sweep",
    "prepare_sweep": "sensitivity.study.sweep",
    "run_sweep": "sensitivity.study.sweep",
    "run_worker": "sensitivity.study.sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
