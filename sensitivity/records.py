"""What one trial records: the contract between the study side and the report side.

The study side (``sensitivity.study``) writes each trial into Optuna storage as

* **params** (Optuna distributions fixed by :func:`param_distributions`):
  ``optimizer`` (categorical over every registered optimizer name), ``lr``, ``beta1``,
  ``beta2`` (absent for optimizers without it, e.g. NAG), ``gamma`` (AdamRAG only),
  ``weight_decay`` (every optimizer that takes it: the swept value or its catalog default, e.g.
  AdamW's 0.01; studies stored before that hold it only where it was swept), ``seed``;
* **intermediate values**: the objective metric after each epoch (``trial.report(value, epoch)``,
  epochs counted from 1);
* **user attributes**: the fields of :class:`TrialResult` under their own names, and
  :data:`TRIAL_ATTRS` (the planned point's key, the worker, an error);
* **value**: the objective, the final value of the study's metric (one the task declares:
  ``val_loss``, ``val_acc``, ``val_bpc``, ``return``, ...), never worse than its value at
  initialisation, and exactly that value for a diverged run (see :meth:`TrialResult.objective`);
  the per-epoch lists keep the raw values.

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
"""Study attribute: the objective, one of the task's metrics (``"val_loss"``, ``"val_acc"``, ``"return"``, ...)."""
EPOCHS = "epochs"
"""Study attribute: training budget per trial, in epochs."""
DIVERGENCE_FACTOR = "divergence_factor"
"""Study attribute: a run diverges when its epoch training loss exceeds this multiple of the initial loss."""
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
METRIC_DECLARATIONS = "metrics"
"""Study attribute: list of dicts, every metric the study's task declares (:meth:`Metric.to_dict`),
so the report labels and orders them without importing the task."""
TASK_INFO = "task_info"
"""Study attribute: dict describing the workload in words: ``description``, ``data`` (the data as
loaded: source, size), ``data_source``, ``epoch`` (what one epoch is), ``example_unit`` (what the
throughput counts) and ``settings`` (e.g. the lr schedule)."""

STUDY_ATTRS = (TASK, TASK_CONFIG, METRIC, EPOCHS, DIVERGENCE_FACTOR, SAMPLER, POINTS, SPEC, OPTIMIZER_CHOICES,
               PACKAGE_VERSION, METRIC_DECLARATIONS, TASK_INFO)
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

RETRY_OF = "retry_of"
"""Trial attribute of a retry: the numbers of the failed trials of its point that it retries, oldest
first (its length is the retry's count; the bound is ``study.sweep.MAX_RETRIES``)."""

TRIAL_ATTRS = (POINT_KEY, DUPLICATE_OF, WORKER, ERROR, RETRY_OF)
"""Trial user attributes besides the fields of :class:`TrialResult` (which are stored under their names)."""

@dataclasses.dataclass(frozen=True)
class Metric:
    """A number a task reports after each epoch, as a study stores it.

    Attributes:
        name: the key in the task's evaluation and in storage (``val_loss``, ``return``): a
            lower-case identifier that no trial attribute uses.
        direction: ``minimize`` or ``maximize`` (Optuna's words).
        unit: unit of the value (``nats/example``, ``fraction``, ``bits/char``, ``reward/episode``).
            ``fraction`` marks a share in [0, 1]: its tolerance is in absolute points.
        label: what the value is, in words, for axes and tables (``validation loss``).

    Raises:
        ValueError: an unknown direction, or a name that is not a free lower-case identifier.
    """

    name: str
    direction: str
    unit: str
    label: str

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"metric {self.name!r}: direction must be minimize or maximize, not {self.direction!r}")
        if not (self.name.isidentifier() and self.name == self.name.lower()):
            raise ValueError(f"metric name {self.name!r} must be a lower-case identifier, e.g. val_loss")
        if self.name in RESERVED_NAMES or self.name.startswith("initial_") or self.name.startswith("final_"):
            raise ValueError(f"metric name {self.name!r} is taken by a trial attribute or column; choose another")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    @property
    def axis_label(self) -> str:
        """``validation loss (nats/example)``: the label with its unit, for a figure axis."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form, stored with a study (:data:`METRIC_DECLARATIONS`)."""
        return dataclasses.asdict(self)


