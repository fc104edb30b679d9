"""A refused number names the flag, the value, the rule it breaks, and a fitting value to give
instead (exit 2, one line).

``sweep --lr nan`` said "give numbers like --lr 0.9" (a beta, not a learning rate), ``--lr -1e-3``
only "must be > 0", ``--epochs 0`` only "must be >= 1". Now every numeric flag's refusal ends
"use e.g. FLAG EXAMPLE", the example being one the same flag accepts.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app
from sensitivity.cli.sweep import spec_from_flags
from sensitivity.errors import UserError
from sensitivity.study.spec import LIST_EXAMPLES, parse_floats

runner = CliRunner()

SWEEP = ["sweep", "--optimizers", "adamrag"]  # AdamRAG takes every swept hyperparameter

# command line -> (the flag and value the line must name, the rule it must state)
CASES = {
    "lr nan": ([*SWEEP, "--lr", "nan"], "--lr value nan", "is not a number"),
    "lr negative": ([*SWEEP, "--lr", "-1e-3"], "--lr value -0.001", "must be > 0"),
    "lr zero in a list": ([*SWEEP, "--lr", "1e-3,0"], "--lr value 0", "must be > 0"),
    "lr infinite": ([*SWEEP, "--lr", "inf"], "--lr value inf", "is not finite"),
    "lr not a number": ([*SWEEP, "--lr", "fast"], "--lr value 'fast'", "is not a number"),
    "lr below what a study holds": ([*SWEEP, "--lr", "1e-20"], "--lr value 1e-20", "is outside the learning rates"),
    "beta1 one": ([*SWEEP, "--beta1", "1"], "--beta1 value 1", "must lie in [0, 1)"),
    "beta1 nan": ([*SWEEP, "--beta1", "nan"], "--beta1 value nan", "is not a number"),
    "beta2 negative": ([*SWEEP, "--beta2", "-0.1"], "--beta2 value -0.1", "must lie in [0, 1)"),
    "gamma one": ([*SWEEP, "--gamma", "0.5,1"], "--gamma value 1", "must lie in [0, 1)"),
    "weight decay negative": ([*SWEEP, "--weight-decay", "-1"], "--weight-decay value -1", "must be >= 0"),
    "weight decay too large": ([*SWEEP, "--weight-decay", "20"], "--weight-decay value 20", "is above the largest"),
    "epochs zero": ([*SWEEP, "--epochs", "0"], "--epochs 0", "must be >= 1"),
    "seeds zero": ([*SWEEP, "--seeds", "0"], "--seeds 0", "must be >= 1"),
    "n-trials zero": ([*SWEEP, "--n-trials", "0"], "--n-trials 0", "must be >= 1"),
    "lr-points one": ([*SWEEP, "--lr-points", "1"], "--lr-points 1", "must be >= 2"),
    "train size zero": ([*SWEEP, "--train-size", "0"], "--train-size 0", "must be >= 1"),
    "val size zero": ([*SWEEP, "--val-size", "0"], "--val-size 0", "must be >= 1"),
    "batch size zero": ([*SWEEP, "--batch-size", "0"], "--batch-size 0", "must be >= 1"),
    "precise bn negative": ([*SWEEP, "--precise-bn", "-1"], "--precise-bn -1", "must be >= 0"),
    "divergence factor one": ([*SWEEP, "--divergence-factor", "1"], "--divergence-factor 1", "must be a finite number > 1"),
    "population zero": ([*SWEEP, "--population", "0"], "--population 0", "must be >= 1"),
    "warm-up as long as the run": ([*SWEEP, "--task", "char-lm", "--warmup-epochs", "1"], "--warmup-epochs 1",
                                   "below --epochs 1"),
    "workers zero": ([*SWEEP, "--workers", "0"], "--workers 0", "must be >= 1"),
    "worker threads zero": (["worker", "--study", "x", "--threads", "0"], "--threads 0", "must lie in 1 .. 1024"),
    "worker threads huge": (["worker", "--study", "x", "--threads", "99999999999"], "--threads 99999999999",
                            "must lie in 1 .. 1024"),
    "seeds huge": ([*SWEEP, "--seeds", "99999999999999999999"], "--seeds 99999999999999999999", "is larger than a study takes"),
    "lr-points huge": ([*SWEEP, "--lr-points", "99999999999"], "--lr-points 99999999999", "is larger than a study takes"),
    "workers huge": ([*SWEEP, "--workers", "99999999999"], "--workers 99999999999", "starts more worker processes"),
    "sampler seed negative": ([*SWEEP, "--sampler", "random", "--sampler-seed", "-5"], "--sampler-seed -5",
                              "must lie in 0 .. 4,294,967,295"),
    "bench train batch huge": (["bench", "train", "--synthetic", "--batch-size", "99999999999999999999"],
                               "--batch-size 99999999999999999999", "is larger than a benchmark takes"),
    "tolerance negative": (["report", "--tolerance", "-1"], "--tolerance -1", "must be a finite number >= 0"),
    "tolerance one": (["report", "--tolerance", "1"], "--tolerance 1", "must lie in [0, 1)"),
    "relative tolerance infinite": (["compare", "--study", "a", "--relative-tolerance", "inf"],
                                    "--relative-tolerance inf", "must be a finite number >= 0"),
    "bench steps zero": (["bench", "optimizer", "--steps", "0"], "--steps 0", "must be >= 1"),
    "bench warm-up negative": (["bench", "optimizer", "--warmup", "-1"], "--warmup -1", "must be >= 0"),
    "bench train batch zero": (["bench", "train", "--synthetic", "--batch-size", "0"], "--batch-size 0", "must be >= 1"),
    "bench train rounds zero": (["bench", "train", "--synthetic", "--rounds", "0"], "--rounds 0", "must be >= 1"),
    "bench sweep points zero": (["bench", "sweep", "--points", "0"], "--points 0", "must be >= 1"),
    "bench sweep repeat zero": (["bench", "sweep", "--repeat", "0"], "--repeat 0", "must be >= 1"),
}


def _refusal(args: list[str], storage: str) -> str:
    if args[0] in ("sweep", "worker", "report"):
        args = [*args, "--storage", storage]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_number_names_flag_value_rule_and_an_example(case, tmp_path):
    args, named, rule = CASES[case]
    line = _refusal(args, f"sqlite:///{tmp_path / 'studies.db'}")
    flag = named.split()[0]
    assert line.startswith(f"error: {named} ") and rule in line, line
    assert f"; use e.g. {flag} " in line, line
    assert line.rindex(rule) < line.rindex("use e.g."), line  # the rule, then the fix


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0][0] == "sweep"])
def test_the_sweep_example_is_a_value_the_sweep_takes(case, tmp_path):
    """Giving the quoted example instead of the refused value passes every check of the sweep's flags."""
    args, named, _ = CASES[case]
    flag = named.split()[0]
    line = _refusal(args, f"sqlite:///{tmp_path / 'studies.db'}")
    example = line.split(f"use e.g. {flag} ", 1)[1].split()[0]
    fixed = list(args[1:])
    fixed[fixed.index(flag) + 1] = example
    flags = _sweep_flags(fixed)
    spec_from_flags(flags)  # raises UserError if the example is refused
    from sensitivity.study.parallel import plan_local_workers

    plan_local_workers(flags["workers"], flags["gpus"], flags["trials_per_gpu"], "cpu")


