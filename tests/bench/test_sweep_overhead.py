"""The sweep benchmark: what it derives from stored trials, its command line, and its refusals
(never its timings)."""

from __future__ import annotations

import datetime
import json
import math

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from sensitivity.bench.sweep_overhead import SweepBench, SweepRun, _stored_timings, sweep_summary, sweep_table
from sensitivity.cli import app
from sensitivity.records import POINT_KEY
from sensitivity.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_bookkeeping_per_trial_is_the_time_between_trial_starts_not_spent_training(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    study = optuna.create_study(study_name="t", storage=open_storage(url, heartbeat=False))
    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)
    # (start offset s, trial wall_time_s, end offset s): gaps (1.0 - 0.0) - 0.75 and (3.0 - 1.0) - 1.5 seconds
    for start, wall, end in ((0.0, 0.75, 0.8), (1.0, 1.5, 2.6), (3.0, 0.5, 3.5)):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.1}, distributions={"lr": FloatDistribution(0.01, 1.0)}, value=1.0,
            user_attrs={"wall_time_s": wall, "steps": 10, POINT_KEY: str(start)},
        ))
        trial_id = study.get_trials()[-1]._trial_id  # noqa: SLF001 - set the times the test reasons about
        backend = study._storage._backend  # noqa: SLF001
        with backend.engine.begin() as conn:
            from sqlalchemy import text

            utc = lambda s: (t0 + datetime.timedelta(seconds=s)).astimezone(datetime.timezone.utc).replace(tzinfo=None)  # noqa: E731
            conn.execute(text("UPDATE trials SET datetime_start = :a, datetime_complete = :b WHERE trial_id = :i"),
                         {"a": utc(start), "b": utc(end), "i": trial_id})
    launched = t0.timestamp() - 4.0  # the process started 4 s before its first trial
    got = _stored_timings(url, "t", launched, batch_size=32)
    assert got["trials"] == 3
    assert got["bookkeeping_ms"] == pytest.approx([250.0, 500.0])
    assert got["sweep_training_s"] == pytest.approx(2.75)
    assert got["startup_s"] == pytest.approx(4.0)
    assert got["images"] == 3 * 10 * 32
    assert got["span_s"] == pytest.approx(3.5)


def test_bookkeeping_at_the_start_and_end_are_medians_over_a_tenth_of_the_trials():
    run = SweepRun(sweep_s=2.0, bare_s=1.6, sweep_cpu_s=1.0, bare_cpu_s=0.8, training_s=1.0, sweep_training_s=1.0,
                   startup_s=0.5, bookkeeping_ms=[1.0] * 100 + [5.0] * 100 + [2.0] * 100)
    assert run.ratio == pytest.approx(1.25) and run.cpu_ratio == pytest.approx(1.25)
    assert run.bookkeeping_at("start") == 1.0 and run.bookkeeping_at("end") == 2.0  # 30 of 300 each
    short = SweepRun(**{**run.__dict__, "bookkeeping_ms": [3.0, 1.0, 2.0]})
    assert short.bookkeeping_at("start") == short.bookkeeping_at("end") == 2.0  # all of them
    bench = SweepBench("d", [], 301, [run, short])
    assert "1.250 wall, 1.250 CPU (median of 2 rounds" in sweep_summary(bench)[0]


def test_the_summary_says_the_sweep_ran_populations_against_the_one_by_one_loop():
    run = SweepRun(sweep_s=1.0, bare_s=2.5, sweep_cpu_s=1.0, bare_cpu_s=2.5, training_s=2.0, sweep_training_s=0.8,
                   startup_s=0.5, bookkeeping_ms=[-5.0, -5.0])  # members start together: no gap to measure
    clause = "populations of up to 27 (task 'digits-mlp' declares population_size=27)"
    lines = sweep_summary(SweepBench("d", [], 3, [run], runs_as=clause))
    assert lines[0] == ("sweep / bare loop: 0.400 wall, 0.400 CPU (one round; both whole fresh processes; the sweep "
                        f"ran {clause}, the bare loop one by one)")
    assert lines[2].startswith("bookkeeping per trial: not measured")
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(sweep_table(SweepBench("d", [], 3, [run], runs_as=clause)))
    [row] = [line.split("│") for line in console.export_text().splitlines() if line.startswith("│")]
    assert [cell.strip() for cell in row[1:-1]][-2:] == ["n/a", "n/a"]  # no bookkeeping between trial starts
    one = sweep_summary(SweepBench("d", [], 3, [run], runs_as="one by one (--population 1)"))
    assert one[2].startswith("bookkeeping per trial (between consecutive trial starts")


