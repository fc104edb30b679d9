"""Re-run the findings studies and write what docs/findings/README.md quotes (nothing imports this).

The question (Zhang et al. 2025, NPL 57:53, abstract): is AdamRAG more tolerant of its learning rate
than NAG, Adam and Lion on image classification, language modelling and reinforcement learning?
Each workload has a main study (``studies/findings-*.toml``: the four optimizers on their own lr
grids, AdamRAG at its default gamma) and a companion (``*-gamma09.toml``: AdamRAG alone at
gamma = 0.9). For each selected workload this script

1. sweeps both definitions into one storage with ``adamrag-sens sweep --config`` (a resume: points
   already stored are not trained again);
2. writes the report of the main study into ``OUT/<workload>/`` (summary, differences, expected best,
   trials and curves CSVs, the figures, report.md), and the companion's into
   ``OUT/<workload>/gamma-0.9/``: AdamRAG's gamma-0.9 trials against the main study's baseline
   trials (the same points, seeds and budget; deterministic on the CPU), so that each report's
   AdamRAG curve is one gamma, as the baselines' curves are;
3. keeps the report's ``importance.csv``, ``importance.png`` (functional ANOVA per optimizer,
   :func:`sensitivity.report.importance.importance_table`) and ``ablation.csv``, and adds
   ``expected_best_intervals.csv`` (the
   expected best after n = 1, 2, 5, 10, 20, 50 trials, Dodge et al.'s and Tang et al.'s unbiased
   estimator, with bootstrap intervals) and ``convergence.csv`` (has the best point of each
   optimizer stopped improving? see :func:`convergence_table`) to each;
4. writes a line per invocation to each workload's ``runs.jsonl`` (earlier lines kept): the
   commands, versions (python, torch, optuna, numpy, pandas), wall time of each step, trial counts
   (the first run's sweeps hold the training time; a resume's sweeps train nothing). The line is
   rewritten as each sweep starts and ends (:class:`RunLog`), so a run stopped mid-sweep still
   records the sweeps that ended and the one under way;
5. compares the main studies of every workload reported (``OUT/compare/``: compare.csv,
   profiles.csv, the performance profiles and lr-curve figures).

Run from the repository root: ``python scripts/findings.py`` (``make findings``); ``--only
digits-mlp`` picks workloads, ``--gpu`` adds the GPU studies, ``--no-sweep`` reports on what is
stored. Bad input: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sensitivity.report import metrics as M  # noqa: E402
from sensitivity.report.build import write_report  # noqa: E402
from sensitivity.report.compare import StudyRef, build_compare  # noqa: E402
from sensitivity.report.expected_best import expected_best_intervals  # noqa: E402
from sensitivity.report.frame import TrialsData, load_trials  # noqa: E402
from sensitivity.storage import mask_storage  # noqa: E402

DEFAULT_STORAGE = "sqlite:///studies/findings.db"
DEFAULT_OUT = ROOT / "docs" / "findings"
COMPANION_DIR = "gamma-0.9"
KEPT_SUFFIXES = (".csv", ".png", ".md")
"""What a report writes that is kept (report.html embeds the same PNGs again: left out)."""
RUNS_FILE = "runs.jsonl"
"""Per workload, one JSON line per invocation of this script: the record of :func:`run_workload`."""

LAST_EPOCHS = 3
"""Convergence check: the epochs over which the best point's mean curve must have stopped improving."""
FLAT_SHARE = 0.02
"""... by at most this share of the improvement it made from its initial value."""
EXPECTED_BEST_N = (1, 2, 5, 10, 20, 50)
"""The budgets n at which ``expected_best_intervals.csv`` tabulates the expected best (both estimators)."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """A workload of the findings: its output folder and its two study definitions (file stems)."""

    name: str
    main: str
    companion: str
    gpu: bool = False


WORKLOADS = (
    Workload("digits-mlp", "findings-digits", "findings-digits-gamma09"),
    Workload("cartpole", "findings-cartpole", "findings-cartpole-gamma09"),
    Workload("cartpole-20-epochs", "findings-cartpole-20-epochs", "findings-cartpole-20-epochs-gamma09"),
    Workload("char-lm", "findings-char-lm", "findings-char-lm-gamma09"),
    Workload("fmnist-cnn", "findings-fmnist", "findings-fmnist-gamma09"),
    Workload("resnet18-cifar10", "findings-resnet18-cifar10", "findings-resnet18-cifar10-gamma09", gpu=True),
    Workload("resnet18-cifar100", "findings-resnet18-cifar100", "findings-resnet18-cifar100-gamma09", gpu=True),
    Workload("char-lm-gpu", "findings-char-lm-gpu", "findings-char-lm-gpu-gamma09", gpu=True),
)


class InputError(Exception):
    """A user's mistake: printed as one line, exit 2."""


