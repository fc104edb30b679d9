"""The workload registry: what a trial trains (data, model, augmentation)."""

from sensitivity.errors import UserError
from sensitivity.tasks.base import Task, TaskData
from sensitivity.tasks.digits import DIGITS_MLP
from sensitivity.tasks.resnet import RESNET18

TASKS: dict[str, Task] = {task.name: task for task in (DIGITS_MLP, RESNET18)}
"""Every workload by registry name."""


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        UserError: no such task; the message lists the known ones.
    """
    try:
        return TASKS[name.strip().lower()]
    except KeyError:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)} (see `adamrag-sens tasks`)") from None


__all__ = ["TASKS", "Task", "TaskData", "get_task"]
