"""adamrag-sens: learning-rate and momentum sensitivity analysis for deep-learning optimizers.

Public names: :class:`AdamRAG` (the optimizer), :func:`run_sweep` (an Optuna study of training
runs), :func:`build_report` (figures and tables from a stored study), :func:`load_trials`
(the tidy trials frame). Everything else is private to its module.
"""

__version__ = "0.1.0"

from sensitivity.optim import AdamRAG  # noqa: E402

__all__ = ["AdamRAG", "__version__"]
