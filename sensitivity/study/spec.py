"""StudySpec: everything that defines a sweep, as plain data, validated once at the edge."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from sensitivity.errors import UserError, value_error
from sensitivity.records import LR_BOUNDS, NAME_RULE, WEIGHT_DECAY_BOUNDS, valid_name

DEFAULT_STORAGE = "sqlite:///studies/adamrag-sens.db"
"""Where studies go when ``--storage`` is not given: an SQLite file under ``studies/`` (relative to
the working directory)."""

STORAGE_ENV = "ADAMRAG_SENS_STORAGE"
"""Environment variable holding the storage URL (its password included, if any): when set, the
default of ``--storage`` for ``sweep``, ``worker`` and ``report`` instead of :data:`DEFAULT_STORAGE`,
and how ``sweep --workers`` hands the URL to its worker processes. A command line is readable by
every user of the machine (``ps``); a process's environment only by its owner and root."""

SAMPLERS = ("grid", "random", "qmc")
MAX_TRIALS = 1_000_000
"""The most trials one study may plan (points x seeds, every optimizer): beyond it the plan alone
takes gigabytes; split such a search into several studies."""
LARGEST = {"--lr-points": 10_000, "--n-trials": MAX_TRIALS, "--seeds": 10_000, "--epochs": 1_000_000,
           "--train-size": 2**31 - 1, "--val-size": 2**31 - 1, "--batch-size": 2**31 - 1,
           "--precise-bn": 2**31 - 1, "--population": 100_000}
"""The largest value each whole-number setting takes: a count above it is a typo, and some (a seed
count, a grid size) would otherwise fill the memory before anything runs, or overflow the database's
or torch's integers."""
SEED_RANGE = (0, 2**32 - 1)
"""--sampler-seed: the range NumPy's and Optuna's generators accept."""

LIST_EXAMPLES = {
    "--lr": "1e-4,1e-3,1e-2",
    "--beta1": "0.8,0.9,0.95",
    "--beta2": "0.99,0.999",
    "--gamma": "0.25,0.5,0.75",
    "--weight-decay": "0,1e-4,1e-2",
}
"""A fitting value of each flag that takes comma-separated numbers (the values a sweep sweeps), quoted
by every message that refuses one of its values: learning rates spread over decades, betas and
gamma in [0, 1), weight decays from none up."""


