"""One trial of a sweep: train the params a worker took from the queue, record the outcome once.

:func:`run_trial` is what a worker does with a trial it took from the queue
(:meth:`~sensitivity.study.queue.PointQueue.pop`, which already recorded the trial's params, its
worker and its first heartbeat): train the params (:func:`sensitivity.train.train_trial`), then
record the :class:`~sensitivity.records.TrialResult` as user attributes, the objective as the
trial's value and its state COMPLETE, in one transaction. The objective after each epoch (Optuna's
intermediate values) reaches storage at most every :data:`REPORT_INTERVAL_S` seconds while the
trial runs (progress that other processes can watch) and in full with the result. While it
trains, the worker's :class:`Heartbeat` thread records that it is alive, so a killed worker's trial
goes stale and is run again elsewhere. The final write is retried through transient storage
errors; any exception (Ctrl-C included) stores the trial as FAIL before it propagates.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from typing import Any, Callable, Iterator

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sensitivity import records
from sensitivity.records import TrialResult
from sensitivity.storage import heartbeat_interval, scrub_secrets
from sensitivity.storage.local_faults import sqlite_fault
from sensitivity.study.ledger import TakenTrial, TrialLedger
from sensitivity.study.spec import StudySpec
from sensitivity.tasks import get_task
from sensitivity.train import pause_pending_for_test, resolve_device, train_trial

REPORT_INTERVAL_S = 1.0
"""At most this often (seconds) a running trial writes its new intermediate values; the rest go
with the result, in the same transaction."""


def call_back(callbacks: Any, name: str, *args: Any) -> None:
    """Call ``callbacks.<name>(*args)`` when the front end defines it (every callback is optional)."""
    fn = getattr(callbacks, name, None) if callbacks is not None else None
    if fn is not None:
        fn(*args)


class Heartbeat:
    """One thread per worker that records the heartbeats of the trials the worker is running (one,
    or the members of a population).

    The first heartbeat of a trial is recorded when the trial is taken (in the same transaction);
    this thread adds one every heartbeat interval while :meth:`beating` holds the trial, so the
    training thread never waits for a heartbeat write. A storage without heartbeats gets no thread.

    Example::

        with Heartbeat(ledger) as heart:
            with heart.beating(trial_id):
                train()
    """

    def __init__(self, ledger: TrialLedger) -> None:
        self.ledger = ledger
        self.interval = heartbeat_interval(ledger.storage)
        self._current: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in self._current:
                try:
                    self.ledger.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                    pass

    @contextlib.contextmanager
    def beating(self, *trial_ids: int) -> Iterator[None]:
        """Keep ``trial_ids`` alive for the duration of the block (see :meth:`stop_beating`)."""
        if self.interval and self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")
            self._thread.start()
        self._current = tuple(trial_ids)
        try:
            yield
        finally:
            self._current = ()

    def stop_beating(self, trial_id: int) -> None:
        """Stop the heartbeats of ``trial_id`` inside :meth:`beating` (a population member that
        is finished, or that another worker failed as stale), the others beating on."""
        self._current = tuple(t for t in self._current if t != trial_id)

    def __enter__(self) -> "Heartbeat":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _EpochReporter:
    """Collects a trial's per-epoch objective; writes what is new at most every REPORT_INTERVAL_S."""

    def __init__(self, ledger: TrialLedger, trial_id: int) -> None:
        self.ledger, self.trial_id = ledger, trial_id
        self.pending: dict[int, float] = {}
        self._last = time.monotonic()

    def add(self, epoch: int, value: float, *, flush: bool = False) -> None:
        """Hold ``value`` (the objective after ``epoch``); write what is held when ``flush`` or
        when REPORT_INTERVAL_S has passed since the last write."""
        self.pending[epoch] = value
        now = time.monotonic()
        if flush or now - self._last >= REPORT_INTERVAL_S:
            self.ledger.report(self.trial_id, self.pending)  # UpdateFinishedTrialError: failed as stale
            self.pending = {}
            self._last = now


_TRANSIENT_RETRIES = (1.0, 2.0, 4.0, 8.0, 16.0)


