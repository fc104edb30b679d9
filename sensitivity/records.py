"""What one trial records: the contract between the study side and the report side.

The study side (``sensitivity.study``) writes each trial into Optuna storage as

* **params** (Optuna distributions fixed by :func:`param_distributions`):
  ``optimizer`` (categorical over every registered optimizer name), ``lr``, ``beta1``,
  ``beta2`` (absent for optimizers without it, e.g. NAG), ``gamma`` (AdamRAG only),
  ``weight_decay`` (only when swept), ``seed``;
* **intermediate values**: the objective metric after each epoch (``trial.report(value, epoch)``,
  epochs counted from 1);
* **user attributes**: the fields of :class:`TrialResult` under their own names, and
  :data:`TRIAL_ATTRS` (the planned point's key, the worker, an error);
* **value**: the objective (final validation loss, or final validation accuracy when the study's
  metric is ``val_acc``), clipped for diverged runs (see :class:`TrialResult`).

Each study carries the user attributes in :data:`STUDY_ATTRS`. Every attribute name is a constant
here, and no other module spells one as a bare string. The report side reads these names only; it
never imports the training code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# ---- study user attributes -------------------------------------------------------------------
TASK = "task"
"""Study attribute: the workload name, e.g. ``"digits-mlp"``."""
TASK_CONFIG = "task_config"
"""Study attribute: dict of the workload's data/model settings (dataset, train_size, batch_size, ...)."""
METRIC = "metric"
"""Study attribute: the objective, ``"val_loss"`` (minimize) or ``"val_acc"`` (maximize)."""
EPOCHS = "epochs"
"""Study attribute: training budget per trial, in epochs."""
DIVERGENCE_FACTOR = "divergence_factor"
"""Study attribute: a run diverges when its loss exceeds this multiple of the initial loss."""
SAMPLER = "sampler"
"""Study attribute: ``"grid"``, ``"random"`` or ``"qmc"``."""
POINTS = "points"
"""Study attribute: list[dict], every point of the current plan (the params of each planned trial)."""
SPEC = "spec"
"""Study attribute: the :class:`~sensitivity.study.spec.StudySpec` the sweep last ran with, as a dict,
without its ``storage`` (a URL that may carry a password is never stored)."""
OPTIMIZER_CHOICES = "optimizer_choices"
"""Study attribute: the choices of the stored categorical param ``optimizer`` (fixed at creation)."""
PACKAGE_VERSION = "package_version"
"""Study attribute: the adamrag-sens version that created the study."""

STUDY_ATTRS = (TASK, TASK_CONFIG, METRIC, EPOCHS, DIVERGENCE_FACTOR, SAMPLER, POINTS, SPEC, OPTIMIZER_CHOICES,
               PACKAGE_VERSION)
"""Every user attribute a study made by ``adamrag-sens sweep`` carries."""

# ---- trial user attributes besides the TrialResult fields ---------------------------------------
POINT_KEY = "point_key"
"""Trial attribute: the canonical key of the planned point the trial runs (see ``study.space.point_key``)."""
DUPLICATE_OF = "duplicate_of"
"""Trial attribute of a PRUNED duplicate: the number of the trial that holds its point."""
WORKER = "worker"
"""Trial attribute: ``"host:pid"`` of the process that ran the trial."""
ERROR = "error"
"""Trial attribute of a FAIL trial: the exception (``"Type: message"``, at most 500 characters) or why
the trial was failed for its worker (stale heartbeat, ended worker)."""

TRIAL_ATTRS = (POINT_KEY, DUPLICATE_OF, WORKER, ERROR)
"""Trial user attributes besides the fields of :class:`TrialResult` (which are stored under their names)."""

METRICS = {"val_loss": "minimize", "val_acc": "maximize"}
"""Objective metrics a study can optimise, with their Optuna direction."""

PARAM_NAMES = ("optimizer", "lr", "beta1", "beta2", "gamma", "weight_decay", "seed")
"""Names of the trial params, in display order. Not every optimizer has every one."""


