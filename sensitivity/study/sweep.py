"""Running a sweep: StudySpec -> an Optuna study whose planned points each run exactly once.

:func:`run_sweep` is the study side's one entry point: it prepares the sweep
(:func:`prepare_sweep`: validate everything a user can get wrong, create or load the study, put the
plan in Optuna's queue, see :mod:`sensitivity.study.queue`), runs the queued points in this process
(:func:`run_worker`: the points of one optimizer as populations,
:func:`~sensitivity.study.members.run_population`, where the task's model batches; else one
:func:`~sensitivity.study.trial.run_trial` after another) or in local
worker processes (:mod:`sensitivity.study.parallel`), and returns a :class:`SweepResult` from which a
front end prints the outcome. Other machines join with ``adamrag-sens worker`` (:func:`join_study`
then :func:`run_worker`). Running the same sweep again queues only the points that have no
COMPLETE, RUNNING or WAITING trial: what is done stays done, a FAIL (a crash, Ctrl-C, a killed
worker detected by its stale heartbeat) is run again. A study is only resumed with the settings it
was created with (:func:`create_or_load_study`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

import sensitivity
from sensitivity import interrupt, records
from sensitivity.catalog import OPTIMIZERS
from sensitivity.errors import UserError
from sensitivity.records import TrialResult, param_distributions
from sensitivity.storage import (
    NOTICES, heartbeat_settings, ledger_support, mask_storage, open_storage, release_storage, storage_of,
)
from sensitivity.study.ledger import PointTrial, open_ledger
from sensitivity.study.members import population_size_for, run_population
from sensitivity.study.parallel import LocalWorkers, WorkersOutcome, run_local_workers
from sensitivity.study.queue import LIVE_STATES, PlanProgress, PlanStart, PointQueue, enqueue_missing
from sensitivity.study.space import Point, plan_points, point_key, resolve_key
from sensitivity.study.spec import StudySpec, canonical_task_name
from sensitivity.study.trial import Heartbeat, call_back, run_trial
from sensitivity.tasks import get_task
from sensitivity.train import load_task_data, resolve_device

__all__ = [
    "FailedPoint", "MAX_RETRIES", "SweepCallbacks", "SweepResult", "best_trial", "failed_points", "retry_point", "create_or_load_study", "join_study", "plan_progress_of",
    "prepare_sweep", "run_sweep", "run_worker", "study_distributions",
]

_NOT_RESULT_SETTINGS = ("data_dir", "download")
"""Task settings that say where the data are, not what is trained: a study may resume with others."""


class SweepCallbacks(Protocol):
    """What a front end (the CLI's progress bar) hears from a running sweep. All optional."""

    def on_plan(self, result: "SweepResult") -> None: ...
    def on_trial_start(self, number: int, params: dict[str, Any]) -> None: ...
    def on_epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_trial_end(self, number: int, params: dict[str, Any], value: float, result: TrialResult) -> None: ...
    def on_trial_fail(self, failure: "FailedPoint", retry: int | None) -> None: ...
    def on_wait(self, running: int) -> None: ...
    def on_poll(self, progress: PlanProgress, workers_alive: int) -> None: ...


MAX_RETRIES = 2
"""A point whose trial raises is queued again at most this many times per sweep or worker start (the
bound of Optuna's ``RetryFailedTrialCallback(max_retry=...)``); then it stays FAIL, the sweep goes on
with the other points, and the next start of the sweep tries it again."""


@dataclasses.dataclass
class FailedPoint:
    """A planned point whose latest trial failed with an error.

    Attributes:
        number: the failed trial's number.
        params: the point (optimizer, hyperparameters, seed).
        error: the stored error, ``"Type: message"``.
    """

    number: int
    params: dict[str, Any]
    error: str


@dataclasses.dataclass
class SweepResult:
    """What a call of :func:`run_sweep` did.

    Attributes:
        study_name: the Optuna study's name.
        storage: the storage URL or path.
        start: where each planned point stood when the call started (complete, running elsewhere,
            queued earlier, queued now; see :class:`~sensitivity.study.queue.PlanStart`).
        workers: the local worker processes that ran the points (None: this process ran them).
        ran: trials this process ran to completion (diverged ones included; 0 with ``workers``).
        diverged: of ``ran``, how many diverged.
        best: params and value of the best COMPLETE trial in the study (None when there is none).
        progress: where the plan stands in storage at the end (all workers together); for a
            resumed study, at ``on_plan`` time, where it stood before this run.
        outcome: how the local worker processes ended (None without ``workers``).
        failures: planned points whose latest trial failed with an error and was not retried
            (their retries used up); the sweep ran every other point.
        population: K, the queued points of one optimizer each worker trains together (1: one by
            one; see :func:`~sensitivity.study.members.population_size_for`).
        runs_as: which path runs and why, one clause (e.g. ``"populations of up to 27 (task 'digits-mlp'
            declares population_size=27)"``); empty when nothing was left to run.
    """

    study_name: str
    storage: str
    start: PlanStart
    workers: LocalWorkers | None = None
    ran: int = 0
    diverged: int = 0
    best: dict[str, Any] | None = None
    progress: PlanProgress | None = None
    outcome: WorkersOutcome | None = None
    failures: list[FailedPoint] = dataclasses.field(default_factory=list)
    population: int = 1
    runs_as: str = ""

    @property
    def planned(self) -> int:
        """Points in the current plan."""
        return self.start.total

    @property
    def complete_before(self) -> int:
        """Planned points that were already COMPLETE when the call started."""
        return self.start.complete

    @property
    def queued(self) -> int:
        """Points this call queued (the others were complete, running or queued already)."""
        return self.start.queued


def _result_settings(task: str, config: dict[str, Any], metric: Any, divergence_factor: Any) -> dict[str, Any]:
    """The stored settings that change what a trial computes, by name (what a resumed study must keep)."""
    out = {"task": task}
    out.update({k: v for k, v in sorted(config.items()) if k not in _NOT_RESULT_SETTINGS})
    out.update(metric=metric, divergence_factor=divergence_factor)
    return out


def _study_attrs(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any] | None:
    """The user attributes of study ``name``, or None when there is no such study. Two look-ups by
    name (``optuna.get_all_study_summaries`` would read every trial of every study in the database)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def create_or_load_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The study named by ``spec``, created if new; refuses one that holds another experiment.

    Raises:
        UserError: a study of that name exists with another task, or other settings that change
            results (dataset, data sizes, batch size, epochs, model size, precise BN, metric,
            divergence factor); the one line names each setting with its stored and its new value. Nothing
            is written then.
    """
    name = spec.resolved_study_name
    config = spec.task_config()
    task = get_task(spec.task)
    metric = spec.objective_metric
    direction = task.metric(metric).direction
    attrs = _study_attrs(storage, name)
    if attrs is not None:
        stored_task = attrs.get(records.TASK)
        if not isinstance(stored_task, str) or canonical_task_name(stored_task) != spec.task:
            raise UserError(
                f"study {name!r} already holds task {attrs.get(records.TASK)!r}, not {spec.task!r}; "
                f"give another --study name"
            )
        if attrs.get(records.METRIC, metric) != metric:
            raise UserError(
                f"study {name!r} optimises {attrs.get(records.METRIC)!r}, not {metric!r}; "
                f"use --metric {attrs.get(records.METRIC)} or another --study name"
            )
        stored = {"precise_bn": 0, **attrs.get(records.TASK_CONFIG, {})}  # studies made before the option had none
        old = _result_settings(attrs.get(records.TASK), stored,
                               attrs.get(records.METRIC), attrs.get(records.DIVERGENCE_FACTOR))
        new = _result_settings(spec.task, config, metric, spec.divergence_factor)
        changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if k in old and old[k] != new[k]]
        if changed:
            raise UserError(
                f"study {name!r} was run with other settings ({'; '.join(changed)}); results would not be "
                f"comparable: give another --study name, or the study's own settings"
            )
        return optuna.load_study(study_name=name, storage=storage)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction)
    study.set_user_attr(records.TASK, spec.task)
    study.set_user_attr(records.TASK_CONFIG, config)
    study.set_user_attr(records.METRIC, metric)
    study.set_user_attr(records.EPOCHS, int(config["epochs"]))
    study.set_user_attr(records.DIVERGENCE_FACTOR, spec.divergence_factor)
    study.set_user_attr(records.PACKAGE_VERSION, sensitivity.__version__)
    study.set_user_attr(records.OPTIMIZER_CHOICES, sorted(OPTIMIZERS))
    return study