def _retrying(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a storage write, retrying on transient storage errors (a dropped connection, a lock
    held longer than the busy timeout) for about half a minute before giving up. A local SQLite
    fault (a full disk, a file made read-only: :func:`~sensitivity.storage.local_faults.sqlite_fault`)
    is raised at once: waiting does not fix it."""
    import sqlalchemy.exc

    for pause in (*_TRANSIENT_RETRIES, None):
        try:
            return fn(*args, **kwargs)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError) as err:
            if pause is None or sqlite_fault(err) is not None:
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


def run_trial(ledger: TrialLedger, trial: TakenTrial, spec: StudySpec, callbacks: Any = None,
              heartbeat: Heartbeat | None = None) -> TrialResult | None:
    """Train the point held by ``trial`` and record its outcome.

    A diverged run is a COMPLETE trial with ``diverged`` set and its value clipped (see
    :meth:`TrialResult.objective`). An exception (Ctrl-C included) marks the trial FAIL, with the
    exception in the user attribute :data:`~sensitivity.records.ERROR`, and is re-raised, so the
    next run of the sweep runs the point again.

    Args:
        ledger: the study's ledger (the queue's).
        trial: a trial this worker took (:meth:`~sensitivity.study.queue.PointQueue.pop`).
        spec: the sweep (task, budget, metric, device).
        callbacks: optional front-end callbacks (``on_trial_start``, ``on_epoch``, ``on_trial_end``).
        heartbeat: the worker's heartbeat thread (None: no heartbeats after the first).

    Returns:
        The result, or None when another worker failed this trial as stale while it ran (its
        heartbeats were late); the point is then queued again by that worker and the result here
        is dropped.
    """
    params = trial.params
    hp = {k: v for k, v in params.items() if k not in ("optimizer", "seed")}
    reporter = _EpochReporter(ledger, trial.trial_id)
    beating = heartbeat.beating(trial.trial_id) if heartbeat is not None else contextlib.nullcontext()
    try:
        with beating:
            task = get_task(spec.task)
            config = spec.task_config()
            device = resolve_device(spec.device)
            call_back(callbacks, "on_trial_start", trial.number, params)

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                # the test-only pause may hold the trial after this epoch: the epoch must be in the study by then
                reporter.add(epoch, metrics[spec.objective_metric], flush=pause_pending_for_test(epoch))
                call_back(callbacks, "on_epoch", trial.number, epoch, metrics)

            result = train_trial(
                task, config, params["optimizer"], hp, seed=int(params["seed"]),
                epochs=int(config["epochs"]), device=device,
                divergence_factor=spec.divergence_factor, on_epoch=on_epoch,
            )
            metric = spec.objective_metric
            value = result.objective(metric, task.metric(metric).higher_is_better)
            if math.isnan(value):  # as Optuna's tell, a NaN objective fails the trial (stored below)
                raise ValueError(f"the objective {metric} of the run is NaN")
            done = _retrying(ledger.finish, trial.trial_id, TrialState.COMPLETE, value, result.to_user_attrs(),
                             reporter.pending)
            if not done and ledger.state_of(trial.trial_id) == TrialState.COMPLETE:
                done = True  # an earlier attempt committed and only its reply was lost
    except UpdateFinishedTrialError:
        done = False
    except BaseException as err:
        with _sigint_deferred():
            try:
                error = scrub_secrets(f"{type(err).__name__}: {err}", spec.storage)  # a storage error may echo the URL
                ledger.finish(trial.trial_id, TrialState.FAIL, None, {records.ERROR: error[:500]}, reporter.pending)
            except Exception:  # noqa: BLE001 - storage gone: the heartbeat going stale covers it
                pass
        raise
    if not done:
        warnings.warn(
            f"trial #{trial.number} was failed as stale by another worker while it ran (late heartbeats); "
            f"its result is dropped and its point runs again", RuntimeWarning, stacklevel=2,
        )
        return None
    call_back(callbacks, "on_trial_end", trial.number, params, value, result)
    return result
