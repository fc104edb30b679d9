"""Storage -> the tidy trials frame: the one place the report side touches Optuna.

:func:`load_trials` opens storage through :func:`sensitivity.storage.open_storage` with
``read_only=True`` (the same opener and spellings as the sweep's ``--storage``), reads a stored
study (never writes to it) and returns :class:`TrialsData`:
one row per trial, one long frame of per-epoch curves, and the study's metadata. Everything
downstream (metrics, figures, rendering) works on these pandas frames alone. What each trial
stores is fixed by :mod:`sensitivity.records`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np
import optuna
import pandas as pd

from sensitivity.catalog import OPTIMIZERS, display_names
from sensitivity.errors import UserError
from sensitivity import records
from sensitivity.records import PARAM_NAMES, STUDY_ATTRS, VAL_ACC, VAL_LOSS, TrialResult
from sensitivity.storage import mask_storage, open_storage, scrub_secrets
from sensitivity.storage.local_faults import sqlite_fault

COMPLETE = "COMPLETE"
"""The trial state the analysis uses; the frame keeps every state in its ``state`` column."""

TRIAL_COLUMNS = (
    "trial",
    "state",
    "optimizer",
    "optimizer_display",
    "lr",
    "beta1",
    "beta2",
    "gamma",
    "weight_decay",
    "seed",
    "value",
    "diverged",
    "diverged_reason",
    "diverged_step",
    "initial_val_loss",
    "initial_val_acc",
    "final_train_loss",
    "final_val_loss",
    "final_val_acc",
    "epochs_run",
    "steps",
    "wall_time_s",
    "throughput",
    "device",
    "datetime_start",
    "datetime_complete",
)
"""Columns of :attr:`TrialsData.trials` of a classification study, in order. A study stores the
metrics its task declares; each metric ``m`` gives the columns ``initial_m`` and ``final_m`` in place
of the ``val_loss``/``val_acc`` pairs (see :func:`trial_columns`)."""

CURVE_COLUMNS = (
    "trial",
    "optimizer",
    "lr",
    "beta1",
    "beta2",
    "gamma",
    "weight_decay",
    "seed",
    "diverged",
    "epoch",
    "train_loss",
    "val_loss",
    "val_acc",
)
"""Columns of :attr:`TrialsData.curves` of a classification study; in general the last two are the
study's declared metrics (see :func:`curve_columns`)."""


def trial_columns(metrics: list[str]) -> tuple[str, ...]:
    """:data:`TRIAL_COLUMNS` with ``initial_m``/``final_m`` for each metric name in ``metrics``."""
    head = TRIAL_COLUMNS[: TRIAL_COLUMNS.index("initial_val_loss")]
    tail = TRIAL_COLUMNS[TRIAL_COLUMNS.index("epochs_run"):]
    return (*head, *(f"initial_{m}" for m in metrics), "final_train_loss", *(f"final_{m}" for m in metrics), *tail)


def curve_columns(metrics: list[str]) -> tuple[str, ...]:
    """:data:`CURVE_COLUMNS` with one column per metric name in ``metrics`` after ``train_loss``."""
    return (*CURVE_COLUMNS[: CURVE_COLUMNS.index("val_loss")], *metrics)


_HP_PARAMS = tuple(p for p in PARAM_NAMES if p not in ("optimizer", "seed"))


def _hyperparameters(optimizer: str, params: dict[str, Any]) -> dict[str, float]:
    """The hyperparameters a trial of ``optimizer`` trained with: each stored one, and each one
    the optimizer takes but the trial does not hold at its catalog default (NaN for one it does
    not take, e.g. NAG's beta2).

    A study stored before every point held its weight decay has no ``weight_decay`` in the trials
    of an unswept AdamW, which trained with torch's 0.01: read as 0.01 here, those trials sit in
    the lr x weight-decay heatmap, and in every table, as the runs they were.
    """
    info = OPTIMIZERS.get(optimizer)
    out = {hp: _float(params.get(hp)) for hp in _HP_PARAMS}
    if info is not None:
        for hp, default in info.defaults.items():
            if hp in out and hp in info.hyperparameters and math.isnan(out[hp]):
                out[hp] = float(default)
    return out


