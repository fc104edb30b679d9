"""The bare training loop a sweep is compared with: ``train_trial`` called for each point in one
fresh process, nothing stored.

Run as ``python -m sensitivity.bench.bare_loop JOB.json OUT.json``. The job holds ``task``,
``config``, ``device``, ``divergence_factor`` and ``points`` (dicts with ``optimizer``, ``seed`` and
the hyperparameters); the output holds per trial ``seconds`` (inside ``train_trial``), ``steps`` and
``throughput`` (training examples per second), and ``in_process_s`` (imports included).
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # before the imports below: the process's own work is all counted

import json  # noqa: E402
import sys  # noqa: E402

from sensitivity.tasks import get_task  # noqa: E402
from sensitivity.train import resolve_device, train_trial  # noqa: E402


def command(job_path: str, out_path: str) -> list[str]:
    """The command line that runs this loop on a job file, writing ``out_path``."""
    return [sys.executable, "-m", "sensitivity.bench.bare_loop", job_path, out_path]


def main(job_path: str, out_path: str) -> None:
    """Train every point of the job in order and write the timings (see the module docstring)."""
    with open(job_path) as fh:
        job = json.load(fh)
    task, config, device = get_task(job["task"]), job["config"], resolve_device(job["device"])
    trials = []
    for point in job["points"]:
        hp = {k: v for k, v in point.items() if k not in ("optimizer", "seed")}
        start = time.perf_counter()
        result = train_trial(task, config, point["optimizer"], hp, seed=int(point["seed"]),
                             epochs=int(config["epochs"]), device=device, divergence_factor=job["divergence_factor"])
        trials.append({"seconds": time.perf_counter() - start, "steps": result.steps, "throughput": result.throughput})
    with open(out_path, "w") as fh:
        json.dump({"trials": trials, "in_process_s": time.perf_counter() - _START}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
