"""Running a sweep: StudySpec -> an Optuna study whose planned points each run exactly once.

:func:`prepare_sweep` validates everything a user can get wrong, creates or loads the study, and
puts the plan in Optuna's queue (see :mod:`sensitivity.study.queue`). :func:`run_worker` then takes
queued points one at a time and trains them; any number of workers may do so at once, in this
process, in local worker processes (:mod:`sensitivity.study.parallel`), or on other machines
(``adamrag-sens worker``, :func:`join_study`). Running the same sweep again queues only the points
that have no COMPLETE, RUNNING or WAITING trial: what is done stays done, a FAIL (a crash, Ctrl-C,
a killed worker detected by its stale heartbeat) is run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import threading
import time
import warnings
from typing import Any, Callable, Iterator, Protocol

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

import sensitivity
from sensitivity import interrupt
from sensitivity.errors import UserError
from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import METRICS, PARAM_NAMES, TrialResult, param_distributions
from sensitivity.study.queue import POINT_KEY, PlanProgress, PointQueue, enqueue_missing
from sensitivity.study.space import Point, plan_points
from sensitivity.study.spec import StudySpec
from sensitivity.storage import (
    fixed_params, heartbeat_interval, heartbeat_settings, open_storage, record_heartbeat, storage_of, trial_id_of,
)
from sensitivity.tasks import get_task
from sensitivity.train import load_task_data, resolve_device, train_trial

__all__ = [
    "POINT_KEY", "SweepCallbacks", "SweepResult", "best_trial", "create_or_load_study", "enqueue_missing",
    "join_study", "load_spec", "plan_progress_of", "prepare_sweep", "run_sweep", "run_trial", "run_worker",
]

_COMPARED_CONFIG = ("dataset", "train_size", "val_size", "batch_size", "epochs", "hidden")
OPTIMIZER_CHOICES = "optimizer_choices"
"""Study user attribute: the choices of the stored categorical param ``optimizer`` (fixed at creation)."""


class SweepCallbacks(Protocol):
    """What a front end (the CLI's progress bar) hears from a running sweep. All optional."""

    def on_plan(self, total: int, complete: int, queued: int) -> None: ...
    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...
    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_trial_end(self, number: int, params: dict[str, Any], value: float, result: TrialResult) -> None: ...
    def on_wait(self, running: int) -> None: ...


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
        progress: where the plan stands in storage at the end (all workers together).
    """

    study_name: str
    storage: str
    planned: int
    complete_before: int
    ran: int = 0
    diverged: int = 0
    best: dict[str, Any] | None = None
    progress: PlanProgress | None = None


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
    study.set_user_attr(OPTIMIZER_CHOICES, sorted(OPTIMIZERS))
    return study


def study_distributions(study: optuna.Study, optimizers: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The param distributions trials of ``study`` must use, checked against what storage holds.

    Optuna fixes a param's distribution kind (and a categorical's choices) with the first trial
    that stores it. The choices of ``optimizer`` are therefore the ones the study was created
    with, not the registry's of today, and an optimizer outside them cannot join the study.

    Raises:
        UserError: ``optimizers`` names an optimizer outside the stored choices, or a stored
            param has a distribution Optuna cannot change to the current one.
    """
    name = study.study_name
    trials = [t for t in study.get_trials(deepcopy=False) if t.distributions]
    choices = study.user_attrs.get(OPTIMIZER_CHOICES)
    if choices is None:
        stored = next((t.distributions["optimizer"] for t in trials if "optimizer" in t.distributions), None)
        choices = list(stored.choices) if stored is not None else sorted(OPTIMIZERS)
    missing = [o for o in optimizers if o not in choices]
    if missing:
        raise UserError(
            f"study {name!r} stores the param 'optimizer' with the choices {', '.join(choices)}, and Optuna cannot "
            f"add {', '.join(missing)} to a stored categorical: sweep {', '.join(missing)} under a new --study name "
            f"(the existing study stays as it is for `adamrag-sens report`)"
        )
    dists = param_distributions(list(choices))
    seen: set[str] = set()
    for t in trials:
        for pname, old in t.distributions.items():
            if pname in seen or pname not in dists:
                continue
            seen.add(pname)
            try:
                optuna.distributions.check_distribution_compatibility(old, dists[pname])
            except ValueError as err:
                raise UserError(
                    f"study {name!r} stores the param {pname!r} as {old}, which Optuna cannot change ({err}); "
                    f"run this sweep under a new --study name"
                ) from None
    return dists


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
        interval = heartbeat_interval(storage)
        if interval:
            self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True, name="heartbeat")

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                record_heartbeat(self._storage, self._trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                pass

    def __enter__(self) -> "_Heartbeat":
        if self._thread is not None:
            record_heartbeat(self._storage, self._trial_id)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


_TRANSIENT_RETRIES = (1.0, 2.0, 4.0, 8.0, 16.0)


def _retrying(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a storage write, retrying on transient storage errors (a dropped connection, a lock
    held longer than the busy timeout) for about half a minute before giving up."""
    import sqlalchemy.exc

    for pause in (*_TRANSIENT_RETRIES, None):
        try:
            return fn(*args, **kwargs)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError):
            if pause is None:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ignore Ctrl-C while a trial's failure is being recorded (a second Ctrl-C must not leave it RUNNING)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_trial(study: optuna.Study, trial: optuna.Trial, spec: StudySpec, callbacks: Any = None,
              distributions: dict[str, Any] | None = None) -> TrialResult | None:
    """Train the point held by ``trial`` and tell the study its outcome.

    A diverged run is a COMPLETE trial with ``diverged`` set and its value clipped (see
    :meth:`TrialResult.objective`). An exception (Ctrl-C included) marks the trial FAIL and is
    re-raised, so the next run of the sweep runs the point again.

    Returns:
        The result, or None when another worker failed this trial as stale while it ran (its
        heartbeats were late); the point is then queued again by that worker and the result here
        is dropped.
    """
    storage = storage_of(study)
    trial_id = trial_id_of(trial)
    dists = distributions or param_distributions(sorted(OPTIMIZERS))
    params: dict[str, Any] = {}
    try:
        with _Heartbeat(storage, trial_id):
            fixed = fixed_params(storage, trial_id)
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

            result = train_trial(
                task, config, params["optimizer"], hp, seed=int(params["seed"]),
                epochs=int(config["epochs"]), device=device,
                divergence_factor=spec.divergence_factor, on_epoch=on_epoch,
            )
            for key, value in result.to_user_attrs().items():
                _retrying(storage.set_trial_user_attr, trial_id, key, value)
            value = result.objective(spec.metric)
            _retrying(study.tell, trial, value, skip_if_finished=True)
    except UpdateFinishedTrialError:
        result = None
    except BaseException as err:
        with _sigint_deferred():
            try:
                storage.set_trial_user_attr(trial_id, "error", f"{type(err).__name__}: {err}"[:500])
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # noqa: BLE001 - storage gone: the heartbeat going stale covers it
                pass
        raise
    if result is None or storage.get_trial(trial_id).state != TrialState.COMPLETE:
        warnings.warn(
            f"trial #{trial.number} was failed as stale by another worker while it ran (late heartbeats); "
            f"its result is dropped and its point runs again", RuntimeWarning, stacklevel=2,
        )
        return None
    _call(callbacks, "on_trial_end", trial.number, params, value, result)
    return result


def run_worker(study: optuna.Study, spec: StudySpec, plan: list[Point], callbacks: Any = None,
               max_trials: int | None = None, *, wait: bool = True) -> tuple[int, int]:
    """Run queued points of ``plan`` until none is left (or ``max_trials`` ran).

    Each round first fails trials of dead workers (stale heartbeats) and queues their points
    again. When nothing is queued but other workers still run points of the plan, the worker
    waits (``wait=True``) and checks again every few seconds: if one of them dies, its point is
    run here. It returns when every point is complete or failed with an error.

    Returns:
        (trials run, of which diverged).

    Raises:
        UserError: the study's stored params cannot hold this plan's (see :func:`study_distributions`).
        KeyboardInterrupt: Ctrl-C; the running trial is stored as FAIL.
    """
    queue = PointQueue(study, plan)
    dists = study_distributions(study, sorted({p["optimizer"] for p in plan}))
    interval, _grace = heartbeat_settings()
    pause = min(float(interval), 1.0)  # while waiting for other workers' last trials
    ran = diverged = 0
    while max_trials is None or ran < max_trials:
        interrupt.check()  # a stop request whose KeyboardInterrupt Python swallowed
        queue.fail_stale()
        trial = queue.pop()
        if trial is None:
            if not wait or not queue.heartbeat:
                break
            running = queue.progress().running
            if running == 0:
                break
            _call(callbacks, "on_wait", running)
            time.sleep(pause)
            continue
        result = run_trial(study, trial, spec, callbacks, dists)
        if result is not None:
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


def check_can_run(spec: StudySpec) -> None:
    """Fail now, before any write, when this machine cannot run ``spec``'s trials.

    Raises:
        UserError: unknown task, absent device, or data missing (checked on the CPU, so a
            process that only coordinates workers holds no GPU memory).
    """
    import torch

    task = get_task(spec.task)
    resolve_device(spec.device)
    load_task_data(task, spec.task_config(), torch.device("cpu"))


def prepare_sweep(spec: StudySpec) -> tuple[optuna.Study, list[Point], int, int]:
    """Validate, check data and device, open storage, create/load the study and queue missing points.

    Everything that can fail because of user input fails here, before anything is written.

    Returns:
        (study, plan, points already complete, points newly queued).

    Raises:
        UserError: invalid spec, missing data, absent device, bad storage, a study of that
            name holding another experiment, or one whose stored params cannot hold this plan.
    """
    spec.validate()
    check_can_run(spec)
    plan = plan_points(spec)
    storage = open_storage(spec.storage)
    study = create_or_load_study(spec, storage)
    dists = study_distributions(study, spec.optimizers)  # refuses before the writes below
    if OPTIMIZER_CHOICES not in study.user_attrs:  # a study made before the choices were recorded
        study.set_user_attr(OPTIMIZER_CHOICES, list(dists["optimizer"].choices))
    study.set_user_attr("sampler", spec.sampler)
    study.set_user_attr("spec", spec.to_dict())
    study.set_user_attr("points", plan)
    complete, queued = enqueue_missing(study, plan)
    return study, plan, complete, queued


def plan_progress_of(study: optuna.Study, plan: list[Point]) -> PlanProgress:
    """Where ``plan`` stands in ``study`` (all workers together)."""
    return PointQueue(study, plan).progress()


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
        study_name=study.study_name, storage=spec.storage, planned=len(plan), complete_before=complete,
        ran=ran, diverged=diverged, best=best_trial(study), progress=plan_progress_of(study, plan),
    )


def load_spec(storage: str, study_name: str) -> StudySpec:
    """The spec a stored study was last run with (for ``adamrag-sens worker``).

    Raises:
        UserError: no such study, or it was not made by ``adamrag-sens sweep``.
    """
    return join_study(storage, study_name, check=False)[1]


def join_study(storage: str, study_name: str, *, device: str | None = None,
               check: bool = True) -> tuple[optuna.Study, StudySpec, list[Point]]:
    """Open a study made by ``adamrag-sens sweep`` to work on its queue from another process.

    Nothing is written: the plan is the one the sweep stored (study attribute ``points``).

    Args:
        storage: the study's storage URL or journal path (must exist).
        study_name: the study's name.
        device: this worker's device, overriding the study's (``cuda:1``, ``cpu``).
        check: verify that this machine has the data and the device.

    Returns:
        (study, spec with this storage and device, plan).

    Raises:
        UserError: no storage or no such study there, a study not made by ``adamrag-sens sweep``,
            or (``check``) data or device missing on this machine.
    """
    st = open_storage(storage, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if study_name not in names:
        raise UserError(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=st)
    attrs = study.user_attrs
    if "spec" not in attrs or "points" not in attrs:
        raise UserError(f"study {study_name!r} was not created by adamrag-sens sweep; nothing to join")
    spec = dataclasses.replace(StudySpec.from_dict(attrs["spec"]), storage=storage, study_name=study_name)
    if device is not None:
        spec = dataclasses.replace(spec, device=device)
    if check:
        check_can_run(spec)
    plan = [dict(p) for p in attrs["points"]]
    return study, spec, plan