@dataclasses.dataclass
class TrialsData:
    """A stored study as pandas frames.

    Attributes:
        trials: one row per trial (every state), columns :func:`trial_columns` of the study's
            metrics (:data:`TRIAL_COLUMNS` for classification). A hyperparameter the optimizer
            takes but the trial does not store holds its catalog default (what it trained with);
            params an optimizer does not take (NAG's ``beta2``, ``gamma`` outside AdamRAG) are NaN; so are
            the result columns of trials that are not COMPLETE. ``value`` is Optuna's objective
            (diverged runs counted at the initial value, see :class:`~sensitivity.records.TrialResult`);
            ``final_*`` are the last recorded epoch values, unclipped (NaN when non-finite).
            Each metric in its declared unit (``meta["metrics"]``), ``wall_time_s`` in seconds,
            ``throughput`` in training examples per second (the task's unit: images, characters,
            environment steps).
        curves: long frame, one row per trial and epoch, columns :func:`curve_columns`. Epoch 0
            is the initialised model (each metric at its initial value, ``train_loss`` NaN);
            epochs 1..``epochs_run`` follow. Non-finite values are NaN.
        meta: the study's user attributes (:data:`~sensitivity.records.STUDY_ATTRS`) plus
            ``study_name``, ``direction`` ("minimize"/"maximize") and ``metric`` (the study's
            attribute, else inferred from the direction), ``metrics`` (the declared
            :class:`~sensitivity.records.Metric` list; ``val_loss`` and ``val_acc`` for studies made
            before tasks declared theirs), and ``n_trials_by_state``.
    """

    trials: pd.DataFrame
    curves: pd.DataFrame
    meta: dict[str, Any]

    @property
    def complete(self) -> pd.DataFrame:
        """The rows of :attr:`trials` whose state is COMPLETE (what the analysis uses)."""
        return self.trials[self.trials["state"] == COMPLETE]

    def declaration(self, metric: str) -> records.Metric | None:
        """This study's own declaration of ``metric`` (label, unit), None when it declares no such
        metric. Unlike the process-wide registry, it is not overwritten by another study loaded later."""
        return next((m for m in self.meta.get("metrics") or () if m.name == metric), None)


def load_trials(
    storage: str | os.PathLike | optuna.storages.BaseStorage, study_name: str
) -> TrialsData:
    """Read a stored study into a :class:`TrialsData` (read-only: never creates or writes).

    Args:
        storage: an Optuna RDB URL (``sqlite:///studies/x.db``, ``postgresql://...``), a path
            to an SQLite database or an Optuna journal file, or a storage object.
        study_name: the study to read.

    Raises:
        UserError: the storage cannot be read, the study does not exist (the message lists the
            studies that do), or it has no COMPLETE trial.
    """
    store = storage if isinstance(storage, optuna.storages.BaseStorage) else open_storage(storage, read_only=True)
    try:
        study_id = store.get_study_id_from_name(study_name)
    except optuna.exceptions.StorageInternalError as exc:  # the server went away or never answered
        fault = sqlite_fault(exc)
        if fault is not None:  # a local file's fault, not a server's
            raise UserError(f"SQLite storage {_describe(storage)} {fault}; check the file and its disk") from None
        reason = _first_line(exc.__cause__ or exc)
        if not isinstance(storage, optuna.storages.BaseStorage):
            reason = scrub_secrets(reason, storage)  # a driver's message may echo the URL
        raise UserError(f"cannot read Optuna storage {_describe(storage)}: {reason}; "
                        "check the URL and that the server is up") from None
    except KeyError:
        names = _study_names(store)
        known = ", ".join(names) if names else "none"
        raise UserError(
            f"no study named {study_name!r} in {_describe(storage)}; studies there: {known} "
            "(pass one of them with --study, or run a sweep first)"
        ) from None

    frozen = store.get_all_trials(study_id, deepcopy=False)
    user_attrs = dict(store.get_study_user_attrs(study_id))
    directions = store.get_study_directions(study_id)
    direction = directions[0].name.lower() if directions else "minimize"
    declared = user_attrs.get(records.METRIC_DECLARATIONS) or [VAL_LOSS, VAL_ACC]  # older studies: classification
    try:
        metrics = records.declare_metrics(declared)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"study {study_name!r} declares metrics the report cannot use ({err})") from None
    names = [m.name for m in metrics]
    metric = user_attrs.get(records.METRIC)
    if metric not in names:
        metric = next(m.name for m in metrics if m.direction == direction) if any(
            m.direction == direction for m in metrics) else names[0]

    trials = _trials_frame(frozen, names)
    curves = _curves_frame(frozen, metric, names)
    counts = trials["state"].value_counts()
    meta: dict[str, Any] = {key: user_attrs.get(key) for key in STUDY_ATTRS}
    meta.update({k: v for k, v in user_attrs.items() if k not in meta})
    meta.update(
        study_name=study_name,
        direction=direction,
        metric=metric,
        metrics=metrics,
        n_trials_by_state={str(k): int(v) for k, v in counts.items()},
    )

    if not (trials["state"] == COMPLETE).any():
        raise UserError(
            f"study {study_name!r} in {_describe(storage)} has no completed trial "
            f"({len(trials)} trials in total); run or resume its sweep first"
        )
    return TrialsData(trials=trials, curves=curves, meta=meta)