def study_distributions(study: optuna.Study, optimizers: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The param distributions trials of ``study`` must use, checked against what storage holds.

    Optuna fixes a param's distribution kind (and a categorical's choices) with the first trial
    that stores it. The choices of ``optimizer`` are therefore the ones the study was created
    with, not the catalog's of today, and an optimizer outside them cannot join the study.

    Raises:
        UserError: ``optimizers`` names an optimizer outside the stored choices, or a stored
            param has a distribution Optuna cannot change to the current one.
    """
    name = study.study_name
    first = open_ledger(study).first_distributions()  # one indexed read, not a scan of the study
    choices = study.user_attrs.get(records.OPTIMIZER_CHOICES)
    if choices is None:
        stored = first.get("optimizer")
        choices = list(stored.choices) if stored is not None else sorted(OPTIMIZERS)
    missing = [o for o in optimizers if o not in choices]
    if missing:
        raise UserError(
            f"study {name!r} stores the param 'optimizer' with the choices {', '.join(choices)}, and Optuna cannot "
            f"add {', '.join(missing)} to a stored categorical: sweep {', '.join(missing)} under a new --study name "
            f"(the existing study stays as it is for `adamrag-sens report`)"
        )
    dists = param_distributions(list(choices))
    for pname, old in first.items():
        if pname not in dists:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(old, dists[pname])
        except ValueError as err:
            raise UserError(
                f"study {name!r} stores the param {pname!r} as {old}, which Optuna cannot change ({err}); "
                f"run this sweep under a new --study name"
            ) from None
    return dists


def run_worker(study: optuna.Study, spec: StudySpec, plan: list[Point], callbacks: Any = None,
               max_trials: int | None = None, *, wait: bool = True, population: int | None = None) -> tuple[int, int]:
    """Run queued points of ``plan`` until none is left (or ``max_trials`` ran).

    The worker takes up to K queued points of one optimizer at a time and trains them as one
    population (:func:`~sensitivity.study.members.run_population`, each member its own trial with
    the same values as alone), K from ``population`` or else :func:`population_size_for` (``spec``'s
    ``--population``, or the task's declared size where its model can be batched); with K = 1, or a
    single point taken, one :func:`~sensitivity.study.trial.run_trial` after another.

    Every heartbeat interval, and whenever nothing is queued, the worker fails trials of dead
    workers (stale heartbeats) and queues their points again. A trial that raises is stored as
    FAIL with its error (see :func:`~sensitivity.study.trial.run_trial`), its point is queued again
    up to :data:`MAX_RETRIES` times (:func:`retry_point`), and the worker goes on with the next
    point; only Ctrl-C (and a storage that stops answering) ends it early. When nothing is queued
    but other workers still run points of the plan, the worker
    waits (``wait=True``) and checks again every few seconds: if one of them dies, its point is
    run here. It returns when every point is complete or failed with an error.

    Returns:
        (trials run, of which diverged).

    Raises:
        UserError: the study's stored params cannot hold this plan's (see :func:`study_distributions`).
        KeyboardInterrupt: Ctrl-C; the running trial (every running member) is stored as FAIL.
    """
    dists = study_distributions(study, sorted({p["optimizer"] for p in plan}))
    queue = PointQueue(study, plan, dists)
    k = population_size_for(spec)[0] if population is None else population
    interval, _grace = heartbeat_settings()
    pause = min(float(interval), 1.0)  # while waiting for other workers' last trials
    ran = diverged = 0
    next_stale_check = 0.0
    with Heartbeat(queue.ledger) as heart:
        while max_trials is None or ran < max_trials:
            interrupt.check()  # a stop request whose KeyboardInterrupt Python swallowed
            if time.monotonic() >= next_stale_check:
                queue.fail_stale()
                next_stale_check = time.monotonic() + interval
            want = k if max_trials is None else max(1, min(k, max_trials - ran))
            taken = queue.pop_population(want)
            if not taken and queue.fail_stale():  # a dead worker's point was just queued again
                taken = queue.pop_population(want)
            if not taken:
                if not wait or not queue.heartbeat:
                    break
                running = queue.progress().running
                if running == 0:
                    break
                call_back(callbacks, "on_wait", running)
                time.sleep(pause)
                continue
            if len(taken) > 1:  # a population: each member recorded as its own trial
                outcome = run_population(queue.ledger, taken, spec, k, callbacks, heart)
                for member in outcome.failed:  # each retried alone, as a single trial's failure
                    failed = storage_of(study).get_trial(member.trial_id)
                    call_back(callbacks, "on_trial_fail", _failed_point(failed), retry_point(study, failed))
                ran += len(outcome.results)
                diverged += sum(int(result.diverged) for _, result in outcome.results)
                continue
            trial = taken[0]
            try:
                result = run_trial(queue.ledger, trial, spec, callbacks, heart)
            except Exception:  # noqa: BLE001 - any error of one trial (stored with it as FAIL): go on with the others
                failed = storage_of(study).get_trial(trial.trial_id)
                call_back(callbacks, "on_trial_fail", _failed_point(failed), retry_point(study, failed))
                continue
            if result is not None:
                ran += 1
                diverged += int(result.diverged)
    return ran, diverged


def _failed_point(trial: optuna.trial.FrozenTrial) -> FailedPoint:
    key = trial.user_attrs.get(records.POINT_KEY)
    params = json.loads(key) if key else dict(trial.params)
    return FailedPoint(trial.number, params, str(trial.user_attrs.get(records.ERROR, "no error recorded")))


def retry_point(study: optuna.Study, failed: optuna.trial.FrozenTrial, max_retries: int = MAX_RETRIES) -> int | None:
    """Queue the point of the FAIL trial ``failed`` again, unless it was retried ``max_retries`` times.

    As Optuna's ``RetryFailedTrialCallback``: the new WAITING trial carries the chain of the failed
    trials it retries (user attribute :data:`~sensitivity.records.RETRY_OF`), whose length bounds
    the retries.

    Returns:
        The retry's count (1 for the first retry), or None when the retries are used up.
    """
    chain = [*failed.user_attrs.get(records.RETRY_OF, []), failed.number]
    key = failed.user_attrs.get(records.POINT_KEY)
    if key is None or len(chain) > max_retries:
        return None
    study.enqueue_trial(json.loads(key), user_attrs={records.POINT_KEY: key, records.RETRY_OF: chain})
    return len(chain)


def failed_points(study: optuna.Study, plan: list[Point]) -> list[FailedPoint]:
    """Points of ``plan`` whose latest trial FAILED and that have no COMPLETE, RUNNING or WAITING
    trial, each with its latest trial's error, in trial order (one indexed read of the study)."""
    wanted = {resolve_key(point_key(p)) for p in plan}
    latest: dict[str, PointTrial] = {}
    live: set[str] = set()
    for t in open_ledger(study).point_trials(attrs=(records.ERROR,)):
        key = resolve_key(t.key)  # a trial stored before weight decay was resolved into every point
        if key not in wanted:
            continue
        if t.state in LIVE_STATES:
            live.add(key)
        elif t.state == TrialState.FAIL and (key not in latest or t.number > latest[key].number):
            latest[key] = t
    failed = (FailedPoint(t.number, json.loads(k), str(t.attrs.get(records.ERROR, "no error recorded")))
              for k, t in latest.items() if k not in live)
    return sorted(failed, key=lambda f: f.number)


def best_trial(study: optuna.Study) -> dict[str, Any] | None:
    """The best COMPLETE trial, ranked as every report ranks (:func:`~sensitivity.records.rank_key`).

    Objectives are clipped at the initial value (:meth:`~sensitivity.records.TrialResult.objective`),
    so a diverged run ties with runs that ended no better than their start; at a tie the run that
    did not diverge wins, so a diverged trial is named only when every trial diverged. The ranking
    reads values and the diverged flags only (one indexed read), then the best trial in full.

    Returns:
        None when no trial is complete, else ``{"number", "value", "params", "diverged",
        "diverged_reason", "final", "initial"}``: ``final`` the unclipped final value of the
        study's metric (NaN when unrecorded), ``initial`` its value at initialisation.
    """
    done = [t for t in open_ledger(study).point_trials(attrs=("diverged",), planned_only=False)
            if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    metric = study.user_attrs.get(records.METRIC, "val_loss")
    hib = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = min(done, key=lambda t: (*records.rank_key(t.value, t.attrs.get("diverged"), hib), t.number))
    t = storage_of(study).get_trial(best.trial_id)
    finals = t.user_attrs.get(metric) or []
    final = finals[-1] if finals and finals[-1] is not None else math.nan
    initial = t.user_attrs.get(f"initial_{metric}")
    return {"number": t.number, "value": t.value, "params": dict(t.params),
            "diverged": bool(t.user_attrs.get("diverged")), "diverged_reason": t.user_attrs.get("diverged_reason") or "",
            "final": float(final), "initial": math.nan if initial is None else float(initial)}


def task_info(spec: StudySpec) -> dict[str, str]:
    """The workload in words, as stored in the study attribute :data:`~sensitivity.records.TASK_INFO`."""
    import torch

    task = get_task(spec.task)
    config = spec.task_config()
    data = load_task_data(task, config, torch.device("cpu"))  # cached: check_can_run loaded it
    return {
        "name": task.name,
        "description": task.description,
        "data": str(getattr(data, "description", "")),
        "data_source": task.data_source,
        "epoch": task.epoch,
        "example_unit": task.example_unit,
        "settings": task.summary(config),
    }


def check_can_run(spec: StudySpec) -> None:
    """Fail now, before any write, when this machine cannot run ``spec``'s trials.

    Raises:
        UserError: unknown task, absent device, or data missing (checked on the CPU, so a
            process that only coordinates workers holds no GPU memory).
    """
    import torch

    task = get_task(spec.task)
    resolve_device(spec.device)
    try:
        data = load_task_data(task, spec.task_config(), torch.device("cpu"))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's task whose load fails is the user's to fix
        raise UserError(f"--task {spec.task}: loading its data failed ({type(err).__name__}: {err}); "
                        f"fix the task's load()") from None
    if not callable(getattr(data, "to", None)):
        raise UserError(f"--task {spec.task}: load() returned {type(data).__name__}, not data with a "
                        f".to(device, memory_format) method (e.g. sensitivity.tasks.TensorData)")


def check_points(plan: list[Point]) -> None:
    """Fail now, before any write, when an optimizer refuses a planned point's hyperparameters.

    Each distinct (optimizer, hyperparameters) of ``plan`` is built once over a one-element
    parameter, so whatever the torch optimizer's constructor refuses (a beta of 1.0, a negative
    epsilon...) is refused here, for the whole plan, instead of failing its trial after the study
    is written.

    Raises:
        UserError: the first point refused, with the optimizer's own reason.
    """
    import torch

    from sensitivity.optim.registry import build_optimizer

    probe = [torch.nn.Parameter(torch.zeros(1))]
    seen: set[tuple[Any, ...]] = set()
    for point in plan:
        hp = {k: v for k, v in point.items() if k not in ("optimizer", "seed")}
        key = (point["optimizer"], *sorted(hp.items()))
        if key in seen:
            continue
        seen.add(key)
        try:
            build_optimizer(point["optimizer"], probe, hp)
        except (ValueError, TypeError, AssertionError) as err:  # lion_pytorch asserts its betas
            shown = " ".join(f"{k}={v:g}" for k, v in hp.items())
            raise UserError(f"{point['optimizer']} refuses the planned point {shown} ({err}); "
                            f"change the values given for it") from None


def prepare_sweep(spec: StudySpec) -> tuple[optuna.Study, list[Point], PlanStart]:
    """Validate, check data and device, open storage, create/load the study and queue missing points.

    Everything that can fail because of user input fails here, before anything is written.

    Returns:
        (study, plan, where each planned point stood: complete, running, queued earlier, queued now).

    Raises:
        UserError: invalid spec, missing data, absent device, bad storage, a study of that
            name holding another experiment, or one whose stored params cannot hold this plan.
    """
    spec.validate()
    check_can_run(spec)
    plan = plan_points(spec)
    check_points(plan)
    storage = open_storage(spec.storage)
    try:
        study = create_or_load_study(spec, storage)
        dists = study_distributions(study, spec.optimizers)  # refuses before the writes below
    except BaseException:
        release_storage(storage)  # a refused sweep leaves no connection (nor SQLite log) behind
        raise
    notice = ledger_support(storage).notice()
    if notice is not None:  # one line at start: bookkeeping will grow with the study
        logging.getLogger(NOTICES).warning(notice)
    if records.OPTIMIZER_CHOICES not in study.user_attrs:  # a study made before the choices were recorded
        study.set_user_attr(records.OPTIMIZER_CHOICES, list(dists["optimizer"].choices))
    study.set_user_attr(records.SAMPLER, spec.sampler)
    study.set_user_attr(records.SPEC, spec.stored_dict())  # without the storage URL and its password
    task = get_task(spec.task)
    study.set_user_attr(records.METRIC_DECLARATIONS, [m.to_dict() for m in task.metrics])
    study.set_user_attr(records.TASK_INFO, task_info(spec))
    study.set_user_attr(records.POINTS, plan)
    return study, plan, enqueue_missing(study, plan)


def plan_progress_of(study: optuna.Study, plan: list[Point]) -> PlanProgress:
    """Where ``plan`` stands in ``study`` (all workers together)."""
    return PointQueue(study, plan).progress()


def run_sweep(spec: StudySpec, callbacks: Any = None, *, workers: LocalWorkers | None = None) -> SweepResult:
    """Run a sweep to completion (resuming whatever storage already holds).

    Args:
        spec: the sweep.
        callbacks: optional :class:`SweepCallbacks` for progress display; ``on_plan`` hears the
            result so far (study name, where each planned point stands) before any trial runs.
        workers: local worker processes to run the points in (see
            :func:`~sensitivity.study.parallel.plan_local_workers`); None or one process without
            GPUs: this process runs them.

    Returns:
        A :class:`SweepResult`.

    Raises:
        UserError: see :func:`prepare_sweep`.
        KeyboardInterrupt: Ctrl-C; the running trial is stored as FAIL and the next run redoes it.
    """
    study, plan, start = prepare_sweep(spec)
    complete = start.complete
    if workers is not None and not workers.separate_processes:
        workers = None
    result = SweepResult(study_name=study.study_name, storage=spec.storage, start=start, workers=workers)
    try:
        if complete:  # a resumed study: where it stands, so a progress display starts from its stored best
            result.progress = plan_progress_of(study, plan)
        if complete < len(plan):
            result.population, result.runs_as = population_size_for(spec)
        call_back(callbacks, "on_plan", result)
        if complete < len(plan):
            if workers is None:
                result.ran, result.diverged = run_worker(study, spec, plan, callbacks, population=result.population)
            else:
                result.outcome = run_local_workers(
                    spec.storage, study.study_name, workers, poll=lambda: plan_progress_of(study, plan),
                    on_progress=lambda prog, alive: call_back(callbacks, "on_poll", prog, alive),
                )
        result.best = best_trial(study)
        result.progress = plan_progress_of(study, plan)
        result.failures = failed_points(study, plan)
    finally:
        release_storage(study)  # SQLite: the last connection folds the write-ahead log into the file now
    return result


def join_study(storage: str, study_name: str, *, device: str | None = None,
               check: bool = True) -> tuple[optuna.Study, StudySpec, list[Point]]:
    """Open a study made by ``adamrag-sens sweep`` to work on its queue from another process.

    Nothing is written: the plan is the one the sweep stored (study attribute
    :data:`~sensitivity.records.POINTS`).

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
    if _study_attrs(st, study_name) is None:
        names = [s.study_name for s in st.get_all_studies()]
        raise UserError(f"no study {study_name!r} in {mask_storage(storage)}; studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=st)
    attrs = study.user_attrs
    if records.SPEC not in attrs or records.POINTS not in attrs:
        raise UserError(f"study {study_name!r} was not created by adamrag-sens sweep; nothing to join")
    stored_task = str(attrs[records.SPEC].get("task", ""))
    try:
        spec = _joined_spec(attrs, storage, study_name, device, check)
    except UserError as err:  # the task was named by the sweep's --task, not by this command
        message = str(err)
        if stored_task and message.startswith(f"--task {stored_task}"):
            message = (f"study {study_name!r} was swept with task {stored_task!r}, which this machine cannot "
                       f"load{message[len(f'--task {stored_task}'):]}")
            raise UserError(message) from None
        raise
    plan = [dict(p) for p in attrs[records.POINTS]]
    return study, spec, plan


def _joined_spec(attrs: dict[str, Any], storage: str, study_name: str, device: str | None,
                 check: bool) -> StudySpec:
    spec = dataclasses.replace(StudySpec.from_dict(attrs[records.SPEC]), storage=storage, study_name=study_name)
    if spec.precise_bn is None:  # a study made before --precise-bn: train as it was trained (stored config, else off)
        spec = dataclasses.replace(spec, precise_bn=int(attrs.get(records.TASK_CONFIG, {}).get("precise_bn") or 0))
    if device is not None:
        spec = dataclasses.replace(spec, device=device)
    if check:
        check_can_run(spec)
    return spec