@dataclasses.dataclass
class TrialResult:
    """The outcome of one training run (one trial).

    Attributes:
        train_loss: mean training loss of each epoch, length ``epochs_run`` (the task's loss; nats
            per example for the cross-entropy tasks).
        metrics: ``{metric name: value after each epoch}``, one list of length ``epochs_run`` per
            metric the task declares (``val_loss``, ``val_acc``, ``val_bpc``, ``return``, ...).
        initial: ``{metric name: value of the initialised model before any step}``; for a loss
            this is L0 of Wortsman et al. 2023 (arXiv 2309.14322).
        diverged: True when the run stopped because its loss or parameters became non-finite, or
            the task's divergence rule fired (for losses: an epoch's training loss or reference
            loss exceeded ``divergence_factor`` x its initial value).
        diverged_reason: "" or a short phrase ("non-finite loss at step 37", ...).
        diverged_step: optimizer step at which divergence was detected, or -1.
        epochs_run: epochs completed (a diverged run stops early).
        steps: optimizer steps taken.
        wall_time_s: wall-clock seconds of training and evaluation.
        throughput: training examples processed per second, evaluation excluded, in the task's
            unit (images, characters, environment steps).
        device: torch device string the run used ("cpu", "cuda:0").

    In storage each metric is a user attribute of its own name (the list) beside
    ``initial_<name>`` (the number), so the classification names ``val_loss``, ``val_acc``,
    ``initial_val_loss`` and ``initial_val_acc`` are what they always were.
    """

    train_loss: list[float]
    metrics: dict[str, list[float]]
    initial: dict[str, float]
    diverged: bool = False
    diverged_reason: str = ""
    diverged_step: int = -1
    epochs_run: int = 0
    steps: int = 0
    wall_time_s: float = 0.0
    throughput: float = 0.0
    device: str = "cpu"

    def objective(self, metric: str) -> float:
        """The value stored as the trial's objective: the final value of ``metric``.

        For a diverged run, or a non-finite final value, it is the metric's initial value (L0 for
        a loss, the initial accuracy or return otherwise), so that the trial stays plottable and
        counts as "no progress".

        Raises:
            ValueError: the trial has no such metric.
        """
        if metric not in self.initial:
            raise ValueError(f"unknown metric {metric!r}; this trial has {sorted(self.initial)}")
        values = self.metrics.get(metric) or []
        last = values[-1] if values else math.nan
        if self.diverged or not math.isfinite(last):
            return float(self.initial[metric])
        return float(last)

    def to_user_attrs(self) -> dict[str, Any]:
        """JSON-safe user attributes (non-finite floats become None), metrics flattened as
        ``<name>`` and ``initial_<name>``."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        out: dict[str, Any] = {"train_loss": clean(self.train_loss)}
        for name, values in self.metrics.items():
            out[name] = clean(list(values))
            out[f"initial_{name}"] = clean(self.initial.get(name, math.nan))
        for f in dataclasses.fields(self):
            if f.name not in ("train_loss", "metrics", "initial"):
                out[f.name] = clean(getattr(self, f.name))
        return out

    @classmethod
    def from_user_attrs(cls, attrs: dict[str, Any]) -> "TrialResult":
        """Inverse of :meth:`to_user_attrs` (None becomes NaN). A metric is every list attribute
        ``<name>`` stored beside an ``initial_<name>``."""

        def unclean(x: Any) -> Any:
            if x is None:
                return math.nan
            if isinstance(x, list):
                return [unclean(v) for v in x]
            return x

        names = [k for k, v in attrs.items() if isinstance(v, list) and f"initial_{k}" in attrs]
        scalars = {f.name for f in dataclasses.fields(cls)} - {"train_loss", "metrics", "initial"}
        return cls(
            train_loss=unclean(attrs.get("train_loss") or []),
            metrics={k: unclean(attrs[k]) for k in names},
            initial={k: float(unclean(attrs[f"initial_{k}"])) for k in names},
            **{k: unclean(v) for k, v in attrs.items() if k in scalars},
        )


RESERVED_NAMES = frozenset(
    {f.name for f in dataclasses.fields(TrialResult)} | {"worker", "error", "spec", "point_key", "duplicate_of"}
)
"""Names a task's metric may not take: they are trial attributes of their own."""


def param_distributions(optimizer_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The Optuna distribution of every trial param, fixed for the life of a study.

    The bounds are deliberately wide and the optimizer choices list every registered optimizer,
    so that a study resumed with a new grid, new optimizers or more seeds stays compatible with
    what storage already holds (Optuna refuses a param whose distribution changes kind or
    categorical choices).

    Args:
        optimizer_names: every optimizer name the catalog knows (sorted for stability).

    Returns:
        ``{param name: optuna.distributions.BaseDistribution}`` for ``PARAM_NAMES``.
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {
        "optimizer": CategoricalDistribution(sorted(optimizer_names)),
        "lr": FloatDistribution(1e-8, 1e2, log=True),
        "beta1": FloatDistribution(0.0, 1.0),
        "beta2": FloatDistribution(0.0, 1.0),
        "gamma": FloatDistribution(0.0, 1.0),
        "weight_decay": FloatDistribution(0.0, 10.0),
        "seed": IntDistribution(0, 2**31 - 1),
    }
