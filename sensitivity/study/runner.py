"""Running a sweep: StudySpec -> an Optuna study whose planned points each run exactly once.

A study's points (see :mod:`sensitivity.study.space`) are put in Optuna's queue of WAITING trials
(``Study.enqueue_trial``) with their canonical key as a user attribute. A worker takes a WAITING
trial by moving it to RUNNING through the storage's conditional state update (the same mechanism
``Study.ask`` uses, and atomic in every Optuna storage), so two workers never take the same one,
and no trial is ever sampled outside the plan. Running the same sweep again enqueues only the
points that have no COMPLETE, RUNNING or WAITING trial: what is done stays done, a FAIL (a crash,
Ctrl-C, a killed worker detected by its stale heartbeat) is run again.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import warnings
from typing import Any, Protocol

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import sensitivity
from sensitivity.errors import UserError
from sensitivity.optim.registry import OPTIMIZERS
from sensitivity.records import METRICS, PARAM_NAMES, TrialResult, param_distributions
from sensitivity.study.space import Point, plan_points, point_key
from sensitivity.study.spec import StudySpec
from sensitivity.study.storage import open_storage
from sensitivity.tasks import get_task
from sensitivity.train import load_task_data, resolve_device, train_trial

POINT_KEY = "point_key"
_COMPARED_CONFIG = ("dataset", "train_size", "val_size", "batch_size", "epochs", "hidden")


class SweepCallbacks(Protocol):
    """What a front end (the CLI's progress bar) hears from a running sweep. All optional."""

    def on_plan(self, total: int, complete: int, queued: int) -> None: ...
    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...
    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_trial_end(self, number: int, params: dict[str, Any], value: float, result: TrialResult) -> None: ...


@dataclasses.dataclass
class SweepResult:
    """What a call of :func:`run_sweep` did.

    Attributes:
        study_name: the Optuna study's name.
        storage: the storage URL or path.
        planned: points in the current plan.
        complete_before: planned points that were already COMPLETE when the call started.
        ran: trials this call ran to completion (diverged ones included).
        diverged: of ``ran``, how many diverged.
        best: params and value of the best COMPLETE trial in the study (None when there is none).
    """

    study_name: str
    storage: str
    planned: int
    complete_before: int
    ran: int = 0
    diverged: int = 0
    best: dict[str, Any] | None = None


def _call(callbacks: Any, name: str, *args: Any) -> None:
    fn = getattr(callbacks, name, None) if callbacks is not None else None
    if fn is not None:
        fn(*args)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in _COMPARED_CONFIG}


