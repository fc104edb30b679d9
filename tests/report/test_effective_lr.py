"""The effective learning rate: hand values, and the steady-state step it stands for, simulated."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from sensitivity.report.effective_lr import effective_lr, effective_lr_factor, on_lr_axis


def test_effective_lr_of_each_family():
    trials = pd.DataFrame({
        "optimizer": ["adamrag", "nag", "sgd", "adam", "lion", "adamrag"],
        "lr": [1e-3, 0.1, 0.1, 1e-3, 1e-4, 1e-3],
        "beta1": [0.9, 0.9, 0.8, 0.9, 0.9, 0.9],
        "gamma": [0.5, math.nan, math.nan, math.nan, math.nan, math.nan],
    })
    got = effective_lr(trials, defaults={"adamrag": {"gamma": 0.75}})
    # 1e-3 / (1 - 0.5); 0.1 / (1 - 0.9); 0.1 / (1 - 0.8); Adam and Lion unchanged; default gamma 0.75 -> x4
    assert got.tolist() == pytest.approx([2e-3, 1.0, 0.5, 1e-3, 1e-4, 4e-3])
    assert effective_lr_factor("nag", {"beta1": 0.95}) == pytest.approx(20.0)
    assert effective_lr_factor("lion", {}) == 1.0
    assert math.isnan(effective_lr_factor("adamrag", {}))


def test_on_lr_axis_keeps_the_nominal_lr():
    trials = pd.DataFrame({"optimizer": ["adamrag"], "lr": [1e-3], "beta1": [0.9], "gamma": [0.5]})
    eff = on_lr_axis(trials, "effective")
    assert eff["lr"].tolist() == [2e-3] and eff["lr_nominal"].tolist() == [1e-3]
    assert on_lr_axis(trials, "nominal") is trials
    with pytest.raises(ValueError, match="unknown lr axis"):
        on_lr_axis(trials, "warped")


def _steady_step(opt_factory, steps: int = 400) -> float:
    """Size of the last step of an optimizer on f(p) = g * p (a constant gradient g = 1)."""
    p = torch.zeros(1, requires_grad=True)
    opt = opt_factory([p])
    before = 0.0
    for _ in range(steps):
        opt.zero_grad()
        p.grad = torch.ones(1)
        before = p.item()
        opt.step()
    return abs(p.item() - before)


def test_the_factor_is_the_steady_state_step_under_a_constant_gradient():
    from sensitivity.optim import AdamRAG

    nag = _steady_step(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True))
    assert nag == pytest.approx(0.01 * effective_lr_factor("nag", {"beta1": 0.9}), rel=1e-4)
    hb = _steady_step(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.8))
    assert hb == pytest.approx(0.01 * effective_lr_factor("sgd", {"beta1": 0.8}), rel=1e-4)
    rag = _steady_step(lambda ps: AdamRAG(ps, lr=1e-3, betas=(0.9, 0.999), gamma=0.5, eps=0.0))
    assert rag == pytest.approx(1e-3 * effective_lr_factor("adamrag", {"gamma": 0.5}), rel=1e-4)
    adam = _steady_step(lambda ps: torch.optim.Adam(ps, lr=1e-3, eps=0.0))
    assert adam == pytest.approx(1e-3 * effective_lr_factor("adam", {}), rel=1e-4)