@pytest.mark.slow
def test_bench_sweep_runs_the_sweep_and_the_bare_loop_on_the_same_points(tmp_path):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(app, [
        "bench", "sweep", "--points", "4", "--optimizers", "adam,nag", "--epochs", "1", "--train-size", "64",
        "--val-size", "64", "--repeat", "1", "--json", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "sweep / bare loop:" in result.output and "bookkeeping per trial" in result.output
    assert "the sweep ran populations of up to 27" in " ".join(result.output.split())  # digits-mlp: two populations of 2
    data = json.loads(out.read_text())
    assert data["points"] == 4 and len(data["runs"]) == 1
    run = data["runs"][0]
    assert run["trials"] == 4 and len(run["bookkeeping_ms"]) == 3
    assert run["training_s"] > 0 and run["sweep_training_s"] > 0 and run["startup_s"] > 0
    assert data["ratio"] == pytest.approx(run["sweep_s"] / run["bare_s"])
    assert run["images"] == 4 * 1 * 64  # one epoch of one full batch of 64 per trial
    assert "--sampler random --n-trials 2" in " ".join(data["sweep_args"])


@pytest.mark.parametrize("args, message", [
    (["--device", "cpu", "--trials-per-gpu", "2"], "add --device cuda"),
    (["--synthetic"], "--synthetic is for --task resnet18"),
    (["--points", "0"], "--points 0 must be >= 1"),
    (["--repeat", "0"], "--repeat 0 must be >= 1"),
    (["--storage", "mongodb", "--points", "1", "--epochs", "1", "--train-size", "8", "--val-size", "8"], "use sqlite, journal"),
    (["--device", "cuda", "--trials-per-gpu", "0,2"], "give counts >= 1"),
    (["--device", "cuda", "--trials-per-gpu", "two"], "not a list of counts"),
    (["--task", "resnet18", "--synthetic", "--optimizers", "adam,rmsprop"], "unknown optimizer 'rmsprop'"),
])
def test_bench_sweep_refuses_bad_arguments_in_one_line(args, message):
    result = CliRunner().invoke(app, ["bench", "sweep", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
@pytest.mark.parametrize("extra", [[], ["--trials-per-gpu", "1,2,4,8", "--task", "resnet18", "--synthetic"]])
def test_bench_sweep_on_cuda_without_a_gpu_exits_2_with_one_line(extra):
    result = CliRunner().invoke(app, ["bench", "sweep", "--device", "cuda", *extra])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "no CUDA GPU is visible" in lines[-1]


def test_gpu_packing_divides_each_ks_images_by_its_span_and_by_the_ceiling(monkeypatch):
    """No GPU here: the sweeps and the ceiling run are stood in for; what is checked is which sweeps
    are asked for and the arithmetic of the rows."""
    from sensitivity.bench import gpu_packing

    asked = []

    def fake_sweep(**kwargs):
        k = int(kwargs["extra_sweep_args"][-1])
        asked.append(kwargs)
        run = SweepRun(sweep_s=1, bare_s=math.nan, sweep_cpu_s=1, bare_cpu_s=math.nan, training_s=math.nan,
                       sweep_training_s=1, startup_s=1, bookkeeping_ms=[], images=1000 * k, span_s=2.0, trials=2 * k)
        return SweepBench("d", [], 2 * k, [run])

    def fake_child(cmd, log_path, env):
        job, out = cmd[-2], cmd[-1]
        assert json.load(open(job))["config"]["batch_size"] == 512
        json.dump({"trials": [{"seconds": 1.0, "steps": 10, "throughput": 4000.0}]}, open(out, "w"))
        return 0.0, 1.0, 1.0

    monkeypatch.setattr(gpu_packing, "resolve_device", lambda device: device)
    monkeypatch.setattr(gpu_packing, "bench_sweep", fake_sweep)
    monkeypatch.setattr(gpu_packing, "run_process", fake_child)
    result = gpu_packing.bench_gpu_packing((1, 4), gpu=0)
    assert [a["extra_sweep_args"] for a in asked] == [["--gpus", "0", "--trials-per-gpu", "1"],
                                                      ["--gpus", "0", "--trials-per-gpu", "4"]]
    assert all(a["device"] == "cuda" and a["dataset"] == "synthetic" and a["seeds_of"] for a in asked)
    assert [a["points"] for a in asked] == [2, 8]  # two trials per worker
    assert result.ceiling_img_per_s == 4000.0
    assert [(r["img_per_s"], r["share"]) for r in result.rows] == [(500.0, 0.125), (2000.0, 0.5)]


def test_one_point_with_seeds_makes_the_same_sweep_as_its_flags():
    from sensitivity.bench.sweep_overhead import sweep_spec
    from sensitivity.study.space import plan_points

    spec, args = sweep_spec("resnet18", 6, "cuda", 3, None, 2000, None, ("adam",), "synthetic",
                             seeds_of={"lr": 1e-3, "beta1": 0.9})
    assert args == ["--task", "resnet18", "--optimizers", "adam", "--device", "cuda", "--lr", "0.001", "--beta1", "0.9",
                    "--seeds", "6", "--epochs", "3", "--val-size", "2000", "--dataset", "synthetic"]
    points = plan_points(spec)
    assert [p["seed"] for p in points] == list(range(6)) and {p["lr"] for p in points} == {1e-3}