def versions() -> dict[str, str]:
    """The versions the outputs were made with (read from the installed distributions, no import)."""
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("torch", "optuna", "numpy", "pandas", "gymnasium"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def study_name(definition: Path) -> str:
    """The ``study`` key of a definition file.

    Raises:
        InputError: the file is missing, not TOML, or names no study.
    """
    try:
        data = tomllib.loads(definition.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read study definition {definition}: {exc}; fix the file or pass --studies-dir") from exc
    if not isinstance(data.get("study"), str):
        raise InputError(f"{definition} names no study (add study = \"NAME\")")
    return data["study"]


def run_sweep(definition: Path, storage: str, workers: int, on_start=None) -> dict:
    """Sweep (or resume) one definition through the CLI; the command, exit status and wall seconds.
    ``on_start(step)`` is called with the step's record (command, start time) before the sweep runs."""
    cmd = [sys.executable, "-m", "sensitivity.cli", "sweep", "--config", str(definition),
           "--storage", storage, "--workers", str(workers)]
    shown = ["adamrag-sens", *cmd[3:]]
    if definition.is_relative_to(ROOT):  # the command runs in ROOT
        shown[shown.index("--config") + 1] = str(definition.relative_to(ROOT))
    shown[shown.index("--storage") + 1] = mask_storage(storage)
    step: dict = {"command": " ".join(shown), "started": _now(), "returncode": None, "wall_s": None}
    if on_start is not None:
        on_start(step)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    step.update(returncode=proc.returncode, wall_s=round(time.perf_counter() - start, 1))
    return step


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLog:
    """This invocation's line of a workload's ``runs.jsonl``, rewritten in place at each step.

    A sweep of hours can be stopped by a restart or Ctrl-C; the line then still says which sweeps
    ended (exit status, wall seconds) and which one was under way since when (``returncode`` None),
    and the earlier invocations' lines are kept as they were. The file is replaced atomically.
    """

    def __init__(self, path: Path, record: dict):
        self.path, self.record = path, record
        self.earlier = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in [*self.earlier, json.dumps(self.record)]), encoding="utf-8")
        os.replace(tmp, self.path)


def merged_companion(main: TrialsData, companion: TrialsData, optimizer: str = "adamrag") -> TrialsData:
    """The companion's ``optimizer`` trials beside the main study's other optimizers' trials.

    Trial numbers of the companion are offset by 1,000,000 so that curves stay keyed to their trial.
    """
    offset = 1_000_000
    mine_t = companion.trials[companion.trials["optimizer"] == optimizer].assign(
        trial=lambda f: f["trial"] + offset)
    mine_c = companion.curves[companion.curves["optimizer"] == optimizer].assign(
        trial=lambda f: f["trial"] + offset)
    trials = pd.concat([mine_t, main.trials[main.trials["optimizer"] != optimizer]], ignore_index=True)
    curves = pd.concat([mine_c, main.curves[main.curves["optimizer"] != optimizer]], ignore_index=True)
    meta = dict(main.meta)
    meta["study_name"] = f"{companion.meta['study_name']} ({optimizer}) + {main.meta['study_name']} (baselines)"
    return TrialsData(trials=trials, curves=curves, meta=meta)


