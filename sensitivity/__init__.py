"""adamrag-sens: learning-rate and momentum sensitivity analysis for deep-learning optimizers.

Public names: :class:`AdamRAG` (the optimizer), :class:`StudySpec` and :func:`run_sweep` (an
Optuna study of training runs), :func:`build_report` (figures and tables from a stored study),
:func:`load_trials` (the tidy trials frame). Everything else is private to its module. Names are
imported on first use, so ``import sensitivity`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "AdamRAG": "sensitivity.optim.adamrag",
    "StudySpec": "sensitivity.study.spec",
    "run_sweep": "sensitivity.study.sweep",
    "build_report": "sensitivity.report",
    "load_trials": "sensitivity.report",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'sensitivity' has no attribute {name!r}")
