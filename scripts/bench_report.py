"""Time the full report of a 10,000-trial study (nothing imports this).

The study: the default digits-mlp grid with 3 seeds (324 stored trials, from ``--storage``/``--study``),
repeated 31 times (10,044 trials), each copy's final values perturbed by 1 % multiplicative noise:
``--along lr`` puts the copies between the stored lrs (279 lr points per optimizer, 3 seeds: the
exact seed bootstrap of 10 draws); ``--along seed`` makes them further seeds (93 seeds: the seed
bootstrap's 1,000 Monte Carlo draws, its most expensive case). Times :func:`sensitivity.report.build.write_report` (the analysis, every figure,
CSV, Markdown and HTML file) three times and prints the median, the versions and the machine's load.
Loading from the storage is timed once on the 324-trial study and is not part of the figure.

Run: ``PYTHONPATH=. python scripts/bench_report.py --storage sqlite:///studies/adamrag-sens.db --study digits-mlp-seeds``
(make the study first: ``adamrag-sens sweep --seeds 3 --study digits-mlp-seeds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import optuna
import pandas as pd

from sensitivity.report.build import write_report
from sensitivity.report.frame import load_trials


def tiled(data, copies: int, rng: np.random.Generator, along: str = "seed"):
    """``copies`` copies of ``data``: as further seeds (``along="seed"``), or as further lr points
    between the stored ones (``along="lr"``: copy k at lr x 10^(k / (2 copies)), half a decade
    filled evenly, the seeds unchanged)."""
    trials, curves = data.trials, data.curves
    seeds = int(trials["seed"].max()) + 1 if along == "seed" else 0
    t_parts, c_parts = [], []
    for k in range(copies):
        t = trials.copy()
        c = curves.copy()
        t["trial"] += k * len(trials)
        c["trial"] += k * len(trials)
        t["seed"] = t["seed"] + k * seeds
        c["seed"] = c["seed"] + k * seeds
        if along == "lr":
            t["lr"] = t["lr"] * 10 ** (k / (2 * copies))
            c["lr"] = c["lr"] * 10 ** (k / (2 * copies))
        if k:
            noise = pd.Series(1 + 0.01 * rng.standard_normal(len(t)), index=t.index)
            for col in [c for c in t.columns if c.startswith("final_")] + ["value"]:
                t[col] = t[col] * noise
        t_parts.append(t)
        c_parts.append(c)
    return dataclasses.replace(data, trials=pd.concat(t_parts, ignore_index=True),
                               curves=pd.concat(c_parts, ignore_index=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", default="digits-mlp-seeds")
    parser.add_argument("--copies", type=int, default=31)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--along", choices=("seed", "lr"), default="seed",
                        help="copies as further seeds (93 seeds: 1,000 bootstrap draws) or as a denser lr grid (3 seeds)")
    args = parser.parse_args()
    start = time.perf_counter()
    data = load_trials(args.storage, args.study)
    load_s = time.perf_counter() - start
    big = tiled(data, args.copies, np.random.default_rng(0), args.along)
    print(f"python {platform.python_version()} | optuna {optuna.__version__} | pandas {pd.__version__} | "
          f"numpy {np.__version__} | {os.cpu_count()} CPUs | load average {os.getloadavg()[0]:.1f} at start")
    print(f"study {args.study}: {len(data.trials)} stored trials loaded in {load_s:.1f} s; "
          f"tiled along {args.along} to {len(big.trials)} trials, {big.trials['seed'].nunique()} seeds, "
          f"{big.trials.groupby('optimizer')['lr'].nunique().max()} lr points per optimizer")
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_report(big, out, metric=big.meta["metric"])
            times.append(time.perf_counter() - start)
    print(f"write_report of {len(big.trials)} trials: median {statistics.median(times):.1f} s "
          f"({', '.join(f'{t:.1f}' for t in times)}); load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