def _sweep_flags(args: list[str]) -> dict:
    """``sweep``'s flag values (as Typer passes them) for a command line of ``--flag value`` pairs."""
    import typer

    command = typer.main.get_command(app).commands["sweep"]
    ctx = command.make_context("sweep", list(args))
    return {name: value for name, value in ctx.params.items() if name != "config"}


@pytest.mark.parametrize("flag", list(LIST_EXAMPLES))
def test_each_list_example_is_accepted_and_fits_its_flag(flag):
    values = parse_floats(flag, LIST_EXAMPLES[flag])
    assert len(values) >= 2
    key = flag.lstrip("-").replace("-", "_")
    flags = _sweep_flags(["--optimizers", "adamrag", flag, LIST_EXAMPLES[flag]])
    assert getattr(spec_from_flags(flags), key) == values
    if flag == "--lr":  # learning rates spread over decades, not a beta's 0.9
        assert max(values) / min(values) >= 100 and max(values) < 1


def test_lr_messages_never_quote_a_beta_as_the_example(tmp_path):
    for value in ("nan", "-1e-3", ",", "x"):
        line = _refusal([*SWEEP, "--lr", value], f"sqlite:///{tmp_path / 'studies.db'}")
        assert "0.9" not in line and "--lr 1e-4,1e-3,1e-2" in line, line
    with pytest.raises(UserError, match=r"--beta1 is empty; .*--beta1 0\.8,0\.9,0\.95"):
        parse_floats("--beta1", " , ")
