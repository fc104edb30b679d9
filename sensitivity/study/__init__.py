"""The study side: StudySpec -> an Optuna study in storage, every planned point run exactly once."""

from sensitivity.study.runner import SweepResult, load_spec, prepare_sweep, run_sweep, run_worker
from sensitivity.study.spec import DEFAULT_STORAGE, StudySpec

__all__ = ["DEFAULT_STORAGE", "StudySpec", "SweepResult", "load_spec", "prepare_sweep", "run_sweep", "run_worker"]
