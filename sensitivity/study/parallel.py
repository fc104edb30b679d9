"""Local worker processes: ``adamrag-sens sweep --workers N`` and ``--gpus 0,1 --trials-per-gpu K``.

The coordinating process queues the plan once (:func:`~sensitivity.study.sweep.prepare_sweep`),
then starts N worker processes, :mod:`sensitivity.study.worker_process` (which also prepares the
``adamrag-sens worker`` that joins a study from another machine; the storage URL goes to them
through their environment, never their command line, since it may carry a password), each with ``max(1, cpus // N)`` torch threads and, with ``--gpus``, one GPU made
visible to it through ``CUDA_VISIBLE_DEVICES``. It trains nothing itself: it reads the study's
progress from storage and shows it. Workers run in their own process groups, so Ctrl-C reaches the
coordinator only, which passes one SIGINT to each worker (each marks its running trial FAIL and
exits) and waits for them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from sensitivity.errors import UserError, value_error
from sensitivity.study.queue import PlanProgress
from sensitivity.study.spec import STORAGE_ENV

STOP_TIMEOUT_S = 60.0
MAX_PROCESSES = 1024
"""The most worker processes one sweep starts (--workers, or --trials-per-gpu per GPU)."""
"""How long stopped workers may take to record their running trial before they are killed (seconds)."""


@dataclasses.dataclass(frozen=True)
class LocalWorkers:
    """How many worker processes to start on this machine, and where each trains.

    Attributes:
        count: number of worker processes.
        threads: torch intra-op threads per worker (``max(1, cpus // count)``).
        devices: per worker, the ``--device`` it is given (None: the study's own).
        visible_gpus: per worker, its ``CUDA_VISIBLE_DEVICES`` (None: inherited).
    """

    count: int
    threads: int
    devices: tuple[str | None, ...]
    visible_gpus: tuple[str | None, ...]

    @property
    def separate_processes(self) -> bool:
        """True when the trials run in worker processes: more than one, or any placed on a GPU."""
        return self.count > 1 or any(v is not None for v in self.visible_gpus)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def parse_gpus(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1).

    Raises:
        UserError: not a comma-separated list of distinct non-negative integers.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        ids = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--gpus {text!r} is not a list of GPU numbers; give e.g. --gpus 0,1") from None
    if not ids or any(i < 0 for i in ids):
        raise UserError(f"--gpus {text!r} is not a list of GPU numbers; give e.g. --gpus 0,1")
    if len(set(ids)) != len(ids):
        raise UserError(f"--gpus {text!r} names a GPU twice; use --trials-per-gpu for several trials per GPU")
    return ids


def plan_local_workers(workers: int, gpus: str | None, trials_per_gpu: int, device: str) -> LocalWorkers:
    """Check the worker flags and decide each worker's device.

    Args:
        workers: ``--workers`` (worker processes without ``--gpus``).
        gpus: ``--gpus`` text, or None.
        trials_per_gpu: ``--trials-per-gpu`` (workers per GPU with ``--gpus``).
        device: the sweep's ``--device``.

    Raises:
        UserError: a count below 1, ``--gpus`` with ``--workers`` or with a CPU device, or a GPU
            that is not there.
    """
    for flag, count in (("--workers", workers), ("--trials-per-gpu", trials_per_gpu)):
        if count < 1:
            raise value_error(flag, count, "must be >= 1", "2")
        if count > MAX_PROCESSES:
            raise value_error(flag, count, f"starts more worker processes than a machine runs (at most {MAX_PROCESSES})", "2")
    cpus = available_cpus()
    if gpus is None:
        if trials_per_gpu != 1:
            raise UserError("--trials-per-gpu needs --gpus; without GPUs use --workers N")
        return LocalWorkers(workers, max(1, cpus // workers), (None,) * workers, (None,) * workers)
    if workers != 1:
        raise UserError("give either --workers N or --gpus with --trials-per-gpu K (which starts len(gpus) x K workers)")
    if device not in ("auto", "cuda"):
        raise UserError(f"--gpus puts workers on GPUs, but --device is {device!r}; drop --device or use --device cuda")
    ids = parse_gpus(gpus)
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"--gpus {gpus} asked for but no CUDA GPU is visible; drop --gpus (use --workers N on CPUs)")
    visible = torch.cuda.device_count()
    if max(ids) >= visible:
        raise UserError(f"--gpus {gpus}: GPU {max(ids)} does not exist ({visible} visible: 0..{visible - 1})")
    parent_mask = [p.strip() for p in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if p.strip()]
    mask = [parent_mask[i] if parent_mask else str(i) for i in ids]
    count = len(ids) * trials_per_gpu
    per_worker = [m for m in mask for _ in range(trials_per_gpu)]
    return LocalWorkers(count, max(1, cpus // count), ("cuda",) * count, tuple(per_worker))


def worker_command(study_name: str, threads: int, device: str | None) -> list[str]:
    """The command line of one local worker process (:mod:`sensitivity.study.worker_process`).

    It holds no storage: the worker reads the URL from its environment
    (:data:`~sensitivity.study.spec.STORAGE_ENV`, see :func:`worker_environment`), because a command
    line is readable by every user of the machine and the URL may carry a password.
    """
    cmd = [sys.executable, "-m", "sensitivity.study.worker_process", "--study", study_name, "--threads", str(threads)]
    if device is not None:
        cmd += ["--device", device]
    return cmd


@dataclasses.dataclass
class WorkersOutcome:
    """How the local workers ended: each one's exit code (0 done, 130 stopped by Ctrl-C)."""

    returncodes: list[int]

    @property
    def failed(self) -> list[tuple[int, int]]:
        """(worker index, exit code) of workers that ended with an error of their own."""
        return [(i, rc) for i, rc in enumerate(self.returncodes) if rc > 0 and rc != 130]

    @property
    def killed(self) -> list[tuple[int, int]]:
        """(worker index, signal number) of workers killed by a signal other than SIGINT (their
        running trial went stale and was run again by another worker)."""
        return [(i, -rc) for i, rc in enumerate(self.returncodes) if rc < 0 and rc != -signal.SIGINT]


PARENT_ENV = "ADAMRAG_SENS_PARENT_PID"
"""Set by a coordinating ``sweep --workers`` for its workers: see :func:`stop_when_parent_dies`."""


def worker_environment(storage: str, threads: int, visible_gpu: str | None) -> dict[str, str]:
    """The environment of one local worker process: this process's, plus the storage URL
    (:data:`~sensitivity.study.spec.STORAGE_ENV`, the default of ``worker --storage``), the thread
    counts, the coordinator's pid (:data:`PARENT_ENV`) and, with ``--gpus``, its
    ``CUDA_VISIBLE_DEVICES``. Only the owner of a process (and root) can read its environment."""
    env = dict(os.environ)
    env[STORAGE_ENV] = storage
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env[PARENT_ENV] = str(os.getpid())  # the worker stops if this process dies, even by SIGKILL
    if visible_gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible_gpu
    return env


def stop_when_parent_dies(poll_s: float = 1.0) -> None:
    """In a worker started by a coordinator: end as on SIGTERM (running trial stored as FAIL) once
    the coordinator is gone, even if it was killed with SIGKILL. Does nothing for a worker started
    by hand. Watches the parent process id from a daemon thread."""
    expected = os.environ.get(PARENT_ENV)
    if not expected or not expected.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_local_workers(storage: str, study_name: str, launch: LocalWorkers,
                      poll: Callable[[], PlanProgress], on_progress: Callable[[PlanProgress, int], None],
                      poll_s: float = 1.0) -> WorkersOutcome:
    """Start ``launch.count`` worker processes on the study and show progress until all have ended.

    Args:
        storage, study_name: the study (already prepared and queued).
        launch: see :func:`plan_local_workers`.
        poll: reads the plan's progress from storage.
        on_progress: called with (progress, workers still running) after each poll.
        poll_s: seconds between polls (stretched when a poll itself is slow).

    Raises:
        KeyboardInterrupt: Ctrl-C (or SIGTERM) here; the workers have been stopped cleanly first.
    """
    procs: list[subprocess.Popen] = []
    try:
        for i in range(launch.count):
            procs.append(subprocess.Popen(
                worker_command(study_name, launch.threads, launch.devices[i]),
                env=worker_environment(storage, launch.threads, launch.visible_gpus[i]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
            ))
        while True:
            alive = sum(p.poll() is None for p in procs)
            start = time.monotonic()
            try:
                progress = poll()
            except Exception:  # noqa: BLE001 - a failed read only skips one update of the display
                progress = None
            if progress is not None:
                on_progress(progress, alive)
            if alive == 0:
                break
            time.sleep(max(poll_s, 5 * (time.monotonic() - start)))
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan workers
        try:
            stop_workers(procs)
            fail_trials_of_ended_workers(storage, study_name, [p.pid for p in procs])
        finally:
            signal.signal(signal.SIGINT, previous)
    return WorkersOutcome([p.returncode for p in procs])


ENDED_WORKER_ERROR = "KeyboardInterrupt: the worker ended before recording this trial; settled by the coordinator"
"""The :data:`~sensitivity.records.ERROR` user attribute of trials failed by :func:`fail_trials_of_ended_workers`."""


def fail_trials_of_ended_workers(storage: str, study_name: str, pids: list[int]) -> int:
    """Mark FAIL every RUNNING trial whose worker (this host, one of ``pids``) has ended.

    A worker stopped by Ctrl-C records its own trial as FAIL; one that could not (killed after
    the stop timeout, or interrupted between taking a trial and starting it) would otherwise leave
    the trial RUNNING until its heartbeat goes stale. The coordinator knows its workers are gone,
    so it settles them at once; the next run queues those points again.

    Returns:
        How many trials were failed here.
    """
    import socket

    import optuna
    from optuna.trial import TrialState

    from sensitivity.records import ERROR, WORKER
    from sensitivity.storage import open_storage, storage_of, trial_id_of

    owners = {f"{socket.gethostname()}:{pid}" for pid in pids}
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
        failed = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(WORKER) in owners:
                storage_of(study).set_trial_user_attr(trial_id_of(t), ERROR, ENDED_WORKER_ERROR)
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                failed += 1
        return failed
    except Exception:  # noqa: BLE001 - storage unreachable: heartbeats going stale cover it
        return 0


def stop_workers(procs: list[subprocess.Popen], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Send one SIGINT to each live worker, wait up to ``timeout_s``, then SIGKILL what is left
    (a killed worker's trial goes stale and is run again later)."""
    live = [p for p in procs if p.poll() is None]
    for p in live:
        try:
            p.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for p in live:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
