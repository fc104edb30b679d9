"""With bfloat16 parameters and fp32_state=False, AdamRAG's second moment cannot
decay (0.999 x v rounds back to v); a user is told once, and fp32_state=True keeps it decaying."""

from __future__ import annotations

import warnings

import pytest
import torch

from sensitivity.optim import AdamRAG


@pytest.fixture(autouse=True)
def fresh_warning_registry(monkeypatch):
    monkeypatch.setattr("sensitivity.optim.adamrag._WARNED_NO_DECAY", set())


def _run(dtype: torch.dtype, fp32_state: bool, steps: int = 4, betas=(0.9, 0.999)):
    p = torch.nn.Parameter(torch.ones(8, dtype=dtype))
    q = torch.nn.Parameter(torch.ones(3, dtype=dtype))
    opt = AdamRAG([p, q], lr=1e-3, betas=betas, fp32_state=fp32_state)
    history = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(steps):
            for t in (p, q):
                t.grad = torch.ones_like(t) if step == 0 else torch.zeros_like(t)
            opt.step()
            history.append(opt.state[p]["exp_avg_sq"][0].item())
    return history, [w for w in caught if "never decays" in str(w.message)]


def test_bf16_state_with_beta2_0999_does_not_decay_and_says_so_once():
    history, warned = _run(torch.bfloat16, fp32_state=False)
    assert history[1:] == [history[0]] * 3  # stuck at (1 - 0.999) x 1^2, rounded to bf16
    assert history[0] == pytest.approx(1e-3, rel=1e-2)
    assert len(warned) == 1 and "beta2=0.999" in str(warned[0].message) and "fp32_state=True" in str(warned[0].message)
    assert _run(torch.bfloat16, fp32_state=False)[1] == []  # a second optimizer with the same setting: no repeat


def test_fp32_state_decays_by_beta2_each_step_without_a_warning():
    history, warned = _run(torch.bfloat16, fp32_state=True)
    expected = [1e-3 * 0.999 ** k for k in range(4)]  # v_1 = (1 - beta2) g^2, then v <- beta2 v with g = 0
    assert history == pytest.approx(expected, rel=1e-5)
    assert warned == []


@pytest.mark.parametrize("dtype,betas", [(torch.float32, (0.9, 0.999)), (torch.bfloat16, (0.9, 0.95)),
                                         (torch.float16, (0.9, 0.999))])
def test_no_warning_where_the_moments_can_decay(dtype, betas):
    # float16's rounding step is 2**-11: 1 - 0.999 is above half of it; bf16 with beta2 = 0.95 too
    history, warned = _run(dtype, fp32_state=False, betas=betas)
    assert warned == []
    assert history[-1] < history[0]