def canonical_task_name(name: str) -> str:
    """``name`` as a study stores it: a ``path/file.py:factory`` target with its file's absolute
    path, so that a worker started in another folder, or a resume naming the file by another
    relative path, finds the same file; any other name stripped of surrounding blanks."""
    key = name.strip()
    module_name, sep, attr = key.rpartition(":")
    if sep and module_name.endswith(".py"):
        return f"{Path(module_name).expanduser().resolve()}:{attr}"
    return key


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """A sensitivity sweep: which task, which optimizers, which points, where stored.

    Attributes:
        task: workload: a built-in name (``digits-mlp``, ``fmnist-cnn``, ``resnet18``, ``char-lm``,
            ``cartpole``), an entry point of the group ``adamrag_sens.tasks``, or a user's
            ``package.module:factory`` / ``path/file.py:factory`` (:func:`sensitivity.tasks.get_task`).
        optimizers: catalog names to compare (:mod:`sensitivity.catalog`).
        sampler: ``grid`` (the cartesian product of the given values), ``random``
            (log-uniform lr, log(1 - beta)-uniform betas, seeded) or ``qmc`` (scrambled Sobol).
        lr: explicit learning rates (grid values; for random/qmc, their min and max bound the
            range). None: each optimizer's own default grid/range.
        lr_points: points of each optimizer's default log-spaced lr grid.
        beta1, beta2, gamma, weight_decay: values to sweep (None: the optimizer's default, or
            for ``beta1`` the default grid 0.8, 0.9, 0.95).
        n_trials: random/qmc points per optimizer and seed.
        seeds: every point is repeated with seeds ``0 .. seeds-1``, identical across optimizers.
        epochs: training budget per trial.
        metric: objective, one of the task's metrics (``val_loss``, ``val_acc``, ``val_bpc``,
            ``return``, ...), optimised in the metric's declared direction. None: the task's first
            metric (see :attr:`objective_metric`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        storage: Optuna storage URL (``sqlite:///path.db``, ``postgresql://...``) or a journal
            file path ending in ``.log``/``.jsonl``.
        study_name: None: the task's name, plus ``-<dataset>`` when the dataset is not the default.
        dataset, data_dir, download, train_size, val_size, batch_size: task configuration.
        text_file: ``char-lm``'s text (None: its default corpus).
        schedule, warmup_epochs: learning-rate schedule of the tasks that have one (constant,
            cosine or step; linear warm-up epochs); the swept lr is the peak lr.
        divergence_factor: a run diverges when its mean epoch training loss exceeds this
            multiple of its initial validation loss (or a training loss or parameter is non-finite).
        precise_bn: before each evaluation, recompute BatchNorm statistics on this many training
            batches (0: off; None: the task's default). Part of the task configuration.
        sampler_seed: seed of the random/qmc point generator.
        population: how many queued points of one optimizer a worker trains together as one
            batched model (:mod:`sensitivity.population`; each still its own trial, with the same
            values as alone). None: the task's declared size where its model can be batched, else 1
            (see :func:`sensitivity.study.members.population_size_for`); 1: one by one. It changes no
            stored value, so a study may resume with another.
    """

    task: str = "digits-mlp"
    optimizers: tuple[str, ...] = ("adamrag", "adam", "nag", "lion")
    sampler: str = "grid"
    lr: tuple[float, ...] | None = None
    lr_points: int = 9
    beta1: tuple[float, ...] | None = None
    beta2: tuple[float, ...] | None = None
    gamma: tuple[float, ...] | None = None
    weight_decay: tuple[float, ...] | None = None
    n_trials: int = 20
    seeds: int = 1
    epochs: int | None = None
    metric: str | None = None
    device: str = "auto"
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    train_size: int | None = None
    val_size: int | None = None
    batch_size: int | None = None
    text_file: str | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    divergence_factor: float = 5.0
    precise_bn: int | None = None
    sampler_seed: int = 0
    population: int | None = None

    # ---- derived -----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        object.__setattr__(self, "task", canonical_task_name(self.task))

    def task_config(self) -> dict[str, Any]:
        """The task's configuration: its defaults overridden by this spec's task options."""
        from sensitivity.tasks import get_task

        task = get_task(self.task)
        overrides = {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "download": self.download if self.download else None,
            "train_size": self.train_size,
            "val_size": self.val_size,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "text_file": self.text_file,
            "schedule": self.schedule,
            "warmup_epochs": self.warmup_epochs,
            "precise_bn": self.precise_bn,
        }
        return task.config(**{k: v for k, v in overrides.items() if k in task.defaults or k in ("epochs", "precise_bn")})

    @property
    def objective_metric(self) -> str:
        """The metric the study optimises: :attr:`metric`, or the task's first declared metric."""
        if self.metric:
            return self.metric
        from sensitivity.tasks import get_task

        return get_task(self.task).metrics[0].name

    @property
    def resolved_study_name(self) -> str:
        """The study name: given, or derived from task and dataset."""
        if self.study_name:
            return self.study_name
        from sensitivity.tasks import get_task

        task = get_task(self.task)
        dataset = self.dataset or task.defaults.get("dataset")
        return task.name if dataset == task.defaults.get("dataset") else f"{task.name}-{dataset}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); inverse of :meth:`from_dict`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def stored_dict(self) -> dict[str, Any]:
        """What a study stores of its spec (study attribute :data:`~sensitivity.records.SPEC`):
        :meth:`to_dict` without ``storage``. A study never records where it is stored: the URL
        may carry a password, and everyone who can read the database (an optuna-dashboard
        included) reads its attributes. A worker joining the study knows the storage already."""
        return {k: v for k, v in self.to_dict().items() if k != "storage"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudySpec":
        """Rebuild a spec stored with :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**clean)

    # ---- validation --------------------------------------------------------------------------
    def _varies_besides_lr(self) -> bool:
        """Whether a random/qmc point varies anything but lr for some optimizer of the study: beta1 is
        drawn from its default range unless given as one value, the others when given as several."""
        varied = {"beta1": self.beta1 is None or len(set(self.beta1)) > 1,
                  **{name: getattr(self, name) is not None and len(set(getattr(self, name))) > 1
                     for name in ("beta2", "gamma", "weight_decay")}}
        from sensitivity.catalog import OPTIMIZERS

        return any(on and any(name in OPTIMIZERS[o].hyperparameters for o in self.optimizers if o in OPTIMIZERS)
                   for name, on in varied.items())

    def validate(self) -> "StudySpec":
        """Check every field; return self.

        Raises:
            UserError: the first problem found, as one line naming the flag and the fix.
        """
        from sensitivity.catalog import OPTIMIZERS
        from sensitivity.tasks import get_task

        task = get_task(self.task)
        if not self.optimizers:
            raise UserError("--optimizers is empty; give at least one of: " + ", ".join(OPTIMIZERS))
        for name in self.optimizers:
            if name not in OPTIMIZERS:
                raise UserError(f"unknown optimizer {name!r} in --optimizers; choose from: {', '.join(OPTIMIZERS)}")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise UserError("--optimizers names an optimizer twice; list each once")
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; use --sampler grid, random or qmc")
        names = [m.name for m in task.metrics]
        if self.metric is not None and self.metric not in names:
            raise UserError(f"task {task.name} has no metric {self.metric!r}; use --metric with one of: {', '.join(names)}")
        for flag, key, value in (("--text-file", "text_file", self.text_file), ("--schedule", "schedule", self.schedule),
                                 ("--warmup-epochs", "warmup_epochs", self.warmup_epochs)):
            if value is not None and key not in task.defaults:
                takers = _tasks_with(key)
                raise UserError(f"task {task.name} has no {key.replace('_', ' ')}; {flag} applies to {takers}")
        if self.dataset is not None and self.dataset not in task.datasets:
            raise UserError(
                f"task {task.name} has no dataset {self.dataset!r}; choose from: {', '.join(task.datasets)}"
            )
        _check_values("--lr", self.lr, lambda v: v > 0, "must be > 0")
        _check_values("--lr", self.lr, lambda v: LR_BOUNDS[0] <= v <= LR_BOUNDS[1],
                      f"is outside the learning rates a study can hold, {LR_BOUNDS[0]:g} .. {LR_BOUNDS[1]:g}")
        _check_values("--beta1", self.beta1, lambda v: 0 <= v < 1, "must lie in [0, 1)")
        _check_values("--beta2", self.beta2, lambda v: 0 <= v < 1, "must lie in [0, 1)")
        _check_values("--gamma", self.gamma, lambda v: 0 <= v < 1, "must lie in [0, 1)")
        _check_values("--weight-decay", self.weight_decay, lambda v: v >= 0, "must be >= 0")
        _check_values("--weight-decay", self.weight_decay, lambda v: v <= WEIGHT_DECAY_BOUNDS[1],
                      f"is above the largest weight decay a study can hold, {WEIGHT_DECAY_BOUNDS[1]:g}")
        for flag, name in (("--beta1", "beta1"), ("--beta2", "beta2"), ("--gamma", "gamma"),
                           ("--weight-decay", "weight_decay")):
            takers = [o for o in OPTIMIZERS if name in OPTIMIZERS[o].hyperparameters]
            if getattr(self, name) is not None and not any(o in takers for o in self.optimizers):
                raise UserError(f"{flag} is given but none of --optimizers {','.join(self.optimizers)} takes "
                                f"{name} (only {', '.join(takers)}); drop {flag} or add one of those optimizers")
        if self.lr_points < 2:
            raise value_error("--lr-points", self.lr_points, "is too few: it must be >= 2 (7 or more for a sensitivity "
                              "curve)", "9")
        if self.n_trials < 1:
            raise value_error("--n-trials", self.n_trials, "must be >= 1 (the random/qmc samplers' points per optimizer "
                              "and seed; the grid sampler runs every grid point)", "20")
        if self.seeds < 1:
            raise value_error("--seeds", self.seeds, "must be >= 1 (seeds 0..N-1)", "3")
        if self.epochs is not None and self.epochs < 1:
            raise value_error("--epochs", self.epochs, "must be >= 1", "10")
        for flag, value, example in (("--train-size", self.train_size, "1000"), ("--val-size", self.val_size, "500"),
                                     ("--batch-size", self.batch_size, "64")):
            if value is not None and value < 1:
                raise value_error(flag, value, "must be >= 1", example)
        if "schedule" in task.defaults:
            from sensitivity.schedule import check_schedule

            check_schedule(self.task_config())
        if self.precise_bn is not None and self.precise_bn < 0:
            raise value_error("--precise-bn", self.precise_bn, "must be >= 0 (batches; 0 turns it off)", "8")
        if self.population is not None and (isinstance(self.population, bool) or not isinstance(self.population, int)
                                            or self.population < 1):
            raise value_error("--population", self.population, "must be a whole number >= 1 (1: one by one), or auto",
                              "27")
        for flag, value in (("--lr-points", self.lr_points), ("--n-trials", self.n_trials), ("--seeds", self.seeds),
                            ("--epochs", self.epochs), ("--train-size", self.train_size), ("--val-size", self.val_size),
                            ("--batch-size", self.batch_size), ("--precise-bn", self.precise_bn),
                            ("--population", self.population)):
            if isinstance(value, int) and value > LARGEST[flag]:
                raise value_error(flag, value, f"is larger than a study takes (at most {LARGEST[flag]:,})",
                                  COUNT_EXAMPLES[flag])
        if not SEED_RANGE[0] <= self.sampler_seed <= SEED_RANGE[1]:
            raise value_error("--sampler-seed", self.sampler_seed,
                              f"must lie in {SEED_RANGE[0]} .. {SEED_RANGE[1]:,} (the random generator's seeds)", "0")
        if self.sampler != "grid" and self.lr is not None and len(set(self.lr)) == 1 and not self._varies_besides_lr():
            raise UserError(f"--sampler {self.sampler} with one learning rate (--lr {self.lr[0]:g}) and nothing else "
                            "varied draws the same point every time; give an lr range, e.g. --lr 1e-4,1e-1, "
                            "or use --sampler grid")
        if not (self.divergence_factor > 1 and math.isfinite(self.divergence_factor)):
            raise value_error("--divergence-factor", f"{self.divergence_factor:g}", "must be a finite number > 1 (a multiple "
                              "of the initial loss)", "5")
        if self.study_name is not None and not valid_name(self.study_name):
            raise UserError(f"study name {self.study_name!r} is not allowed; {NAME_RULE}")
        if self.study_name is None and not valid_name(self.resolved_study_name):
            raise UserError(f"the default study name {self.resolved_study_name!r} (task {task.name!r}, dataset "
                            f"{self.dataset or task.defaults.get('dataset')!r}) is not allowed as a name; "
                            f"give --study NAME ({NAME_RULE})")
        return self


def _tasks_with(key: str) -> str:
    from sensitivity.tasks import TASKS

    return ", ".join(name for name, task in TASKS.items() if key in task.defaults) or "no built-in task"


COUNT_EXAMPLES = {"--lr-points": "9", "--n-trials": "20", "--seeds": "3", "--epochs": "10", "--train-size": "1000",
                  "--val-size": "500", "--batch-size": "64", "--precise-bn": "8", "--population": "27"}
"""A fitting value of each flag that takes one whole number, quoted by the messages that refuse one."""

OTHER_EXAMPLES = {"--sampler-seed": "0", "--workers": "2", "--trials-per-gpu": "2", "--warmup-epochs": "1",
                  "--divergence-factor": "5"}
"""A fitting value of the sweep's other numeric flags, for the messages that refuse one (a study
definition's and the command line's alike)."""


def _check_values(flag: str, values: tuple[float, ...] | None, ok, rule: str) -> None:
    """Refuse the first of ``flag``'s values that is not a finite number or breaks ``rule`` (``ok``
    false), quoting the flag's :data:`LIST_EXAMPLES` entry."""
    if values is None:
        return
    example = LIST_EXAMPLES[flag]
    if len(values) == 0:
        raise UserError(f"{flag} is empty; give at least one value, e.g. {flag} {example}")
    for v in values:
        if math.isnan(v):
            raise value_error(flag, "value nan", "is not a number", example)
        if math.isinf(v):
            raise value_error(flag, f"value {v:g}", "is not finite", example)
        if not ok(v):
            raise value_error(flag, f"value {v:g}", rule, example)


def parse_population(text: str | None) -> int | None:
    """``--population``'s text: ``"auto"`` (or None) -> None, ``"27"`` -> 27.

    Raises:
        UserError: neither auto nor a whole number >= 1; the message names the flag.
    """
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"--population {text!r} is not a size; give a whole number >= 1 (1: one by one) or auto") from None
    if value < 1:
        raise value_error("--population", value, "must be >= 1 (1: one by one), or auto", "27")
    return value


def parse_floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    """Parse ``"1e-4,1e-3"`` into floats; ``None`` or ``""`` stays None.

    Raises:
        UserError: a value is not a number; the message names the flag and the value.
    """
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    example = LIST_EXAMPLES[flag]
    if not any(parts):
        raise UserError(f"{flag} is empty; give comma-separated numbers, e.g. {flag} {example}")
    values = []
    for p in parts:
        try:
            values.append(float(p))
        except ValueError:
            raise value_error(flag, f"value {p!r}", "is not a number", example) from None
    return tuple(values)