def _study_names(store: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in store.get_all_studies())


def _describe(storage: Any) -> str:
    if isinstance(storage, optuna.storages.BaseStorage) and not isinstance(getattr(storage, "url", None), str):
        return mask_storage(storage)  # its kind, e.g. InMemoryStorage
    return repr(mask_storage(storage))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _float(x: Any) -> float:
    """``float(x)``; None (how user attributes store non-finite numbers) and non-numbers -> NaN."""
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _last(values: Any) -> float:
    if isinstance(values, (list, tuple)) and values:
        return _float(values[-1])
    return math.nan


def _trials_frame(frozen: list[optuna.trial.FrozenTrial], metrics: list[str]) -> pd.DataFrame:
    display = display_names()
    rows = []
    for t in frozen:
        p, a = t.params, t.user_attrs
        state = t.state.name
        done = state == COMPLETE
        name = str(p.get("optimizer", ""))
        diverged = a.get("diverged")
        rows.append(
            {
                "trial": t.number,
                "state": state,
                "optimizer": name,
                "optimizer_display": display.get(name, name),
                **_hyperparameters(name, p),
                "seed": p.get("seed"),
                "value": _float(t.value) if done and t.values else math.nan,
                "diverged": bool(diverged) if diverged is not None else (False if done else None),
                "diverged_reason": str(a.get("diverged_reason") or ""),
                "diverged_step": a.get("diverged_step"),
                **{f"initial_{m}": _float(a.get(f"initial_{m}")) for m in metrics},
                "final_train_loss": _last(a.get("train_loss")),
                **{f"final_{m}": _last(a.get(m)) for m in metrics},
                "epochs_run": a.get("epochs_run"),
                "steps": a.get("steps"),
                "wall_time_s": _float(a.get("wall_time_s")),
                "throughput": _float(a.get("throughput")),
                "device": a.get("device"),
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
            }
        )
    frame = pd.DataFrame(rows, columns=list(trial_columns(metrics)))
    for col in ("seed", "diverged_step", "epochs_run", "steps"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["diverged"] = frame["diverged"].astype("boolean")
    for col in ("datetime_start", "datetime_complete"):
        frame[col] = pd.to_datetime(frame[col])
    for col in _HP_PARAMS + ("value", *(f"initial_{m}" for m in metrics), "final_train_loss",
                            *(f"final_{m}" for m in metrics), "wall_time_s", "throughput"):
        frame[col] = frame[col].astype("float64")
    return frame.sort_values("trial", kind="stable").reset_index(drop=True)


def _curves_frame(frozen: list[optuna.trial.FrozenTrial], metric: str, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for t in frozen:
        p, a = t.params, t.user_attrs
        key = {
            "trial": t.number,
            "optimizer": str(p.get("optimizer", "")),
            **_hyperparameters(str(p.get("optimizer", "")), p),
            "seed": p.get("seed"),
            "diverged": bool(a.get("diverged", False)),
        }
        try:
            result = TrialResult.from_user_attrs(a) if metric in a else None
        except TypeError:  # attributes from an older or partial writer
            result = None
        if result is not None:
            rows.append({**key, "epoch": 0, "train_loss": math.nan,
                         **{m: _float(result.initial.get(m)) for m in metrics}})
            series = {m: result.metrics.get(m, []) for m in metrics}
            n = max(len(result.train_loss), *(len(v) for v in series.values()))
            for i in range(n):
                rows.append({**key, "epoch": i + 1, "train_loss": _at(result.train_loss, i),
                             **{m: _at(v, i) for m, v in series.items()}})
        else:  # e.g. a RUNNING trial: only the reported objective per epoch exists
            for epoch, value in sorted(t.intermediate_values.items()):
                rows.append({**key, "epoch": int(epoch), "train_loss": math.nan,
                             **{m: math.nan for m in metrics}, metric: _float(value)})
    frame = pd.DataFrame(rows, columns=list(curve_columns(metrics)))
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame["epoch"] = frame["epoch"].astype("int64")
    values = ["train_loss", *metrics]
    for col in _HP_PARAMS + tuple(values):
        frame[col] = frame[col].astype("float64")
    frame[values] = frame[values].where(np.isfinite(frame[values]))
    return frame.sort_values(["trial", "epoch"], kind="stable").reset_index(drop=True)


def _at(values: list[float], i: int) -> float:
    return _float(values[i]) if i < len(values) else math.nan