def create_or_load_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study named by ``spec``, created if new; refuses one that holds another experiment.

    Raises:
        UserError: a study of that name exists with another task, task configuration, epochs
            or metric. Nothing is written then.
    """
    name = spec.resolved_study_name
    config = spec.task_config()
    direction = METRICS[spec.metric]
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing:
        attrs = existing[name].user_attrs
        if attrs.get("task") != spec.task:
            raise UserError(
                f"study {name!r} already holds task {attrs.get('task')!r}, not {spec.task!r}; "
                f"give another --study name"
            )
        old, new = _comparable(attrs.get("task_config", {})), _comparable(config)
        changed = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in _COMPARED_CONFIG if old[k] != new[k]]
        if changed:
            raise UserError(
                f"study {name!r} was run with other settings ({'; '.join(changed)}); results would not be "
                f"comparable: give another --study name, or the study's own settings"
            )
        if attrs.get("metric") != spec.metric:
            raise UserError(
                f"study {name!r} optimises {attrs.get('metric')!r}, not {spec.metric!r}; "
                f"use --metric {attrs.get('metric')} or another --study name"
            )
        return optuna.load_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    study.set_user_attr("task", spec.task)
    study.set_user_attr("task_config", config)
    study.set_user_attr("metric", spec.metric)
    study.set_user_attr("epochs", int(config["epochs"]))
    study.set_user_attr("divergence_factor", spec.divergence_factor)
    study.set_user_attr("package_version", sensitivity.__version__)
    return study


def enqueue_missing(study: optuna.Study, plan: list[Point]) -> tuple[int, int]:
    """Queue every planned point that has no COMPLETE, RUNNING or WAITING trial.

    Returns:
        (points already complete, points newly queued).
    """
    live: set[str] = set()
    complete: set[str] = set()
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get(POINT_KEY)
        if key is None:
            continue
        if t.state == TrialState.COMPLETE:
            complete.add(key)
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            live.add(key)
    queued = 0
    for point in plan:
        key = point_key(point)
        if key not in live:
            study.enqueue_trial(point, user_attrs={POINT_KEY: key})
            live.add(key)
            queued += 1
    return sum(point_key(p) in complete for p in plan), queued


def _suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


class _Heartbeat:
    """Records a running trial's heartbeat every interval, so a killed worker's trial goes stale."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        if interval:
            self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                pass

    def __enter__(self) -> "_Heartbeat":
        if self._thread is not None:
            self._storage.record_heartbeat(self._trial_id)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _pop_waiting(study: optuna.Study, storage: optuna.storages.BaseStorage, wanted: set[str]) -> optuna.Trial | None:
    """Take one WAITING trial of the plan (atomically, WAITING -> RUNNING), or None."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if t.user_attrs.get(POINT_KEY) not in wanted:
            continue  # a point of an earlier plan that this sweep no longer asks for
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
            return optuna.Trial(study, trial_id)
    return None


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: StudySpec, callbacks: Any = None) -> TrialResult:
    """Train the point held by ``trial`` and tell the study its outcome.

    A diverged run is a COMPLETE trial with ``diverged`` set and its value clipped (see
    :meth:`TrialResult.objective`). An exception (Ctrl-C included) marks the trial FAIL and is
    re-raised, so the next run of the sweep runs the point again.
    """
    storage = study._storage  # the study's own storage object  # noqa: SLF001
    dists = param_distributions(list(OPTIMIZERS))
    fixed = storage.get_trial_system_attrs(trial._trial_id).get("fixed_params", {})  # noqa: SLF001
    params = {name: _suggest(trial, name, dists[name]) for name in PARAM_NAMES if name in fixed}
    hp = {k: v for k, v in params.items() if k not in ("optimizer", "seed")}
    task = get_task(spec.task)
    config = spec.task_config()
    device = resolve_device(spec.device)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    _call(callbacks, "on_trial_start", trial.number, params)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        trial.report(metrics[spec.metric], epoch)
        _call(callbacks, "on_epoch", trial.number, epoch, metrics)

    try:
        with _Heartbeat(storage, trial._trial_id):  # noqa: SLF001
            result = train_trial(
                task, config, params["optimizer"], hp, seed=int(params["seed"]),
                epochs=int(config["epochs"]), device=device,
                divergence_factor=spec.divergence_factor, on_epoch=on_epoch,
            )
        for key, value in result.to_user_attrs().items():
            trial.set_user_attr(key, value)
        value = result.objective(spec.metric)
        study.tell(trial, value)
    except BaseException as err:
        try:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            study.tell(trial, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - storage gone: the heartbeat going stale covers it
            pass
        raise
    _call(callbacks, "on_trial_end", trial.number, params, value, result)
    return result


def run_worker(study: optuna.Study, spec: StudySpec, plan: list[Point], callbacks: Any = None,
               max_trials: int | None = None) -> tuple[int, int]:
    """Run queued points of ``plan`` until none is left (or ``max_trials`` ran).

    Returns:
        (trials run, of which diverged).
    """
    storage = study._storage  # noqa: SLF001
    wanted = {point_key(p) for p in plan}
    ran = diverged = 0
    while max_trials is None or ran < max_trials:
        if getattr(storage, "get_heartbeat_interval", lambda: None)():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # trials of killed workers -> FAIL
        enqueue_missing(study, plan)  # re-queue points whose trial failed, here or elsewhere
        trial = _pop_waiting(study, storage, wanted)
        if trial is None:
            break
        result = run_trial(study, trial, spec, callbacks)
        ran += 1
        diverged += int(result.diverged)
    return ran, diverged


def best_trial(study: optuna.Study) -> dict[str, Any] | None:
    """Params, value and trial number of the best COMPLETE trial, or None."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        return None
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    t = pick(done, key=lambda t: t.value)
    return {"number": t.number, "value": t.value, "params": dict(t.params), "diverged": t.user_attrs.get("diverged")}


def prepare_sweep(spec: StudySpec) -> tuple[optuna.Study, list[Point], int, int]:
    """Validate, check data and device, open storage, create/load the study and queue missing points.

    Everything that can fail because of user input fails here, before anything is written.

    Returns:
        (study, plan, points already complete, points newly queued).

    Raises:
        UserError: invalid spec, missing data, absent device, bad storage or a study of that
            name holding another experiment.
    """
    spec.validate()
    task = get_task(spec.task)
    device = resolve_device(spec.device)
    load_task_data(task, spec.task_config(), device)  # fails early when data are missing
    plan = plan_points(spec)
    storage = open_storage(spec.storage)
    study = create_or_load_study(spec, storage)
    study.set_user_attr("sampler", spec.sampler)
    study.set_user_attr("spec", spec.to_dict())
    study.set_user_attr("points", plan)
    complete, queued = enqueue_missing(study, plan)
    return study, plan, complete, queued


def run_sweep(spec: StudySpec, callbacks: Any = None) -> SweepResult:
    """Run a sweep to completion in this process (resuming whatever storage already holds).

    Args:
        spec: the sweep.
        callbacks: optional :class:`SweepCallbacks` for progress display.

    Returns:
        A :class:`SweepResult`.

    Raises:
        UserError: see :func:`prepare_sweep`.
        KeyboardInterrupt: Ctrl-C; the running trial is stored as FAIL and the next run redoes it.
    """
    study, plan, complete, queued = prepare_sweep(spec)
    _call(callbacks, "on_plan", len(plan), complete, queued)
    ran, diverged = run_worker(study, spec, plan, callbacks)
    return SweepResult(
        study_name=study.study_name, storage=spec.storage, planned=len(plan),
        complete_before=complete, ran=ran, diverged=diverged, best=best_trial(study),
    )


def load_spec(storage: str, study_name: str) -> StudySpec:
    """The spec a stored study was last run with (for ``adamrag-sens worker``).

    Raises:
        UserError: no such study, or it was not made by ``adamrag-sens sweep``.
    """
    st = open_storage(storage, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if study_name not in names:
        raise UserError(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}")
    attrs = optuna.load_study(study_name=study_name, storage=st).user_attrs
    if "spec" not in attrs:
        raise UserError(f"study {study_name!r} was not created by adamrag-sens sweep; nothing to join")
    return dataclasses.replace(StudySpec.from_dict(attrs["spec"]), storage=storage)
