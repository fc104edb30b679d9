"""The line a sweep starts with accounts for every planned point: complete, running elsewhere,
queued earlier (WAITING trials an earlier, interrupted run queued), queued now (never tried),
queued again (after a failed or interrupted trial). The counts add up to the total and match what then runs.

A resumed sweep said '12 points (7 complete, 1 queued now)' and then ran 5 trials: the points an
interrupted run had queued and not started were counted nowhere.
"""

from __future__ import annotations

import re

import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.cli.terminal import plan_counts
from sensitivity.storage import open_storage, release_storage
from sensitivity.study.queue import PlanStart, PointQueue
from sensitivity.study.spec import StudySpec
from sensitivity.study.sweep import prepare_sweep, run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)

FLAGS = ["--optimizers", "adam", "--lr", "1e-3,1e-2,1e-1", "--beta1", "0.8,0.9", "--epochs", "1",
         "--train-size", "64", "--val-size", "64", "--study", "resume"]


def test_a_resumed_sweep_counts_the_points_an_interrupted_run_queued(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(optimizers=("adam",), lr=(1e-3, 1e-2, 1e-1), beta1=(0.8, 0.9), epochs=1, train_size=64,
                     val_size=64, storage=url, study_name="resume")
    # an earlier run queued the 6 points, completed one, and was interrupted during the next
    study, plan, start = prepare_sweep(spec)
    assert start == PlanStart(total=6, queued=6)
    assert run_worker(study, spec, plan, max_trials=1, population=1) == (1, 0)
    interrupted = PointQueue(study, plan).pop()
    study.tell(interrupted.number, state=TrialState.FAIL)
    release_storage(study)

    result = CliRunner().invoke(app, ["sweep", "--storage", url, *FLAGS], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    start_line = next(line for line in result.stdout.splitlines() if line.startswith("study resume"))
    assert "6 points (1 complete, 4 queued earlier, 1 queued again after a failed or interrupted trial)" \
        in start_line, start_line
    ran = int(re.search(r"ran (\d+) trials", result.stdout).group(1))
    assert ran == 4 + 1  # what the line said would run: queued earlier + queued again
    stored = optuna.load_study(study_name="resume", storage=open_storage(url))
    assert sum(t.state == TrialState.COMPLETE for t in stored.get_trials(deepcopy=False)) == 6
    release_storage(stored)


def test_the_counts_of_the_start_line_add_up_to_the_points():
    for start in (PlanStart(total=12, complete=7, waiting=4, queued=1),
                  PlanStart(total=12, complete=2, running=3, waiting=4, queued=3, failed_before=2),
                  PlanStart(total=5, queued=5), PlanStart(total=5, complete=5)):
        line = plan_counts(start)
        total, inside = re.fullmatch(r"(\d+) points \((.*)\)", line).groups()
        counts = [int(n) for n in re.findall(r"(?:^|, )(\d+) ", inside)]
        assert sum(counts) == int(total) == start.total, line
    assert plan_counts(PlanStart(total=12, complete=7, waiting=4, queued=1)) == \
        "12 points (7 complete, 4 queued earlier, 1 queued now)"
    assert plan_counts(PlanStart(total=3, complete=1, running=2)) == "3 points (1 complete, 2 running elsewhere)"
    assert plan_counts(PlanStart(total=4, queued=4, failed_before=1)) == \
        "4 points (0 complete, 3 queued now, 1 queued again after a failed or interrupted trial)"
