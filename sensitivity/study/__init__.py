"""The study side: StudySpec -> an Optuna study in storage, every planned point run exactly once.

Names are imported on first use, so that ``import sensitivity.study.spec`` (the CLI's flag
parsing) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_STORAGE": "sensitivity.study.spec",
    "StudySpec": "sensitivity.study.spec",
    "SweepResult": "sensitivity.study.runner",
    "join_study": "sensitivity.study.runner",
    "load_spec": "sensitivity.study.runner",
    "prepare_sweep": "sensitivity.study.runner",
    "run_sweep": "sensitivity.study.runner",
    "run_worker": "sensitivity.study.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