def convergence_table(data: TrialsData, metric: str, *, last: int = LAST_EPOCHS,
                      flat_share: float = FLAT_SHARE) -> pd.DataFrame:
    """Has each optimizer's best point stopped improving by the end of its budget?

    The best point is the hyperparameter point (lr, beta1, beta2, gamma, weight decay) with the best
    mean objective over seeds (the stored ``value``: the final metric, a diverged run at its initial
    value). Its curve is the mean over seeds of ``metric`` after each epoch (epoch 0: initialised).
    ``gain_last`` is how much that mean curve improved over the last ``last`` epochs (positive =
    better, in the metric's unit), ``gain_share`` that gain over the improvement from epoch 0 to the
    end, and ``flat`` is ``gain_share <= flat_share`` (NaN when the budget has fewer than
    ``last + 1`` epochs). ``best_epoch`` is the epoch of the mean curve's best value.

    Returns:
        One row per optimizer: optimizer, lr, beta1, beta2, gamma, weight_decay, seeds, epochs,
        initial, final, value_before (``last`` epochs before the end), gain_last, gain_share,
        best_epoch, best_value, flat.
    """
    hib = M.higher_is_better(metric)
    done = M.complete_trials(data.trials)
    keys = ["beta1", "beta2", "gamma", "weight_decay"]
    rows = []
    for name in M.optimizer_order(done["optimizer"]):
        mine = done[done["optimizer"] == name]
        means = mine.groupby(["lr", *keys], dropna=False)["value"].mean()
        point = means.idxmax() if hib else means.idxmin()
        at = mine
        for col, val in zip(["lr", *keys], point):
            at = at[at[col].isna()] if pd.isna(val) else at[at[col] == val]
        curves = data.curves[data.curves["trial"].isin(at["trial"])]
        curve = curves.groupby("epoch")[metric].mean().sort_index()
        epochs = int(curve.index.max())
        sign = 1.0 if hib else -1.0
        initial, final = float(curve.iloc[0]), float(curve.iloc[-1])
        if epochs >= last + 1:
            before = float(curve.loc[epochs - last])
            gain = sign * (final - before)
            made = sign * (final - initial)
            share = gain / made if made > 0 else float("nan")
            flat = bool(share <= flat_share) if np.isfinite(share) else None
        else:
            before, gain, share, flat = float("nan"), float("nan"), float("nan"), None
        best_epoch = int(curve.idxmax() if hib else curve.idxmin())
        rows.append({"optimizer": name, **dict(zip(["lr", *keys], point)), "seeds": int(at["seed"].nunique()),
                     "epochs": epochs, "initial": initial, "final": final, "value_before": before,
                     "gain_last": gain, "gain_share": share, "best_epoch": best_epoch,
                     "best_value": float(curve.loc[best_epoch]), "flat": flat})
    return pd.DataFrame(rows)


