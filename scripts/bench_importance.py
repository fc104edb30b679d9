"""Time the variance decomposition on a synthetic 10,000-trial grid study (nothing imports this).

4 optimizers x 10 lr x 5 beta1 x 5 beta2 x 10 seeds; prints the versions, the median of three runs of
:func:`sensitivity.report.importance.importance_table` with its seed bootstrap (10 seeds: 1,000 Monte
Carlo draws) and one run without it. Run: ``PYTHONPATH=. python scripts/bench_importance.py``.
"""

import itertools
import time

import numpy as np
import pandas as pd

from sensitivity.report import importance as I

rng = np.random.default_rng(0)
rows = []
for opt in ("adamrag", "adam", "nag", "lion"):
    for lr, b1, b2, s in itertools.product(np.geomspace(1e-5, 1e-1, 10), [0.5, 0.8, 0.9, 0.95, 0.99],
                                           [0.9, 0.99, 0.995, 0.999, 0.9999], range(10)):
        x = np.log10(lr) + 3
        rows.append((opt, lr, b1, b2, s, x * x + 0.3 * np.log10(1 - b1) * x + 0.1 * rng.normal()))
frame = pd.DataFrame(rows, columns=["optimizer", "lr", "beta1", "beta2", "seed", "final_val_loss"])
frame = frame.assign(gamma=np.nan, weight_decay=np.nan, state="COMPLETE", diverged=False, initial_val_loss=50.0)
frame["seed"] = frame["seed"].astype("Int64")
print(f"{len(frame)} trials; numpy {np.__version__}, pandas {pd.__version__}")
times = []
for _ in range(3):
    start = time.perf_counter()
    I.importance_table(frame, "val_loss")
    times.append(time.perf_counter() - start)
start = time.perf_counter()
I.importance_table(frame, "val_loss", uncertainty=False)
plain = time.perf_counter() - start
print(f"importance_table, both regions, seed bootstrap: median {np.median(times):.2f} s "
      f"({', '.join(f'{t:.2f}' for t in times)}); without the bootstrap {plain:.2f} s; "
      f"ratio {np.median(times) / plain:.1f}")
