"""Small Optuna studies of known shape, written directly with Optuna as the sweep stores them (no
training): four optimizers on a synthetic loss bowl, for the report, compare and browser tests.

:func:`make_study` writes one trial at a time through Optuna (about 25 ms a trial on SQLite);
:func:`stored_toy_study` hands a test a private copy of a SQLite file that this process wrote once.
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
from pathlib import Path

import optuna

from sensitivity.records import TrialResult

L0 = 2.3
EPOCHS = 3


NAMES = ["adam", "adamrag", "adamw", "lion", "nag", "sgd"]


def _distributions():
    from sensitivity.records import param_distributions

    return param_distributions(NAMES)


def synthetic_loss(optimizer: str, lr: float, beta1: float) -> float:
    """A bowl in log10(lr) with its centre per optimizer; NaN (diverged) past centre + 1.4."""
    centre = {"adam": -2.3, "adamrag": -2.3, "nag": -0.5, "lion": -3.3}[optimizer]
    x = math.log10(lr) - centre
    if x > 1.4:
        return math.nan
    b = 0.0 if math.isnan(beta1) else (beta1 - 0.9) ** 2
    return 0.2 + 0.35 * x * x + b


def make_result(final: float, *, seed: int = 0) -> TrialResult:
    """A TrialResult ending at ``final`` (NaN: diverged in epoch 2)."""
    init = L0 + 0.01 * seed
    if math.isnan(final):
        return TrialResult(train_loss=[1.9, math.inf], metrics={"val_loss": [1.8, math.nan], "val_acc": [0.4, math.nan]},
                           initial={"val_loss": init, "val_acc": 0.1}, diverged=True,
                           diverged_reason="non-finite loss at step 12", diverged_step=12, epochs_run=2,
                           steps=12, wall_time_s=0.5, throughput=1000.0, device="cpu")
    vals = [init + (final - init) * (e + 1) / EPOCHS for e in range(EPOCHS)]
    return TrialResult(train_loss=[v * 0.9 for v in vals],
                       metrics={"val_loss": vals, "val_acc": [min(0.99, 1 - v / 2.5) for v in vals]},
                       initial={"val_loss": init, "val_acc": 0.1}, epochs_run=EPOCHS, steps=3 * EPOCHS, wall_time_s=1.0 + seed,
                       throughput=1200.0, device="cpu")


def add(study, optimizer, lr, *, beta1=0.9, beta2=None, gamma=None, seed=0, state="COMPLETE", final=None):
    """Add one trial as the sweep stores it (params, intermediate values, user attrs, value)."""
    dists = _distributions()
    params = {"optimizer": optimizer, "lr": lr, "seed": seed}
    if beta1 is not None:
        params["beta1"] = beta1
    if beta2 is not None:
        params["beta2"] = beta2
    if gamma is not None:
        params["gamma"] = gamma
    final = synthetic_loss(optimizer, lr, math.nan if beta1 is None else beta1) if final is None else final
    result = make_result(final, seed=seed)
    kwargs = dict(params=params, distributions={k: dists[k] for k in params})
    if state == "COMPLETE":
        kwargs.update(
            value=result.objective("val_loss"),
            user_attrs=result.to_user_attrs(),
            intermediate_values={e + 1: v for e, v in enumerate(result.metrics["val_loss"]) if math.isfinite(v)},
        )
    else:
        kwargs.update(state=optuna.trial.TrialState[state],
                      intermediate_values={1: 1.9} if state == "RUNNING" else None)
    study.add_trial(optuna.trial.create_trial(**{k: v for k, v in kwargs.items() if v is not None}))


def make_study(storage, name="toy", *, seeds=(0,), with_other_states=True):
    """A small grid study: four optimizers, 5 lrs each, beta1 in {0.8, 0.9} (NAG, Adam, AdamRAG), Lion one beta1."""
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    study.set_user_attr("task", "toy-task")
    study.set_user_attr("metric", "val_loss")
    study.set_user_attr("epochs", EPOCHS)
    study.set_user_attr("sampler", "grid")
    study.set_user_attr("divergence_factor", 3.0)
    for seed in seeds:
        for lr in (1e-4, 1e-3, 1e-2, 1e-1):
            for b1 in (0.8, 0.9):
                add(study, "adam", lr, beta1=b1, beta2=0.999, seed=seed)
                add(study, "adamrag", lr, beta1=b1, beta2=0.999, gamma=0.5, seed=seed)
        for lr in (1e-2, 1e-1, 1.0, 10.0):
            for b1 in (0.8, 0.9):
                add(study, "nag", lr, beta1=b1, seed=seed)
        for lr in (1e-5, 1e-4, 1e-3, 1e-2):
            add(study, "lion", lr, beta1=0.9, beta2=0.99, seed=seed)
    if with_other_states:
        add(study, "adam", 3e-3, state="FAIL")
        add(study, "adam", 3e-4, state="RUNNING")
    return study


@functools.cache
def _template_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="toy-studies-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def _template(name: str, seeds: tuple[int, ...], with_other_states: bool) -> Path:
    """The SQLite file of :func:`make_study` (``name``, ``seeds``, ``with_other_states``), written once per process."""
    path = _template_folder() / f"{name}-{'-'.join(map(str, seeds))}-{int(with_other_states)}.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    make_study(storage, name, seeds=seeds, with_other_states=with_other_states)
    storage.engine.dispose()  # every connection closed: the file is whole and can be copied
    return path


def stored_toy_study(folder: Path, name: str = "toy", *, seeds=(0,), with_other_states: bool = True,
                     file_name: str = "studies.db") -> str:
    """The URL of a fresh SQLite file ``folder/file_name`` holding :func:`make_study`'s study: a byte
    copy of a file written once per test process, so a test may change its copy freely."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    shutil.copyfile(_template(name, tuple(seeds), with_other_states), path)
    return f"sqlite:///{path}"
