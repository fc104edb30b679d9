"""The package's rooms keep their walls: the report side reads stored records and the torch-free
catalog only; storage is opened in one place."""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sensitivity"

# Writes a tiny study with Optuna alone, builds its report, and prints what got imported.
_CHILD = r"""
import json, sys
import optuna
from sensitivity.catalog import OPTIMIZERS
from sensitivity.records import TrialResult, param_distributions
from sensitivity.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
url = sys.argv[1]
study = optuna.create_study(study_name="toy", storage=open_storage(url, heartbeat=False))
dists = param_distributions(sorted(OPTIMIZERS))
for i, lr in enumerate((1e-3, 1e-2, 1e-1)):
    for name in ("adam", "nag"):
        r = TrialResult(train_loss=[1.0], metrics={"val_loss": [0.5 + lr], "val_acc": [0.8]},
                        initial={"val_loss": 2.3, "val_acc": 0.1}, epochs_run=1)
        params = {"optimizer": name, "lr": lr, "beta1": 0.9, "seed": 0}
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                        value=r.objective("val_loss"), user_attrs=r.to_user_attrs()))
before = set(sys.modules)
from sensitivity.report import build_report
build_report(url, "toy", sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "sensitivity.")))))
"""


@pytest.mark.slow  # a whole report built in a child process; the import walls are checked fast below
def test_writing_a_report_imports_neither_torch_nor_the_study_side(tmp_path):
    out = subprocess.run([sys.executable, "-c", _CHILD, f"sqlite:///{tmp_path}/s.db", str(tmp_path / "rep")],
                         capture_output=True, text=True, timeout=300, check=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert (tmp_path / "rep" / "report.html").is_file()
    assert "torch" not in modules
    assert not [m for m in modules if m.startswith(("sensitivity.study", "sensitivity.optim", "sensitivity.tasks",
                                                    "sensitivity.train"))], modules
    assert "sensitivity.catalog" in modules and "sensitivity.storage" in modules


@pytest.mark.slow
def test_importing_the_catalog_and_the_report_package_loads_no_torch():
    code = "import sys, sensitivity.catalog, sensitivity.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


@functools.cache
def _nodes(path: Path) -> tuple[ast.AST, ...]:
    """Every node of the module at ``path`` (parsed once per test process)."""
    return tuple(ast.walk(ast.parse(path.read_text())))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in _nodes(path):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_report_modules_import_nothing_from_the_study_or_training_side():
    for path in sorted((PACKAGE / "report").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(("sensitivity.study", "sensitivity.optim",
                                                           "sensitivity.train", "sensitivity.tasks", "torch"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


_PRIVATE_OPTUNA = re.compile(
    r"optuna(?:\.[A-Za-z0-9_]+)*\._[a-z]"           # a private module or name: optuna.storages._rdb, optuna._x
    r"|\._(?:backend|storage|study_id|trial_id)\b"  # private attributes of Optuna's objects
    r"|[\"']_backend[\"']"                          # ... read with getattr
    r"|_get_stale_trial_ids|_CachedStorage|BaseHeartbeat|\b_rdb\b|[\"']fixed_params[\"']"
)
"""What names Optuna's private API (its modules, attributes and the heartbeat interface)."""


def test_private_api_pattern_finds_what_it_should():
    for text in ("from optuna.storages._rdb import models", "study._storage", "getattr(s, '_backend', s)",
                 "storage._get_stale_trial_ids(1)", "trial._trial_id", '"fixed_params"', "x._backend.engine"):
        assert _PRIVATE_OPTUNA.search(text), text
    for text in ("optuna.storages.RDBStorage", "optuna.trial.TrialState", "self._models", "open_storage(url)"):
        assert not _PRIVATE_OPTUNA.search(text), text


def test_only_storage_optuna_names_optunas_private_api():
    allowed = PACKAGE / "storage" / "_optuna.py"
    assert allowed.is_file()
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == allowed:
            continue
        hits = [m.group(0) for m in _PRIVATE_OPTUNA.finditer(path.read_text())]
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    assert not found, found


def test_storage_imports_nothing_from_the_study_side_nor_torch():
    for path in sorted((PACKAGE / "storage").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(("sensitivity.study", "sensitivity.report", "sensitivity.cli",
                                                           "sensitivity.train", "sensitivity.tasks", "torch"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_only_the_command_line_imports_the_benchmarks():
    """bench/ is a side room: the CLI runs it, nothing else imports it (it imports the rest)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("bench", "cli"):
            continue
        bad = {m for m in _imports(path) if m == "sensitivity.bench" or m.startswith("sensitivity.bench.")}
        bad |= {f"sensitivity.{a}" for a in _from_sensitivity_import(path) if a == "bench"}
        assert not bad, f"{rel} imports {sorted(bad)}"


@pytest.mark.slow
def test_the_library_never_imports_or_starts_the_command_line():
    """The CLI is the top floor: no other room imports it, and workers start through the study
    side's own entry point (sensitivity.study.worker_process), not `python -m sensitivity.cli`."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("cli", "bench"):  # bench times the command as a user runs it
            continue
        assert not {m for m in _imports(path) if m == "sensitivity.cli" or m.startswith("sensitivity.cli.")}, rel
        assert "cli" not in _from_sensitivity_import(path), rel
        assert '"sensitivity.cli"' not in path.read_text(), rel


def _from_sensitivity_import(path: Path) -> set[str]:
    """Names imported as ``from sensitivity import NAME``."""
    return {a.name for node in _nodes(path)
            if isinstance(node, ast.ImportFrom) and node.module == "sensitivity" for a in node.names}
