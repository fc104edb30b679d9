"""The optimizer catalog: what a study can sweep, as plain data (no torch).

For each optimizer: its command-line name, its display name in figures and tables, the order in
which tables list it, the hyperparameters it takes, what ``beta1``/``beta2`` mean for it, the value
of each hyperparameter when a sweep does not vary it, and the learning-rate range a default sweep
covers. The study side plans points from it; the report side names, orders and reads defaults from
it; :mod:`sensitivity.optim.registry` adds the factories that build the torch optimizers. Nothing
here imports torch, so a report can be written where torch is not installed.

Lion's learning rates sit about 3-10x below Adam's (Chen et al. 2023, "Symbolic Discovery of
Optimization Algorithms", arXiv 2302.06675, sec. 5), so its default range is shifted down by one
decade; plain SGD-type methods take learning rates about 100x above Adam's.
"""

from __future__ import annotations

import dataclasses
import math

HyperParams = dict[str, float]


@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
    """One sweepable optimizer, described without building it.

    Attributes:
        name: catalog key used on the command line (``adamrag``).
        display: name in figures and tables (``AdamRAG``).
        hyperparameters: the sweepable knobs this optimizer takes, among
            ``lr, beta1, beta2, gamma, weight_decay``.
        lr_range: default learning-rate interval (low, high), searched on a log scale.
        defaults: the value of every hyperparameter when a sweep does not vary it.
        beta1_meaning / beta2_meaning: what the generic names mean for this optimizer (``(none)``
            where it has no such knob).
        other_meanings: what each of its hyperparameters beyond :data:`COMMON_HYPERPARAMETERS`
            means (AdamRAG's ``gamma``), by name: one entry for each such hyperparameter.
        source: the implementation and the paper it follows.
        weight_decay_kind: how ``weight_decay`` acts, one of :data:`WEIGHT_DECAY_KINDS`: ``coupled``
            (L2: ``weight_decay * p`` is added to the gradient before the moments see it, as torch's
            Adam and SGD) or ``decoupled`` (the parameter shrinks by ``lr * weight_decay * p`` beside
            the update, as AdamW, Loshchilov & Hutter 2019, and Lion).
        step_amplifier: the hyperparameter c whose momentum multiplies the steady-state step by
            1 / (1 - c) (``gamma`` for AdamRAG's ravine buffer, ``beta1`` for SGD momentum), or ""
            when the step is of size lr (Adam, Lion); see :mod:`sensitivity.report.effective_lr`.
    """

    name: str
    display: str
    hyperparameters: tuple[str, ...]
    lr_range: tuple[float, float]
    defaults: HyperParams
    beta1_meaning: str
    beta2_meaning: str
    source: str
    weight_decay_kind: str
    step_amplifier: str = ""
    other_meanings: dict[str, str] = dataclasses.field(default_factory=dict)

    def lr_grid(self, points: int = 7) -> list[float]:
        """``points`` log-spaced learning rates spanning :attr:`lr_range` (ends included),
        rounded to 3 significant digits.

        Raises:
            ValueError: ``points < 2``.
        """
        if points < 2:
            raise ValueError(f"an lr grid needs at least 2 points, got {points}")
        lo, hi = (math.log10(v) for v in self.lr_range)
        return [float(f"{10 ** (lo + (hi - lo) * i / (points - 1)):.3g}") for i in range(points)]


WEIGHT_DECAY_KINDS = {
    "coupled": "coupled (L2)",
    "decoupled": "decoupled (AdamW-style)",
}
"""The ways an optimizer's ``weight_decay`` acts -> how ``adamrag-sens optimizers`` says it: coupled,
``weight_decay * p`` is added to the gradient; decoupled, the parameter shrinks beside the update."""

COMMON_HYPERPARAMETERS = ("lr", "beta1", "beta2", "weight_decay")
"""The hyperparameters whose names every optimizer shares (what beta1 and beta2 mean differs, see
:attr:`OptimizerInfo.beta1_meaning`); any other is an optimizer's own (:attr:`OptimizerInfo.other_meanings`)."""

_ADAM_FAMILY = COMMON_HYPERPARAMETERS

OPTIMIZERS: dict[str, OptimizerInfo] = {
    info.name: info
    for info in (
        OptimizerInfo(
            name="adamrag",
            display="AdamRAG",
            hyperparameters=("lr", "beta1", "beta2", "gamma", "weight_decay"),
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "gamma": 0.5, "weight_decay": 0.0},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay",
            source="sensitivity.optim.AdamRAG: reconstruction of Zhang et al. 2025 (NPL 57:53)",
            weight_decay_kind="coupled",
            step_amplifier="gamma",
            other_meanings={"gamma": "Ravine extrapolation coefficient"},
        ),
        OptimizerInfo(
            name="adam",
            display="Adam",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 0.0},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay",
            source="torch.optim.Adam (Kingma & Ba 2015, arXiv 1412.6980)",
            weight_decay_kind="coupled",
        ),
        OptimizerInfo(
            name="adamw",
            display="AdamW",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-5, 1e-1),
            defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "weight_decay": 1e-2},
            beta1_meaning="exp_avg (first moment) decay",
            beta2_meaning="exp_avg_sq (second moment) decay",
            source="torch.optim.AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101)",
            weight_decay_kind="decoupled",
        ),
        OptimizerInfo(
            name="nag",
            display="NAG",
            hyperparameters=("lr", "beta1", "weight_decay"),
            lr_range=(1e-3, 1e1),
            defaults={"lr": 1e-1, "beta1": 0.9, "weight_decay": 0.0},
            beta1_meaning="momentum",
            beta2_meaning="(none)",
            source="torch.optim.SGD(nesterov=True) (Sutskever et al. 2013, ICML)",
            weight_decay_kind="coupled",
            step_amplifier="beta1",
        ),
        OptimizerInfo(
            name="sgd",
            display="SGD-HB",
            hyperparameters=("lr", "beta1", "weight_decay"),
            lr_range=(1e-3, 1e1),
            defaults={"lr": 1e-1, "beta1": 0.9, "weight_decay": 0.0},
            beta1_meaning="heavy-ball momentum",
            beta2_meaning="(none)",
            source="torch.optim.SGD(momentum=beta1) (Polyak 1964)",
            weight_decay_kind="coupled",
            step_amplifier="beta1",
        ),
        OptimizerInfo(
            name="lion",
            display="Lion",
            hyperparameters=_ADAM_FAMILY,
            lr_range=(1e-6, 1e-2),
            defaults={"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
            beta1_meaning="interpolation between momentum and gradient in the sign update",
            beta2_meaning="momentum (exp_avg) decay",
            source="lion_pytorch.Lion (Chen et al. 2023, arXiv 2302.06675)",
            weight_decay_kind="decoupled",
        ),
    )
}
"""Every optimizer a study can sweep, by catalog name, in display order (tables, legends, colours)."""


def optimizer_info(name: str) -> OptimizerInfo:
    """The catalog entry for ``name`` (case-insensitive).

    Raises:
        KeyError: no optimizer of that name; the message lists the known names.
    """
    try:
        return OPTIMIZERS[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None


def display_names() -> dict[str, str]:
    """Catalog name -> display name (``{"adamrag": "AdamRAG", ...}``)."""
    return {name: info.display for name, info in OPTIMIZERS.items()}


def display_order(names) -> list[str]:
    """The distinct ``names`` in catalog order; names the catalog does not know come last, sorted."""
    known = list(OPTIMIZERS)
    return sorted(set(names), key=lambda n: (known.index(n), n) if n in known else (len(known), n))
