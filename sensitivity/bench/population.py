"""Population training against the bare one-by-one ``train_trial`` loop, on the same points, in one run.

:func:`bench_population` trains the points of a study (by default the default study's: ``adamrag-sens
sweep``'s 108 digits-mlp points, four optimizers x 27) once as populations of one optimizer each
(:func:`sensitivity.population.train_points`) and once one after another with
:func:`sensitivity.train.train_trial`, alternating the two, ``repeats`` times, in one process; it
prints the versions, each repeat's wall times, the median ratio, and whether every point's results
were equal (every epoch's training loss and metrics, the divergence step and reason). The first
use of ``torch.func`` in a process imports ``torch._dynamo`` (seconds); that one-time cost is
timed on its own and reported beside the ratio, which excludes it.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch

COMPARED = ("train_loss", "metrics", "initial", "diverged", "diverged_reason", "diverged_step", "epochs_run", "steps")


@dataclasses.dataclass
class PopulationBench:
    """What :func:`bench_population` measured.

    Attributes:
        task: task name. points: how many points each side trained. population_size: K.
        population_s / single_s: wall seconds of each repeat (population path, one-by-one loop).
        ratio: median population / median one-by-one (below 1: populations are faster).
        first_use_s: seconds of the first ``torch.func`` use in this process (0 when it had happened before).
        identical: every point's results equal on both paths, in every repeat.
        ran / reason: which path :func:`~sensitivity.population.train_points` took, and why.
    """

    task: str
    points: int
    population_size: int
    population_s: list[float]
    single_s: list[float]
    ratio: float
    first_use_s: float
    identical: bool
    ran: str
    reason: str


def default_study_points(task: str = "digits-mlp", **spec_overrides: Any) -> tuple[Any, dict[str, Any], list[dict], float]:
    """(task object, task config, planned points, divergence factor) of ``StudySpec(task=task, ...)``:
    the points ``adamrag-sens sweep`` would queue, in its order."""
    from sensitivity.study.space import plan_points
    from sensitivity.study.spec import StudySpec
    from sensitivity.tasks import get_task

    spec = StudySpec(task=task, **spec_overrides)
    return get_task(spec.task), spec.task_config(), plan_points(spec), spec.divergence_factor


def bench_population(task: str = "digits-mlp", *, repeats: int = 3, population: int | None = 27,
                     device: str = "cpu", spec_overrides: dict[str, Any] | None = None,
                     out: Callable[[str], None] = print) -> PopulationBench:
    """Time the study's points as populations of one optimizer vs ``train_trial`` one by one.

    Args:
        task: a task name (the default study's task by default).
        repeats: timed repeats of each path (alternating; median reported).
        population: K per population (None: the task's default, :func:`~sensitivity.population.default_population_size`).
        device: where to train.
        spec_overrides: ``StudySpec`` fields (``epochs``, ``train_size``, ``optimizers``, ...).
        out: where lines go.

    Returns:
        A :class:`PopulationBench`; the lines printed say the same.
    """
    from sensitivity.population import Point, train_points
    from sensitivity.train import train_trial

    task_obj, config, plan, factor = default_study_points(task, **(spec_overrides or {}))
    epochs = int(config["epochs"])
    by_optimizer: dict[str, list[Point]] = {}
    for p in plan:
        hp = {k: v for k, v in p.items() if k not in ("optimizer", "seed")}
        by_optimizer.setdefault(p["optimizer"], []).append(Point(hp, int(p["seed"])))
    out(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
        f"torch threads {torch.get_num_threads()} (task's {task_obj.cpu_threads}), device {device}")
    out(f"task {task_obj.name}: {len(plan)} points, {epochs} epochs, optimizers "
        f"{', '.join(f'{k} x{len(v)}' for k, v in by_optimizer.items())}")

    t0 = time.perf_counter()
    already = "torch._dynamo" in sys.modules
    from torch.func import grad_and_value, vmap  # noqa: F401 - the first transform imports torch._dynamo
    vmap(grad_and_value(lambda w: (w * w).sum()))(torch.ones(2, 2))
    first_use = 0.0 if already else time.perf_counter() - t0

    def run_population() -> tuple[dict[tuple[str, int], Any], Any]:
        results, run = {}, None
        for name, points in by_optimizer.items():
            run = train_points(task_obj, config, name, points, epochs=epochs, device=device,
                               divergence_factor=factor, population=population)
            results.update({(name, i): r for i, r in enumerate(run.results)})
        return results, run

    def run_single() -> dict[tuple[str, int], Any]:
        return {(name, i): train_trial(task_obj, config, name, pt.hyperparameters, seed=pt.seed, epochs=epochs,
                                       device=device, divergence_factor=factor)
                for name, points in by_optimizer.items() for i, pt in enumerate(points)}

    for name, points in by_optimizer.items():  # warm-up outside the timings: data loaded, support probed
        train_points(task_obj, config, name, points[:2], epochs=1, device=device, divergence_factor=factor,
                     population=population)
    pop_s, single_s, identical, run = [], [], True, None
    for rep in range(repeats):
        t = time.perf_counter()
        pop, run = run_population()
        pop_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        single = run_single()
        single_s.append(time.perf_counter() - t)
        same = all(getattr(pop[key], f) == getattr(single[key], f) for key in single for f in COMPARED)
        identical = identical and same
        out(f"repeat {rep + 1}: populations {pop_s[-1]:.2f} s, one by one {single_s[-1]:.2f} s, "
            f"ratio {pop_s[-1] / single_s[-1]:.3f}, results identical: {same}")
    ratio = statistics.median(pop_s) / statistics.median(single_s)
    k = run.population_size if run else 1
    out(f"{task_obj.name}: path {run.ran if run else '-'} (K={k}: {run.reason if run else ''}); median populations "
        f"{statistics.median(pop_s):.2f} s, one by one {statistics.median(single_s):.2f} s, ratio {ratio:.3f} "
        f"({1 / ratio:.2f}x faster); first torch.func use in this process {first_use:.1f} s (not in the ratio); "
        f"identical results: {identical}")
    return PopulationBench(task_obj.name, len(plan), k, pop_s, single_s, ratio, first_use, identical,
                           run.ran if run else "single", run.reason if run else "")


if __name__ == "__main__":  # python -m sensitivity.bench.population [task] [repeats] [epochs]
    bench_population(sys.argv[1] if len(sys.argv) > 1 else "digits-mlp",
                     repeats=int(sys.argv[2]) if len(sys.argv) > 2 else 3,
                     spec_overrides={"epochs": int(sys.argv[3])} if len(sys.argv) > 3 else None)
