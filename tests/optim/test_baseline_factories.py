"""The optimizer factories and the catalog: each baseline follows its reference update; default ranges are sane."""

from __future__ import annotations

import math

import pytest
import torch

from sensitivity.optim import AdamRAG
from sensitivity.catalog import OPTIMIZERS, optimizer_info
from sensitivity.optim.registry import FACTORIES, build_optimizer
from sensitivity.study.spec import StudySpec


def _quadratic_run(name: str, hp: dict, steps: int = 25) -> torch.Tensor:
    """Steps of optimizer ``name`` on f(x) = 0.5 x^T A x - b^T x, returning the float32 iterate."""
    gen = torch.Generator().manual_seed(0)
    a = torch.diag(torch.linspace(0.5, 4.0, 6))
    b = torch.randn(6, generator=gen)
    x = torch.nn.Parameter(torch.randn(6, generator=gen))
    opt = build_optimizer(name, [x], hp)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * x @ a @ x - b @ x).backward()
        opt.step()
    return x.detach()


def _lion_reference(hp: dict, steps: int = 25) -> torch.Tensor:
    """Lion as written in Chen et al. 2023 (arXiv 2302.06675, Algorithm 2), in float64."""
    gen = torch.Generator().manual_seed(0)
    a = torch.diag(torch.linspace(0.5, 4.0, 6)).double()
    b = torch.randn(6, generator=gen).double()
    x = torch.randn(6, generator=gen).double()
    m = torch.zeros(6, dtype=torch.float64)
    lr, b1, b2, wd = hp["lr"], hp["beta1"], hp["beta2"], hp["weight_decay"]
    for _ in range(steps):
        g = a @ x - b
        c = b1 * m + (1 - b1) * g
        x = x - lr * (torch.sign(c) + wd * x)
        m = b2 * m + (1 - b2) * g
    return x


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lion_from_the_registry_follows_the_papers_update(wd):
    hp = {"lr": 3e-2, "beta1": 0.9, "beta2": 0.99, "weight_decay": wd}
    got = _quadratic_run("lion", hp)
    want = _lion_reference(hp)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_nag_is_sgd_with_nesterov_momentum_beta1():
    got = _quadratic_run("nag", {"lr": 0.05, "beta1": 0.8})
    gen = torch.Generator().manual_seed(0)
    a = torch.diag(torch.linspace(0.5, 4.0, 6))
    b = torch.randn(6, generator=gen)
    x = torch.randn(6, generator=gen)
    buf = torch.zeros(6)
    for _ in range(25):  # Sutskever et al. 2013 in torch's form: buf = mu buf + g; x -= lr (g + mu buf)
        g = a @ x - b
        buf = 0.8 * buf + g
        x = x - 0.05 * (g + 0.8 * buf)
    torch.testing.assert_close(got, x, atol=1e-6, rtol=1e-6)


def test_adamrag_entry_passes_every_hyperparameter():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer("adamrag", [p], {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "gamma": 0.3, "weight_decay": 0.1})
    assert isinstance(opt, AdamRAG)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["gamma"], group["weight_decay"]) == (0.02, (0.8, 0.95), 0.3, 0.1)


def test_unknown_hyperparameters_are_ignored_and_defaults_fill_the_rest():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer("nag", [p], {"lr": 0.5, "beta2": 0.99, "gamma": 0.5})
    assert opt.param_groups[0]["momentum"] == OPTIMIZERS["nag"].defaults["beta1"]
    assert opt.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_default_lr_grid_is_log_spaced_between_the_range_ends(name):
    info = OPTIMIZERS[name]
    grid = info.lr_grid(5)
    lo, hi = info.lr_range
    assert grid[0] == pytest.approx(lo) and grid[-1] == pytest.approx(hi)
    step = math.log10(hi / lo) / 4  # equal steps in log10(lr), up to the 3-digit rounding
    for a, b in zip(grid, grid[1:]):
        assert math.log10(b / a) == pytest.approx(step, abs=2e-3)
    assert math.log10(hi / lo) >= 3  # a sensitivity curve needs several decades


def test_lr_grid_refuses_fewer_than_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        OPTIMIZERS["adam"].lr_grid(1)


def test_lion_default_learning_rates_sit_3_to_10x_below_adams():
    ratio = OPTIMIZERS["adam"].lr_range[0] / OPTIMIZERS["lion"].lr_range[0]
    assert 3 <= ratio <= 10 * (1 + 1e-9)


def test_every_catalog_optimizer_has_a_factory_and_every_default_sweep_optimizer_is_in_the_catalog():
    assert set(FACTORIES) == set(OPTIMIZERS)
    assert set(StudySpec().optimizers) <= set(OPTIMIZERS)
    for name, info in OPTIMIZERS.items():  # building with the catalog defaults alone works
        p = torch.nn.Parameter(torch.zeros(2))
        assert isinstance(build_optimizer(name, [p], {}), torch.optim.Optimizer)
        assert set(info.defaults) == set(info.hyperparameters)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="adamrag"):
        optimizer_info("adagrad")
    with pytest.raises(KeyError, match="adamrag"):
        build_optimizer("adagrad", [torch.nn.Parameter(torch.zeros(1))], {})
