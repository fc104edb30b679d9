"""One trial of a sweep: take its queued params, train, tell the study, with a heartbeat and retries.

:func:`run_trial` is what a worker does with a trial it took from the queue
(:class:`~sensitivity.study.queue.PointQueue`): suggest the params the trial was queued with,
train them (:func:`sensitivity.train.train_trial`), store the :class:`~sensitivity.records.TrialResult`
as user attributes and the objective as the trial's value. While it trains, a thread records the
trial's heartbeat, so a killed worker's trial goes stale and is run again elsewhere. Storage writes
of the result are retried through transient errors; any exception (Ctrl-C included) stores the
trial as FAIL before it propagates.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import warnings
from typing import Any, Callable, Iterator

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sensitivity import records
from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import PARAM_NAMES, TrialResult, param_distributions
from sensitivity.storage import (
    fixed_params, heartbeat_interval, record_heartbeat, scrub_secrets, storage_of, trial_id_of,
)
from sensitivity.study.spec import StudySpec
from sensitivity.tasks import get_task
from sensitivity.train import resolve_device, train_trial


def call_back(callbacks: Any, name: str, *args: Any) -> None:
    """Call ``callbacks.<name>(*args)`` when the front end defines it (every callback is optional)."""
    fn = getattr(callbacks, name, None) if callbacks is not None else None
    if fn is not None:
        fn(*args)


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
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        interval = heartbeat_interval(storage)
        if interval:
            self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True, name="heartbeat")

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                record_heartbeat(self.storage, self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                pass

    def __enter__(self) -> "_Heartbeat":
        if self._thread is not None:
            record_heartbeat(self.storage, self.trial_id)
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
    :meth:`TrialResult.objective`). An exception (Ctrl-C included) marks the trial FAIL, with the
    exception in the user attribute :data:`~sensitivity.records.ERROR`, and is re-raised, so the
    next run of the sweep runs the point again.

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
            trial.set_user_attr(records.WORKER, f"{socket.gethostname()}:{os.getpid()}")
            call_back(callbacks, "on_trial_start", trial.number, params)

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                trial.report(metrics[spec.objective_metric], epoch)
                call_back(callbacks, "on_epoch", trial.number, epoch, metrics)

            result = train_trial(
                task, config, params["optimizer"], hp, seed=int(params["seed"]),
                epochs=int(config["epochs"]), device=device,
                divergence_factor=spec.divergence_factor, on_epoch=on_epoch,
            )
            for key, value in result.to_user_attrs().items():
                _retrying(storage.set_trial_user_attr, trial_id, key, value)
            value = result.objective(spec.objective_metric, task.metric(spec.objective_metric).higher_is_better)
            _retrying(study.tell, trial, value, skip_if_finished=True)
    except UpdateFinishedTrialError:
        result = None
    except BaseException as err:
        with _sigint_deferred():
            try:
                error = scrub_secrets(f"{type(err).__name__}: {err}", spec.storage)  # a storage error may echo the URL
                storage.set_trial_user_attr(trial_id, records.ERROR, error[:500])
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
    call_back(callbacks, "on_trial_end", trial.number, params, value, result)
    return result
