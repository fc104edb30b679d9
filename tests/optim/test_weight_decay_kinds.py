"""Each optimizer's weight decay acts as the catalog (and ``adamrag-sens optimizers``) says.

Coupled decay is L2 regularisation: training f with ``weight_decay = wd`` is training
f + wd/2 |p|^2 without it. Decoupled decay (AdamW, Lion) shrinks the parameter by
``lr * wd * p`` before the update, whatever the gradient says. Each optimizer is run both ways
over several steps; the kind the catalog names must match and the other must not.
"""

from __future__ import annotations

import pytest
import torch

from sensitivity.catalog import OPTIMIZERS, WEIGHT_DECAY_KINDS
from sensitivity.optim.registry import build_optimizer

WD = 0.3


def _run(name: str, weight_decay: float, by_hand: str, steps: int = 6) -> torch.Tensor:
    """Steps on f(x) = 0.5 x^T A x - b^T x in float64; ``by_hand`` adds the decay outside the
    optimizer: "" none, "coupled" as an L2 term of the loss, "decoupled" as a shrink before the step."""
    gen = torch.Generator().manual_seed(0)
    a = torch.diag(torch.linspace(0.5, 4.0, 6, dtype=torch.float64))
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
    info = OPTIMIZERS[name]
    lr = info.defaults["lr"]
    opt = build_optimizer(name, [x], {"lr": lr, "weight_decay": weight_decay})
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * x @ a @ x - b @ x
        if by_hand == "coupled":
            loss = loss + 0.5 * WD * (x * x).sum()
        loss.backward()
        if by_hand == "decoupled":
            with torch.no_grad():
                x.mul_(1 - lr * WD)
        opt.step()
    return x.detach()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_weight_decay_acts_as_the_catalog_says(name):
    kind = OPTIMIZERS[name].weight_decay_kind
    assert kind in WEIGHT_DECAY_KINDS
    other = next(k for k in WEIGHT_DECAY_KINDS if k != kind)
    inside = _run(name, WD, "")
    assert torch.allclose(inside, _run(name, 0.0, kind), rtol=1e-10, atol=1e-12), name
    assert not torch.allclose(inside, _run(name, 0.0, other), rtol=1e-6, atol=1e-8), name
