"""The search space of a sweep as an explicit list of points (one point = one planned trial).

Every sampler ends in the same place: a finite list of parameter dicts, each run exactly once.

* ``grid``: the cartesian product of lr x beta1 x beta2 x gamma x weight decay x seed, per optimizer.
* ``random`` / ``qmc``: ``n_trials`` points of the unit cube drawn by Optuna's ``RandomSampler``
  or ``QMCSampler`` (scrambled Sobol, as AlgoPerf's tuning rulesets use quasi-random search), seeded,
  and mapped into each optimizer's ranges: lr log-uniformly, betas uniformly in log(1 - beta).
  The same unit points serve every optimizer, so where two optimizers' ranges agree they get the
  same hyperparameters, and where they differ they get the same quantiles: comparisons are paired.

Seeds are a dimension: each point is repeated with seeds 0..S-1, the same for every optimizer.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from typing import Any

from sensitivity.catalog import OPTIMIZERS, OptimizerInfo
from sensitivity.errors import UserError
from sensitivity.study.spec import MAX_TRIALS, StudySpec

DEFAULT_BETA1_GRID = (0.8, 0.9, 0.95)
DEFAULT_BETA1_RANGE = (0.5, 0.99)
Point = dict[str, Any]


def point_key(point: Point) -> str:
    """Canonical text of a point, used to recognise it in storage (floats in repr form)."""
    return json.dumps({k: point[k] for k in sorted(point)}, separators=(",", ":"))


def _legacy_point(point: Point) -> Point | None:
    """``point`` as a study stored before weight decay was resolved into every point, or None
    when that form is the same as the current one.

    Until then a point held ``weight_decay`` only when ``--weight-decay`` was given, and an
    optimizer that takes weight decay trained with its catalog default (AdamW: 0.01) while the
    trial stored none. Such a trial is the point with the default weight decay."""
    info = OPTIMIZERS.get(point.get("optimizer", ""))
    if info is None or "weight_decay" not in info.hyperparameters or "weight_decay" not in point:
        return None
    if point["weight_decay"] != float(info.defaults["weight_decay"]):
        return None
    return {k: v for k, v in point.items() if k != "weight_decay"}


def stored_keys(point: Point) -> tuple[str, ...]:
    """Every key under which a study may hold ``point``: :func:`point_key`, then the key of its
    form before weight decay was resolved into every point (see :func:`resolve_key`)."""
    legacy = _legacy_point(point)
    return (point_key(point),) if legacy is None else (point_key(point), point_key(legacy))


def resolve_key(key: str | None) -> str | None:
    """A stored point key in the current form: a key stored before weight decay was resolved
    into every point gains its optimizer's default weight decay (AdamW's ``0.01``), so a study
    resumed after the change finds the points it holds instead of running them again.
    Keys already in the current form, and text that is not a point, come back unchanged."""
    if key is None or "weight_decay" in key:
        return key
    try:
        point = json.loads(key)
    except ValueError:
        return key
    if not isinstance(point, dict):
        return key
    info = OPTIMIZERS.get(point.get("optimizer", ""))
    if info is None or "weight_decay" not in info.hyperparameters:
        return key
    return point_key({**point, "weight_decay": float(info.defaults["weight_decay"])})


def resolve_defaults(point: Point) -> Point:
    """``point`` with every hyperparameter its optimizer takes and the point does not set at its
    catalog default (what :func:`~sensitivity.optim.registry.build_optimizer` trains with): the
    point a trial stores is the one it trains."""
    info = OPTIMIZERS[point["optimizer"]]
    return {**point, **{k: float(v) for k, v in info.defaults.items()
                        if k in info.hyperparameters and k not in point}}


def _round(value: float, digits: int, lo: float, hi: float) -> float:
    """``value`` (in ``[lo, hi]``) rounded to ``digits`` significant digits, or to as many more as
    keep it inside ``[lo, hi]``: rounding never moves a value onto or past a bound of its range
    (0.9999999 at 5 digits would be 1.0, a beta1 every Adam-type optimizer refuses)."""
    for d in range(digits, 18):
        rounded = float(f"{value:.{d}g}")
        if lo <= rounded <= hi:
            return rounded
    return min(max(value, lo), hi)


def _grid_axes(spec: StudySpec, opt: OptimizerInfo) -> dict[str, tuple[float, ...]]:
    """The values of each hyperparameter ``opt``'s grid crosses (lr first)."""
    axes: dict[str, tuple[float, ...]] = {"lr": spec.lr or tuple(opt.lr_grid(spec.lr_points))}
    if "beta1" in opt.hyperparameters:
        axes["beta1"] = spec.beta1 or DEFAULT_BETA1_GRID
    if "beta2" in opt.hyperparameters:
        axes["beta2"] = spec.beta2 or (opt.defaults["beta2"],)
    if "gamma" in opt.hyperparameters:
        axes["gamma"] = spec.gamma or (opt.defaults["gamma"],)
    if "weight_decay" in opt.hyperparameters:
        axes["weight_decay"] = spec.weight_decay if spec.weight_decay is not None else (opt.defaults["weight_decay"],)
    return axes


def _grid_points(spec: StudySpec, opt: OptimizerInfo) -> list[Point]:
    axes = _grid_axes(spec, opt)
    names = list(axes)
    return [dict(zip(names, map(float, values))) for values in itertools.product(*(sorted(set(axes[n])) for n in names))]


