"""The time per trial of each built-in task on this machine (``adamrag-sens tasks --measure``): one
trial at the task's default budget, Adam at lr 1e-3, its data loaded beforehand as a sweep loads
them once per process."""

from __future__ import annotations

import dataclasses

from sensitivity.bench.timing import time_in_process
from sensitivity.errors import UserError
from sensitivity.study.spec import StudySpec
from sensitivity.tasks import TASKS
from sensitivity.train import load_task_data, resolve_device, train_trial


@dataclasses.dataclass(frozen=True)
class TaskTime:
    """One built-in task's trial: ``wall_s`` (seconds) and ``cpu_s`` (CPU seconds of this process);
    both None and ``skipped`` the reason when its data are not on this machine."""

    wall_s: float | None = None
    cpu_s: float | None = None
    skipped: str = ""


def measure_tasks(device: str = "cpu") -> dict[str, TaskTime]:
    """Time one trial of each built-in task at its defaults on ``device``.

    Returns:
        task name -> :class:`TaskTime`, in the order of :data:`sensitivity.tasks.TASKS`.

    Raises:
        UserError: an unknown or absent device.
    """
    dev = resolve_device(device)
    divergence_factor = StudySpec().divergence_factor  # the sweep's default
    out = {}
    for name, task in TASKS.items():
        config = task.config()
        try:
            load_task_data(task, config, dev)
        except UserError as err:  # e.g. CIFAR-10 not on this machine
            out[name] = TaskTime(skipped=str(err))
            continue
        wall, cpu = time_in_process(lambda: train_trial(
            task, config, "adam", {"lr": 1e-3}, seed=0, epochs=int(config["epochs"]), device=dev,
            divergence_factor=divergence_factor))
        out[name] = TaskTime(wall_s=wall, cpu_s=cpu)
    return out