METRICS: dict[str, Metric] = {}
"""Every metric name known in this process: the built-in tasks' (below) and those declared by the
studies the report has loaded (:func:`declare_metrics`), each name with one direction."""


def declare_metrics(declarations: list[dict[str, str]] | tuple[Metric, ...]) -> list[Metric]:
    """Add metric declarations (dicts as stored, or :class:`Metric`) to :data:`METRICS`.

    A name already known keeps its direction; its unit and label become the latest declaration's
    (``val_loss`` is nats/example for classification, nats/char for char-lm).

    Returns:
        The declarations as :class:`Metric`, in their order.

    Raises:
        ValueError: a declaration gives a known name the other direction.
    """
    out = []
    for d in declarations:
        m = d if isinstance(d, Metric) else Metric(**{k: d[k] for k in ("name", "direction", "unit", "label")})
        known = METRICS.get(m.name)
        if known is not None and known.direction != m.direction:
            raise ValueError(f"metric {m.name!r} is {known.direction}d elsewhere; a task cannot {m.direction} it")
        METRICS[m.name] = m
        out.append(m)
    return out


def metric_direction(name: str) -> str:
    """``minimize`` or ``maximize`` for a known metric name.

    Raises:
        ValueError: the name is not known (not built in, and no loaded study declared it).
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[name].direction

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
        diverged: True when training blew up and the run stopped: its loss or parameters became
            non-finite, or the task's divergence rule fired (by default: an epoch's mean training
            loss exceeded ``divergence_factor`` x the reference metric's initial value). A poor
            evaluation alone never makes a run diverged.
        diverged_reason: "" or a short phrase ("non-finite loss at step 37", ...).
        diverged_step: optimizer step at which divergence was detected, or -1.
        epochs_run: epochs completed (a diverged run stops early).
        steps: optimizer steps taken.
        wall_time_s: wall-clock seconds of training and evaluation.
        throughput: training examples processed per second, evaluation excluded, in the task's
            unit (images, characters, environment steps).
        device: torch device string the run used ("cpu", "cuda:0").
        optimizer_settings: every setting the run's optimizer was built with, the library's
            defaults resolved (``eps``, ``maximize``, ``nesterov``, ``dampening``, ...; see
            :func:`sensitivity.optim.registry.optimizer_settings`); ``{}`` for a trial stored
            before it was recorded.

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
    optimizer_settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def objective(self, metric: str, higher_is_better: bool | None = None) -> float:
        """The value stored as the trial's objective, with one ordering for bad runs.

        The final value of ``metric`` clipped at its initial value: ``min(L, L0)`` for a minimised
        metric (Wortsman et al. 2023, arXiv 2309.14322, sec. 2.2), ``max(A, A0)`` for a maximised
        one; a diverged run, or a non-finite final value, counts as the initial value. A diverged
        run and a run that ended worse than its start thus tie ("no progress"), and the ranking
        prefers the run that did not diverge (:func:`rank_key`).

        Args:
            metric: a metric of this trial.
            higher_is_better: the metric's direction; None: :func:`metric_direction` of the name.

        Raises:
            ValueError: the trial has no such metric (or its direction is unknown).
        """
        if metric not in self.initial:
            raise ValueError(f"unknown metric {metric!r}; this trial has {sorted(self.initial)}")
        values = self.metrics.get(metric) or []
        last = values[-1] if values else math.nan
        if self.diverged or not math.isfinite(last):
            return float(self.initial[metric])  # whatever the direction
        if higher_is_better is None:
            higher_is_better = metric_direction(metric) == "maximize"
        return clip_to_initial(last, self.initial[metric], self.diverged, higher_is_better=higher_is_better)

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


RESERVED_NAMES = frozenset({f.name for f in dataclasses.fields(TrialResult)} | set(TRIAL_ATTRS) | set(PARAM_NAMES)
                           | {"trial", "state", "value", "epoch", "metric"})
"""Names a task's metric may not take: trial attributes, params and report columns of their own."""

