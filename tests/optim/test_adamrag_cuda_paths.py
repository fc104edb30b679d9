"""AdamRAG's CUDA paths (for-each, fused Triton kernel, capturable, CUDA graphs) against the for-loop path.

Skipped without a CUDA device. scripts/gpu_optim_check.sh runs this file on a lent GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from sensitivity.optim.adamrag import AdamRAG

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# Odd sizes: several kernel blocks per tensor, ragged tails, a 1-element tensor.
SHAPES = [(300, 129), (64, 3, 3, 3), (4097,), (1,), (10, 512)]
PATHS = {
    "foreach": dict(foreach=True),
    "fused": dict(fused=True),
    "foreach-capturable": dict(foreach=True, capturable=True),
    "fused-capturable": dict(fused=True, capturable=True),
    "forloop-capturable": dict(foreach=False, capturable=True),
}
OPTIONS = {
    "default": dict(),
    "nesterov-amsgrad-decoupled": dict(
        gamma_schedule="nesterov", gamma_max=0.8, amsgrad=True, weight_decay=0.05, decoupled_weight_decay=True
    ),
    "coupled-maximize-betas": dict(gamma=0.8, weight_decay=0.05, maximize=True, betas=(0.5, 0.99)),
}


def _grad(p: torch.Tensor, t: int, maximize: bool = False) -> torch.Tensor:
    """A deterministic, point-dependent gradient: sin(3 y) + 0.1 cos(t) + 0.5 y.

    With ``maximize`` the field is negated, so that ascent follows the same well-conditioned
    dynamics as descent. (Ascending the un-negated field drives points away from its zeros, where
    an Adam step with a small beta1 is nearly sign(g): there a last-bit difference between two
    correct implementations flips a step and grows to ~lr, which says nothing about either.)
    """
    g = torch.sin(3 * p) + 0.1 * math.cos(t) + 0.5 * p
    return -g if maximize else g


def _run(flags, steps=12, dtype=torch.float32, shapes=SHAPES, **hp):
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=gen).to("cuda", dtype).requires_grad_() for s in shapes]
    opt = AdamRAG(params, lr=1e-2, **hp, **flags)
    for t in range(1, steps + 1):
        for p in params:
            p.grad = _grad(p.detach(), t, hp.get("maximize", False))
        opt.step()
    torch.cuda.synchronize()
    return [p.detach().float() for p in params], opt, params


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("path", list(PATHS))
def test_cuda_path_matches_the_forloop_path(path, option):
    got, _, _ = _run(PATHS[path], **OPTIONS[option])
    want, _, _ = _run(dict(foreach=False), **OPTIONS[option])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_with_gamma_zero_is_torch_fused_adam(decoupled):
    hp = dict(weight_decay=0.1, decoupled_weight_decay=decoupled)
    got, _, _ = _run(dict(fused=True), gamma=0.0, **hp)
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=gen).cuda().requires_grad_() for s in SHAPES]
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls(params, lr=1e-2, weight_decay=0.1, fused=True)
    for t in range(1, 13):
        for p in params:
            p.grad = _grad(p.detach(), t)
        opt.step()
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.detach(), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("path", ["foreach", "fused"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_params_with_fp32_state_match_the_forloop_path(path, dtype):
    got, opt, params = _run(PATHS[path], steps=6, dtype=dtype, fp32_state=True)
    want, _, _ = _run(dict(foreach=False), steps=6, dtype=dtype, fp32_state=True)
    assert all(opt.state[p]["ravine_buf"].dtype == torch.float32 for p in params)
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    for g, w in zip(got, want):  # same fp32 arithmetic, one rounding of y per step: a few ulps at most
        torch.testing.assert_close(g, w, atol=4 * ulp * 4, rtol=4 * ulp)


def test_fused_complex_params_follow_their_real_view():
    gen = torch.Generator(device="cpu").manual_seed(1)
    z0 = torch.randn(1000, 2, generator=gen).cuda()
    zc = torch.view_as_complex(z0.clone()).requires_grad_()
    zr = z0.clone().requires_grad_()
    opt_c, opt_r = AdamRAG([zc], fused=True), AdamRAG([zr], foreach=False)
    for t in range(1, 6):
        g = _grad(zr.detach(), t)
        zr.grad, zc.grad = g.clone(), torch.view_as_complex(g.clone())
        opt_c.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(zc.detach()), zr.detach(), atol=1e-6, rtol=1e-6)


def test_fused_handles_unaligned_parameters():
    base = torch.randn(5001, device="cuda")
    p_unaligned = base[1:].detach().requires_grad_()  # data_ptr 4 bytes past a 16-byte boundary
    assert p_unaligned.data_ptr() % 16 != 0
    p_ref = base[1:].clone().requires_grad_()
    opt_f, opt_r = AdamRAG([p_unaligned], fused=True), AdamRAG([p_ref], foreach=False)
    for t in range(1, 6):
        p_unaligned.grad = _grad(p_unaligned.detach(), t)
        p_ref.grad = _grad(p_ref.detach(), t)
        opt_f.step()
        opt_r.step()
    torch.testing.assert_close(p_unaligned.detach(), p_ref.detach(), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("path", ["foreach-capturable", "fused-capturable", "forloop-capturable"])
def test_cuda_graph_replay_matches_eager_forloop(path):
    gen = torch.Generator(device="cpu").manual_seed(2)
    init = [torch.randn(s, generator=gen).cuda() for s in SHAPES]
    hp = dict(lr=1e-2, gamma_schedule="nesterov", weight_decay=0.01, decoupled_weight_decay=True)
    params = [x.clone().requires_grad_() for x in init]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = AdamRAG(params, **hp, **PATHS[path])

    def load_grads(t):
        for p in params:
            p.grad.copy_(_grad(p.detach(), t))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for t in range(1, 4):
            load_grads(t)
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for t in range(4, 11):
        load_grads(t)
        graph.replay()
    torch.cuda.synchronize()

    ref = [x.clone().requires_grad_() for x in init]
    opt_ref = AdamRAG(ref, **hp, foreach=False)
    for t in range(1, 11):
        for p in ref:
            p.grad = _grad(p.detach(), t)
        opt_ref.step()
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach(), r.detach(), atol=2e-5, rtol=2e-5)
    assert float(opt.state[params[0]]["step"]) == 10.0


def test_swap_to_gradient_point_on_cuda_capturable_restores_exactly():
    _, opt, params = _run(dict(fused=True, capturable=True), steps=4)
    before = [p.detach().clone() for p in params]
    with opt.gradient_point():
        moved = [not torch.equal(p.detach(), b) for p, b in zip(params, before)]
    assert any(moved)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