def _unit_points(spec: StudySpec, dims: list[str]) -> list[dict[str, float]]:
    """``n_trials`` points of [0, 1]^dims from Optuna's random or QMC sampler, seeded."""
    import optuna

    if spec.sampler == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=spec.sampler_seed,
                                                 warn_independent_sampling=False)
    else:
        sampler = optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    study = optuna.create_study(sampler=sampler)
    dists = {d: optuna.distributions.FloatDistribution(0.0, 1.0) for d in dims}
    points = []
    for _ in range(spec.n_trials):
        trial = study.ask(dists)
        points.append(dict(trial.params))
        study.tell(trial, 0.0)
    return points


def _log_uniform(u: float, lo: float, hi: float) -> float:
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _beta_from_unit(u: float, lo: float, hi: float) -> float:
    """Uniform in log(1 - beta) between lo and hi (so 0.9 -> 0.99 is as wide as 0.99 -> 0.999)."""
    return 1.0 - math.exp(math.log(1 - lo) + u * (math.log(1 - hi) - math.log(1 - lo)))


def _random_points(spec: StudySpec, opts: list[OptimizerInfo]) -> list[tuple[OptimizerInfo, Point]]:
    varied = {
        "beta1": spec.beta1 is None or len(set(spec.beta1)) > 1,
        "beta2": spec.beta2 is not None and len(set(spec.beta2)) > 1,
        "gamma": spec.gamma is not None and len(set(spec.gamma)) > 1,
        "weight_decay": spec.weight_decay is not None and len(set(spec.weight_decay)) > 1,
    }
    dims = ["lr"] + [d for d, on in varied.items() if on]
    units = _unit_points(spec, dims)
    out = []
    for u in units:  # point-major: every optimizer gets unit point i before any gets point i + 1
        for opt in opts:
            out.append((opt, _map_unit_point(spec, opt, u, varied)))
    return out


def _map_unit_point(spec: StudySpec, opt: OptimizerInfo, u: dict[str, float], varied: dict[str, bool]) -> Point:
    """Unit-cube point ``u`` in ``opt``'s ranges: the same quantiles for every optimizer, so where
    two optimizers' ranges agree (always for an explicit ``--lr`` range) their values are equal."""
    if spec.lr and len(set(spec.lr)) == 1:
        lr = float(spec.lr[0])
    else:
        lr_lo, lr_hi = (min(spec.lr), max(spec.lr)) if spec.lr else opt.lr_range
        lr = _round(_log_uniform(u["lr"], lr_lo, lr_hi), 4, lr_lo, lr_hi)
    point: Point = {"lr": lr}
    for name in ("beta1", "beta2", "gamma"):
        if name not in opt.hyperparameters:
            continue
        given = getattr(spec, name)
        if varied[name]:
            lo, hi = (min(given), max(given)) if given else DEFAULT_BETA1_RANGE
            point[name] = _round(_beta_from_unit(u[name], lo, hi), 5, lo, hi)
        else:
            point[name] = float(given[0]) if given else float(opt.defaults[name])
    if spec.weight_decay is not None and "weight_decay" in opt.hyperparameters:
        if varied["weight_decay"]:
            lo, hi = min(spec.weight_decay), max(spec.weight_decay)
            point["weight_decay"] = _round(lo + u["weight_decay"] * (hi - lo), 4, lo, hi)
        else:
            point["weight_decay"] = float(spec.weight_decay[0])
    return point


def planned_trials(spec: StudySpec) -> int:
    """How many trials ``spec`` plans (points x seeds, every optimizer), counted without listing them."""
    opts = [OPTIMIZERS[name] for name in spec.optimizers]
    if spec.sampler == "grid":
        per_seed = sum(math.prod(len(set(values)) for values in _grid_axes(spec, opt).values()) for opt in opts)
    else:
        per_seed = spec.n_trials * len(opts)
    return per_seed * spec.seeds


def check_size(spec: StudySpec) -> None:
    """Refuse a plan of more than :data:`~sensitivity.study.spec.MAX_TRIALS` trials before it is listed.

    Raises:
        UserError: the plan's size, and how to make it smaller.
    """
    n = planned_trials(spec)
    if n > MAX_TRIALS:
        raise UserError(f"this study plans {n:,} trials, more than one study takes ({MAX_TRIALS:,}); use fewer "
                        "--lr-points, values, --n-trials or --seeds, or split the search into several studies")


def plan_points(spec: StudySpec) -> list[Point]:
    """Every trial the spec asks for, as param dicts with ``optimizer`` and ``seed``, in run order.

    Every hyperparameter the optimizer takes is in its points, at the swept value or at the
    catalog default (weight decay included: AdamW's 0.01 is stored as 0.01, not left blank).

    The order is seed-major, and within a seed interleaves the optimizers point by point (grid and
    random/qmc alike), so a study stopped half way has comparable coverage of every optimizer.
    """
    opts = [OPTIMIZERS[name] for name in spec.optimizers]
    check_size(spec)
    if spec.sampler == "grid":
        per_opt = [[(opt, p) for p in _grid_points(spec, opt)] for opt in opts]
        pairs = [pair for group in itertools.zip_longest(*per_opt) for pair in group if pair is not None]
    else:
        pairs = _random_points(spec, opts)
    points = []
    for seed in range(spec.seeds):
        for opt, p in pairs:
            points.append(resolve_defaults({"optimizer": opt.name, **p, "seed": seed}))
    return points