VAL_LOSS = Metric("val_loss", "minimize", "nats/example", "validation loss")
"""Mean cross-entropy on the validation set (natural log)."""
VAL_ACC = Metric("val_acc", "maximize", "fraction", "validation accuracy")
"""Share of validation examples whose arg-max prediction is the label."""
declare_metrics((VAL_LOSS, VAL_ACC))


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}"
"""What a study name and a task name may hold: letters, digits and ``_ . : + -``, starting with a
letter or digit, at most 128 characters. Such a name is safe as a file or folder name (no ``/``,
no ``..`` of its own, no leading ``-``), in a shell command and in every report sink."""
NAME_RULE = "use letters, digits and _ . : + - (at most 128, starting with a letter or digit)"
"""The rule of :data:`NAME_PATTERN` in words, for messages."""


def valid_name(text: object) -> bool:
    """True when ``text`` is a string that matches :data:`NAME_PATTERN` as a whole."""
    import re

    return isinstance(text, str) and re.fullmatch(NAME_PATTERN, text) is not None


def safe_child(folder: "str | os.PathLike[str]", name: str) -> "pathlib.Path":
    """``folder / name``, checked to stay inside ``folder``.

    For paths built from user text (a study's or task's name): ``name`` must be one path part
    that is neither empty, ``.`` nor ``..``, hold no separator or NUL, and the joined path,
    resolved (symbolic links followed), must lie inside ``folder`` resolved.

    Raises:
        ValueError: ``name`` would leave ``folder`` or is not one path part; the message names both.
    """
    import os
    import pathlib

    base = pathlib.Path(folder)
    bad = (not isinstance(name, str) or name in ("", ".", "..") or "\0" in name
           or any(sep and sep in name for sep in (os.sep, os.altsep, "/")))
    child = base / name if not bad else None
    if child is not None:
        root = base.resolve()
        try:
            child.resolve().relative_to(root)
        except ValueError:
            bad = True
    if bad:
        raise ValueError(f"{name!r} is not a name inside {str(base)!r}; {NAME_RULE}")
    return child


LR_BOUNDS = (1e-10, 1e6)
"""The learning rates a study can hold (the stored distribution's bounds; a sweep refuses others up
front). Wide on purpose: lrs far above an optimizer's range are how its divergence edge is mapped.
Widening float bounds keeps stored studies compatible (Optuna checks only a float's kind and log)."""
WEIGHT_DECAY_BOUNDS = (0.0, 10.0)
"""The weight decays a study can hold (the stored distribution's bounds)."""


def clip_to_initial(final: float, initial: float, diverged: bool, *, higher_is_better: bool) -> float:
    """A run's final metric as every ranking reads it: never worse than its initial value.

    ``min(final, initial)`` for minimised metrics (losses), ``max(final, initial)`` for maximised
    ones (accuracy, return) (Wortsman et al.
    2023, arXiv 2309.14322, sec. 2.2, clip the loss at L0 this way); a diverged run and a
    non-finite final value give ``initial``. The stored objective, the sweep's best line and every
    report metric and figure use this value.
    """
    final, initial = float(final), float(initial)
    if diverged or not math.isfinite(final):
        return initial
    if not math.isfinite(initial):
        return final
    return max(final, initial) if higher_is_better else min(final, initial)


def rank_key(value: float, diverged: bool | None, higher_is_better: bool) -> tuple[float, bool]:
    """Sort key, best first, of a trial with objective ``value``: better values first and, at
    equal values (a diverged run and one that ended at or worse than L0 both count as L0), the
    run that did not diverge first. NaN values sort last."""
    v = float(value)
    if not math.isfinite(v):
        return (math.inf, bool(diverged))
    return (-v if higher_is_better else v, bool(diverged))


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
        "lr": FloatDistribution(*LR_BOUNDS, log=True),
        "beta1": FloatDistribution(0.0, 1.0),
        "beta2": FloatDistribution(0.0, 1.0),
        "gamma": FloatDistribution(0.0, 1.0),
        "weight_decay": FloatDistribution(*WEIGHT_DECAY_BOUNDS),
        "seed": IntDistribution(0, 2**31 - 1),
    }
