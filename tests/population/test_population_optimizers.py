"""The batched optimizers against the single-model ones, step for step, bit for bit on the CPU."""

from __future__ import annotations

import pytest
import torch

from sensitivity.optim.population import (PopulationAdam, PopulationAdamRAG, PopulationSGD,
                                          build_population_optimizer)
from sensitivity.optim.registry import build_optimizer

SHAPES = {"w": (7, 5), "b": (7,), "big": (3, 37)}  # odd sizes: vector bodies and scalar tails both
STEPS = 40


def _hyperparameters(name: str) -> list[dict[str, float]]:
    """Four members, every hyperparameter different per member (one member with weight decay 0)."""
    if name == "lion":
        lrs = [1e-4, 3e-3, 1e-2, 2e-5]
    elif name in ("nag", "sgd"):
        lrs = [1e-1, 0.37, 1e-2, 2.0]
    else:
        lrs = [1e-3, 3.7e-2, 1e-4, 0.11]
    return [{"lr": lr, "beta1": b1, "beta2": b2, "gamma": gm, "weight_decay": wd}
            for lr, b1, b2, gm, wd in zip(lrs, [0.9, 0.5, 0.99, 0.0], [0.999, 0.9, 0.95, 0.99],
                                          [0.5, 0.0, 0.9, 0.3], [0.0, 1e-2, 0.3, 5e-4])]


def _grads(k: int, seed: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{n: torch.randn((k, *s), generator=gen) * (10.0 ** (i % 5 - 2)) for n, s in SHAPES.items()}
            for i in range(STEPS)]


def _run_pair(make_single, population, start: dict[str, torch.Tensor], grads, schedule=None):
    """Step the population and K single optimizers (``make_single(params, k)``) on the same gradients."""
    k = population.size
    singles = []
    for i in range(k):
        ps = [torch.nn.Parameter(start[n][i].clone()) for n in SHAPES]
        singles.append((ps, make_single(ps, i)))
    for step, g in enumerate(grads):
        factor = 1.0 if schedule is None else schedule(step)
        population.step(g, lr_factor=factor)
        for i, (ps, opt) in enumerate(singles):
            for p, n in zip(ps, SHAPES):
                p.grad = g[n][i].clone()
            if schedule is not None:
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            opt.step()
        for i, (ps, _) in enumerate(singles):
            for p, n in zip(ps, SHAPES):
                assert torch.equal(population.params[n][i], p.detach()), (step, i, n)


def _start(k: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    return {n: torch.randn((k, *s), generator=gen) for n, s in SHAPES.items()}


@pytest.mark.parametrize("name", ["adamrag", "adam", "adamw", "nag", "sgd", "lion"])
def test_each_catalog_optimizer_matches_its_registry_optimizer_bit_for_bit(name):
    hps = _hyperparameters(name)
    start = _start(len(hps))
    population = build_population_optimizer(name, {n: t.clone() for n, t in start.items()}, hps)
    _run_pair(lambda ps, i: build_optimizer(name, ps, hps[i]), population, start, _grads(len(hps), 1))


@pytest.mark.parametrize("name", ["adamrag", "adam", "nag", "lion"])
def test_a_scheduled_learning_rate_matches_lambda_lr_arithmetic(name):
    hps = _hyperparameters(name)
    start = _start(len(hps))
    population = build_population_optimizer(name, {n: t.clone() for n, t in start.items()}, hps)

    def make(ps, i):
        opt = build_optimizer(name, ps, hps[i])
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
        return opt

    _run_pair(make, population, start, _grads(len(hps), 2), schedule=lambda s: 0.5 * (1 + (s % 7) / 7.0))


def test_nag_members_with_momentum_zero_take_plain_sgd_steps_as_the_registry_builds_them():
    hps = [{"lr": 0.1, "beta1": 0.0, "weight_decay": 0.0}, {"lr": 0.2, "beta1": 0.9, "weight_decay": 1e-3}]
    start = _start(2)
    population = build_population_optimizer("nag", {n: t.clone() for n, t in start.items()}, hps)
    _run_pair(lambda ps, i: build_optimizer("nag", ps, hps[i]), population, start, _grads(2, 3))


@pytest.mark.parametrize("decoupled", [False, True])
def test_adamrag_weight_decay_coupled_and_decoupled_and_maximize(decoupled):
    from sensitivity.optim import AdamRAG

    hps = _hyperparameters("adamrag")
    start = _start(len(hps))
    population = PopulationAdamRAG({n: t.clone() for n, t in start.items()}, hps, maximize=True, decoupled=decoupled)
    _run_pair(lambda ps, i: AdamRAG(ps, lr=hps[i]["lr"], betas=(hps[i]["beta1"], hps[i]["beta2"]),
                                    gamma=hps[i]["gamma"], weight_decay=hps[i]["weight_decay"],
                                    decoupled_weight_decay=decoupled, maximize=True),
              population, start, _grads(len(hps), 4))


def test_adam_and_sgd_maximize():
    hps = _hyperparameters("adam")
    start = _start(len(hps))
    population = PopulationAdam({n: t.clone() for n, t in start.items()}, hps, maximize=True)
    _run_pair(lambda ps, i: torch.optim.Adam(ps, lr=hps[i]["lr"], betas=(hps[i]["beta1"], hps[i]["beta2"]),
                                             weight_decay=hps[i]["weight_decay"], maximize=True),
              population, start, _grads(len(hps), 5))
    hps = _hyperparameters("nag")
    population = PopulationSGD({n: t.clone() for n, t in start.items()}, hps, maximize=True, nesterov=True)
    _run_pair(lambda ps, i: torch.optim.SGD(ps, lr=hps[i]["lr"], momentum=hps[i]["beta1"], nesterov=hps[i]["beta1"] > 0,
                                            weight_decay=hps[i]["weight_decay"], maximize=True),
              population, start, _grads(len(hps), 6))


def test_dropping_members_leaves_the_others_on_their_path():
    hps = _hyperparameters("adamrag")
    start = _start(len(hps))
    grads = _grads(len(hps), 7)
    whole = build_population_optimizer("adamrag", {n: t.clone() for n, t in start.items()}, hps)
    part = build_population_optimizer("adamrag", {n: t.clone() for n, t in start.items()}, hps)
    for step, g in enumerate(grads):
        whole.step(g)
        if step == 10:
            part.keep([True, False, True, False])
        part.step({n: t[[0, 2]] for n, t in g.items()} if step >= 10 else g)
    for n in SHAPES:
        assert torch.equal(part.params[n], whole.params[n][[0, 2]])


def test_unknown_optimizer_and_mismatched_members_raise():
    with pytest.raises(KeyError, match="known"):
        build_population_optimizer("rmsprop", {"w": torch.zeros(2, 3)}, [{"lr": 1.0}] * 2)
    with pytest.raises(ValueError, match="members"):
        build_population_optimizer("adam", {"w": torch.zeros(3, 3)}, [{"lr": 1.0}] * 2)
