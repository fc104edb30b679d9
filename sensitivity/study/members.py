"""Populations in a sweep: the queued points of one optimizer a worker took together, trained as one
batched model (:mod:`sensitivity.population`), each recorded as its own trial.

:func:`population_size_for` decides, once per worker, how many points it takes at a time (the
``--population`` the sweep was given, or the task's declared size where its model can be batched)
and says why in one clause. :func:`run_population` is :func:`~sensitivity.study.trial.run_trial`
for the members of one population (:meth:`~sensitivity.study.queue.PointQueue.pop_population`
took them, each RUNNING with its first heartbeat), and keeps every guarantee of the single trial per
member:

* each member's intermediate values reach storage at most every
  :data:`~sensitivity.study.trial.REPORT_INTERVAL_S` while it trains and in full with its result;
  its result is its user attributes, its objective its value, its state COMPLETE, one transaction
  per member (retried through transient storage errors); wall time is the population's, shared out
  by member-steps;
* the worker's :class:`~sensitivity.study.trial.Heartbeat` beats for every member still training;
* a member that another worker failed as stale (its heartbeats were late) is skipped from then on
  (its result dropped, its point queued again by that worker); the others go on and are recorded;
* a member whose objective is NaN is stored as FAIL alone, as the single trial would be;
* an exception in training stores every member not yet recorded as FAIL with the error (they are
  retried one by one by the worker, :func:`~sensitivity.study.sweep.retry_point`); Ctrl-C (and
  SIGTERM) does the same and propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from sensitivity import population as populations
from sensitivity import records
from sensitivity.records import TrialResult
from sensitivity.storage import scrub_secrets
from sensitivity.study.ledger import TakenTrial, TrialLedger
from sensitivity.study.spec import StudySpec
from sensitivity.study.trial import Heartbeat, _EpochReporter, _retrying, _sigint_deferred, call_back
from sensitivity.tasks import get_task
from sensitivity.train import pause_pending_for_test, resolve_device


def population_size_for(spec: StudySpec, device: str | None = None) -> tuple[int, str]:
    """How many queued points of one optimizer a worker of ``spec`` trains at a time, and why.

    ``spec.population`` None: :func:`~sensitivity.population.default_population_size` (the task's
    declared size where :func:`~sensitivity.population.population_support` accepts its model, else
    1); 1: one by one; K > 1: K where the model can be batched, else 1 with the reason.

    Args:
        spec: the sweep.
        device: the device the worker trains on (default: ``spec.device`` resolved).

    Returns:
        ``(K, clause)``: the clause says which path runs and why, e.g.
        ``"populations of up to 27 (task 'digits-mlp' declares population_size=27)"`` or
        ``"one by one (--population 1)"``.
    """
    task = get_task(spec.task)
    config = spec.task_config()
    dev = resolve_device(device or spec.device)
    if spec.population == 1:
        return 1, "one by one (--population 1)"
    if spec.population is None:
        k, why = populations.default_population_size(task, dev, config)
    else:
        ok, why = populations.population_support(task, dev, config)
        k, why = (spec.population, f"--population {spec.population}") if ok else (1, why)
    return (k, f"populations of up to {k} ({why})") if k > 1 else (1, f"one by one ({why})")


@dataclasses.dataclass
class PopulationOutcome:
    """What :func:`run_population` recorded.

    Attributes:
        results: ``(trial, result)`` of each member recorded COMPLETE, in the order taken.
        failed: the members this worker stored as FAIL with an error (each to be retried alone).
        dropped: the members another worker failed as stale while they trained (results dropped;
            that worker queued their points again).
    """

    results: list[tuple[TakenTrial, TrialResult]] = dataclasses.field(default_factory=list)
    failed: list[TakenTrial] = dataclasses.field(default_factory=list)
    dropped: list[TakenTrial] = dataclasses.field(default_factory=list)


def _fail(ledger: TrialLedger, trial: TakenTrial, error: str, pending: dict[int, float]) -> bool:
    """Store ``trial`` as FAIL with ``error``; False when it was no longer RUNNING (or storage is gone:
    the heartbeat going stale covers it)."""
    try:
        return bool(ledger.finish(trial.trial_id, TrialState.FAIL, None, {records.ERROR: error[:500]}, pending))
    except Exception:  # noqa: BLE001 - storage gone: the heartbeat going stale covers it
        return False


def run_population(ledger: TrialLedger, trials: list[TakenTrial], spec: StudySpec, population: int,
                   callbacks: Any = None, heartbeat: Heartbeat | None = None) -> PopulationOutcome:
    """Train the points held by ``trials`` (one optimizer) as populations of up to ``population``
    and record each member's outcome (see the module's guarantees).

    A diverged member is a COMPLETE trial with ``diverged`` set, as in the single path. An
    exception in training (not Ctrl-C) is stored with every member not yet recorded as FAIL and
    those members are returned in ``failed``; the worker goes on.

    Args:
        ledger: the study's ledger (the queue's).
        trials: members this worker took (:meth:`~sensitivity.study.queue.PointQueue.pop_population`).
        spec: the sweep (task, budget, metric, device).
        population: K (:func:`population_size_for`).
        callbacks: optional front-end callbacks (``on_trial_start``, ``on_epoch``, ``on_trial_end``
            for each member).
        heartbeat: the worker's heartbeat thread (None: no heartbeats after the first).

    Returns:
        A :class:`PopulationOutcome`.

    Raises:
        KeyboardInterrupt: Ctrl-C (or SIGTERM); every member not yet recorded is stored as FAIL first.
    """
    outcome = PopulationOutcome()
    reporters = [_EpochReporter(ledger, t.trial_id) for t in trials]
    lost: set[int] = set()  # indexes of members failed as stale by another worker
    open_members = set(range(len(trials)))  # not yet recorded by this worker
    ids = [t.trial_id for t in trials]
    beating = heartbeat.beating(*ids) if heartbeat is not None else contextlib.nullcontext()

    def drop(i: int) -> None:
        lost.add(i)
        open_members.discard(i)
        if heartbeat is not None:
            heartbeat.stop_beating(ids[i])

    try:
        with beating:
            task = get_task(spec.task)
            config = spec.task_config()
            device = resolve_device(spec.device)
            metric = spec.objective_metric
            optimizer = trials[0].params["optimizer"]
            points = []
            for t in trials:
                if t.params["optimizer"] != optimizer:
                    raise ValueError(f"a population holds one optimizer; trial #{t.number} is {t.params['optimizer']}")
                hp = {k: v for k, v in t.params.items() if k not in ("optimizer", "seed")}
                points.append(populations.Point(hp, int(t.params["seed"])))
                call_back(callbacks, "on_trial_start", t.number, t.params)

            def on_epoch(i: int, epoch: int, metrics: dict[str, float]) -> None:
                if i in lost:
                    return
                try:  # the test-only pause holds the population after this epoch: the epoch must be stored by then
                    reporters[i].add(epoch, metrics[metric], flush=pause_pending_for_test(epoch))
                except UpdateFinishedTrialError:
                    drop(i)  # failed as stale by another worker: the others go on
                    return
                call_back(callbacks, "on_epoch", trials[i].number, epoch, metrics)

            run = populations.train_points(task, config, optimizer, points, epochs=int(config["epochs"]),
                                           device=device, divergence_factor=spec.divergence_factor,
                                           population=population, on_epoch=on_epoch)
            hib = task.metric(metric).higher_is_better
            for i, (trial, result) in enumerate(zip(trials, run.results)):
                if i in lost:
                    continue
                value = result.objective(metric, hib)
                if math.isnan(value):  # as the single trial: a NaN objective fails the trial
                    if _fail(ledger, trial, f"ValueError: the objective {metric} of the run is NaN",
                             reporters[i].pending):
                        outcome.failed.append(trial)
                    else:
                        lost.add(i)
                    open_members.discard(i)
                    continue
                done = _retrying(ledger.finish, trial.trial_id, TrialState.COMPLETE, value, result.to_user_attrs(),
                                 reporters[i].pending)
                if not done and ledger.state_of(trial.trial_id) == TrialState.COMPLETE:
                    done = True  # an earlier attempt committed and only its reply was lost
                open_members.discard(i)
                if not done:
                    lost.add(i)
                    continue
                if heartbeat is not None:
                    heartbeat.stop_beating(trial.trial_id)
                outcome.results.append((trial, result))
                call_back(callbacks, "on_trial_end", trial.number, trial.params, value, result)
    except BaseException as err:  # every open member FAIL with the error; Ctrl-C and SIGTERM then propagate
        with _sigint_deferred():  # a second Ctrl-C must not leave members RUNNING
            error = scrub_secrets(f"{type(err).__name__}: {err}", spec.storage)  # a storage error may echo the URL
            for i in sorted(open_members):
                if _fail(ledger, trials[i], error, reporters[i].pending):
                    outcome.failed.append(trials[i])
                else:
                    lost.add(i)
        if not isinstance(err, Exception):
            raise
    outcome.dropped = [trials[i] for i in sorted(lost)]
    if outcome.dropped:
        numbers = ", ".join(f"#{t.number}" for t in outcome.dropped)
        warnings.warn(f"trial(s) {numbers} of a population were failed as stale by another worker while they ran "
                      f"(late heartbeats); their results are dropped and their points run again",
                      RuntimeWarning, stacklevel=2)
    return outcome