def write_outputs(data: TrialsData, out: Path) -> dict:
    """The report, importance and convergence of ``data`` into ``out`` (replacing what was there)."""
    metric = data.meta["metric"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_report(data, tmp, metric=metric)  # with importance.csv/.png and ablation.csv
        convergence_table(data, metric).to_csv(Path(tmp) / "convergence.csv", index=False)
        done = M.complete_trials(data.trials)
        values = M.metric_values(done, metric).reset_index(drop=True)
        groups = done["optimizer"].reset_index(drop=True)
        smallest = int(groups.value_counts().min())
        expected_best_intervals(values, groups, higher_is_better=M.higher_is_better(metric),
                                ns=[n for n in EXPECTED_BEST_N if n <= smallest]).to_csv(
            Path(tmp) / "expected_best_intervals.csv", index=False)
        if out.exists():
            for old in out.iterdir():
                if old.is_file() and old.name != RUNS_FILE:
                    old.unlink()
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(Path(tmp).iterdir()):
            if item.suffix in KEPT_SUFFIXES:
                shutil.copyfile(item, out / item.name)
    return {"metric": metric, "report_wall_s": round(time.perf_counter() - start, 1),
            "findings": list(paths.findings)}


def trial_counts(data: TrialsData) -> dict[str, int]:
    """Trials per state, and COMPLETE trials per optimizer."""
    states = data.trials["state"].value_counts().to_dict()
    done = M.complete_trials(data.trials)
    return {**{f"state_{k}": int(v) for k, v in states.items()},
            **{f"complete_{k}": int(v) for k, v in done["optimizer"].value_counts().sort_index().items()},
            "training_s_sum": round(float(done["wall_time_s"].sum()), 1)}


def run_workload(w: Workload, args) -> dict | None:
    """Sweep and report one workload; its run record, or None when a study is not stored."""
    main_def, comp_def = (args.studies_dir / f"{stem}.toml" for stem in (w.main, w.companion))
    names = study_name(main_def), study_name(comp_def)
    record: dict = {"workload": w.name, "started": _now(),
                    "definitions": [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
                                    for p in (main_def, comp_def)],
                    "storage": mask_storage(args.storage), "versions": versions(), "sweeps": []}
    out = args.out / w.name
    log = RunLog(out / RUNS_FILE, record)
    if not args.no_sweep:
        for definition in (main_def, comp_def):
            step = run_sweep(definition, args.storage, args.workers,
                             on_start=lambda step: (record["sweeps"].append(step), log.save()))
            log.save()
            if step["returncode"] != 0:
                print(f"findings: the sweep of {definition.name} failed (exit {step['returncode']}); "
                      "fix it and rerun (stored trials are kept)", file=sys.stderr)
                return None
    try:
        main, companion = (load_trials(args.storage, n) for n in names)
    except Exception as exc:  # a study not stored yet (--no-sweep): skip it, say so
        print(f"findings: {w.name} skipped: {exc}", file=sys.stderr)
        return None
    record["main"] = {"study": names[0], "trials": trial_counts(main), **write_outputs(main, out)}
    record["companion"] = {"study": names[1], "trials": trial_counts(companion),
                           **write_outputs(merged_companion(main, companion), out / COMPANION_DIR)}
    record["finished"] = _now()
    log.save()  # one line per invocation, the earlier ones kept
    return record


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"one storage for every study (default {DEFAULT_STORAGE})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default docs/findings)")
    p.add_argument("--studies-dir", type=Path, default=ROOT / "studies", help="where the findings-*.toml files are")
    p.add_argument("--only", action="append", default=[], metavar="WORKLOAD",
                   help="run only this workload (repeat); names: " + ", ".join(w.name for w in WORKLOADS))
    p.add_argument("--gpu", action="store_true", help="include the GPU workloads (resnet18, char-lm-gpu)")
    p.add_argument("--workers", type=int, default=1, help="worker processes per sweep (default 1)")
    p.add_argument("--no-sweep", action="store_true", help="report on what is stored; train nothing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        known = {w.name: w for w in WORKLOADS}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            raise InputError(f"unknown workload {', '.join(unknown)}; choose from {', '.join(known)}")
        if args.workers < 1:
            raise InputError(f"--workers must be at least 1, got {args.workers}")
        chosen = [known[n] for n in args.only] if args.only else [w for w in WORKLOADS if args.gpu or not w.gpu]
        for w in chosen:  # every definition readable before anything runs
            for stem in (w.main, w.companion):
                study_name(args.studies_dir / f"{stem}.toml")
    except InputError as exc:
        print(f"findings: {exc}", file=sys.stderr)
        return 2
    done = []
    for w in chosen:
        record = run_workload(w, args)
        if record is not None:
            done.append(record)
            print(f"findings: {w.name} written to {args.out / w.name}")
    if len(done) >= 2:
        refs = [StudyRef(args.storage, r["main"]["study"]) for r in done]
        build_compare(refs, args.out / "compare")
        (args.out / "compare" / "compare.html").unlink(missing_ok=True)
        print(f"findings: compare of {len(done)} workloads written to {args.out / 'compare'}")
    return 0 if len(done) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
