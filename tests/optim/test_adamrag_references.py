"""AdamRAG against independent references, for every implementation path (CPU).

References written here, not taken from the code under test:
- a float64 two-sequence recursion (w, y) straight from the README's AdamRAG section (no ravine buffer);
- torch.optim.Adam / AdamW (gamma = 0) and torch.optim.SGD(nesterov=True) (Adam step replaced by -lr g).

The fused Triton kernel runs here under Triton's interpreter (TRITON_INTERPRET=1, set below when
no CUDA device is present and before anything imports the kernel module); tests/optim/test_adamrag_cuda_paths.py
runs the CUDA paths.
"""

from __future__ import annotations

import copy
import io
import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from sensitivity.optim.adamrag import AdamRAG, adamrag  # noqa: E402

try:
    import triton  # noqa: F401

    _HAVE_TRITON = True
except ImportError:  # pragma: no cover
    _HAVE_TRITON = False

_FUSED_ON_CPU = _HAVE_TRITON and os.environ.get("TRITON_INTERPRET") == "1"

PATHS = {
    "forloop": dict(foreach=False),
    "foreach": dict(foreach=True),
    "forloop-capturable": dict(foreach=False, capturable=True),
    "foreach-capturable": dict(foreach=True, capturable=True),
    "fused-interpreted": dict(fused=True),
}


def _path_params(*, interpreted_is_slow: bool) -> list:
    """``PATHS`` as test parameters. Triton's interpreter runs a kernel in Python (seconds a test), so
    with ``interpreted_is_slow`` the interpreted fused path runs outside the quick loop (``-m "not slow"``)."""
    params = []
    for name in PATHS:
        marks = [pytest.mark.skipif(name.startswith("fused") and not _FUSED_ON_CPU,
                                    reason="Triton interpreter not active")]
        if interpreted_is_slow and name == "fused-interpreted":
            marks.append(pytest.mark.slow)
        params.append(pytest.param(name, marks=marks))
    return params


ALL_PATHS = _path_params(interpreted_is_slow=True)
"""Every path; the interpreted fused one is slow (the quick loop checks it against the forloop path)."""

SHAPES = [(4, 3), (5,), (2, 3, 2)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to other processes on a 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# A fixed smooth objective and its gradient, written out by hand: f(y) = sum(a y^2 / 2 - cos y) + c_t . y
# --------------------------------------------------------------------------------------------
def _initial_points(dtype=torch.float32, seed=0, shapes=SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def _curvatures(shapes=SHAPES) -> list[torch.Tensor]:
    return [torch.linspace(0.5, 2.0, math.prod(s), dtype=torch.float64).reshape(s) for s in shapes]


def _grad(y: torch.Tensor, a: torch.Tensor, t: int) -> torch.Tensor:
    """Gradient of a y^2/2 - cos(y) + 0.1 cos(t) y, in y's precision."""
    return a.to(y.dtype) * y + torch.sin(y) + 0.1 * math.cos(t)


def _run_optimizer(make, steps: int, dtype=torch.float32, init=None, grad_scale: float = 1.0):
    """Step an optimizer built by ``make(params)`` on the objective; return params after each step."""
    init = _initial_points(dtype) if init is None else init
    params = [x.clone().requires_grad_() for x in init]
    a = _curvatures([tuple(x.shape) for x in init])
    opt = make(params)
    out = []
    for t in range(1, steps + 1):
        for p, ai in zip(params, a):
            p.grad = _grad(p.detach(), ai, t) * grad_scale
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out, opt, params


def _gamma_schedule(kind: str, gamma: float, a: float = 3.0, gamma_max: float | None = None):
    def at(t: int) -> float:
        if t < 1:
            return 0.0
        if kind == "constant":
            return gamma
        g = (t - 1) / (t + a - 1)
        return g if gamma_max is None else min(g, gamma_max)

    return at


def _reference(
    steps: int,
    *,
    lr=1e-2,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled=False,
    maximize=False,
    amsgrad=False,
    gamma_at=None,
    init=None,
    return_w=False,
):
    """Float64 two-sequence recursion of the README's AdamRAG section: w_t = y_t + Adam step, y_{t+1} = w_t + gamma_t (w_t - w_{t-1})."""
    b1, b2 = betas
    ys = [x.double().clone() for x in (_initial_points() if init is None else init)]
    a = _curvatures([tuple(x.shape) for x in ys])
    w_prev = [y.clone() for y in ys]  # w_0 = y_1
    m = [torch.zeros_like(y) for y in ys]
    v = [torch.zeros_like(y) for y in ys]
    vmax = [torch.zeros_like(y) for y in ys]
    traj, ws = [], []
    for t in range(1, steps + 1):
        new_y, new_w = [], []
        for i, y in enumerate(ys):
            g = _grad(y, a[i], t)
            if maximize:
                g = -g
            if weight_decay and not decoupled:
                g = g + weight_decay * y
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            vmax[i] = torch.maximum(vmax[i], v[i])
            second = vmax[i] if amsgrad else v[i]
            w = y - lr * (m[i] / (1 - b1**t)) / (torch.sqrt(second / (1 - b2**t)) + eps)
            if weight_decay and decoupled:
                w = w - lr * weight_decay * y
            new_y.append(w + gamma_at(t) * (w - w_prev[i]))
            new_w.append(w)
        ys, w_prev = new_y, new_w
        traj.append([y.clone() for y in ys])
        ws.append([w.clone() for w in new_w])
    return (traj, ws) if return_w else traj


def _assert_close_traj(got, want, atol, rtol=0.0):
    for t, (gs, ws) in enumerate(zip(got, want), start=1):
        for g, w in zip(gs, ws):
            torch.testing.assert_close(g.double(), w.double(), atol=atol, rtol=rtol, msg=lambda m: f"step {t}: {m}")


# --------------------------------------------------------------------------------------------
# Invariant: gamma = 0 is torch Adam (coupled decay) / AdamW (decoupled), maximize too, step for step
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize(
    "decay",
    [
        pytest.param(dict(weight_decay=0.0), id="no-decay"),
        pytest.param(dict(weight_decay=0.1), id="coupled"),
        pytest.param(dict(weight_decay=0.1, decoupled_weight_decay=True), id="decoupled"),
    ],
)
@pytest.mark.parametrize("maximize", [False, True], ids=["min", "max"])
def test_gamma_zero_is_torch_adam_or_adamw_step_for_step(path, decay, maximize):
    steps = 12
    flags = PATHS[path]
    amsgrad = maximize  # cover amsgrad in half of the cases
    got, _, _ = _run_optimizer(
        lambda ps: AdamRAG(ps, lr=1e-2, gamma=0.0, maximize=maximize, amsgrad=amsgrad, **decay, **flags), steps
    )
    torch_cls = torch.optim.AdamW if decay.get("decoupled_weight_decay") else torch.optim.Adam
    want, _, _ = _run_optimizer(
        lambda ps: torch_cls(
            ps, lr=1e-2, weight_decay=decay["weight_decay"], maximize=maximize, amsgrad=amsgrad, foreach=False
        ),
        steps,
    )
    _assert_close_traj(got, want, atol=2e-6)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_nesterov_schedule_capped_at_zero_is_torch_adam(path):
    got, _, _ = _run_optimizer(
        lambda ps: AdamRAG(ps, lr=1e-2, gamma_schedule="nesterov", gamma_max=0.0, **PATHS[path]), 8
    )
    want, _, _ = _run_optimizer(lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False), 8)
    _assert_close_traj(got, want, atol=2e-6)


# --------------------------------------------------------------------------------------------
# Invariant: the buffer form equals the literal two-sequence recursion, constant and scheduled gamma
# --------------------------------------------------------------------------------------------
REFERENCE_CASES = {
    "constant": dict(hp=dict(gamma=0.5), sched=("constant", 0.5, 3.0, None)),
    "constant-0.9-betas": dict(hp=dict(gamma=0.9, betas=(0.8, 0.99)), sched=("constant", 0.9, 3.0, None)),
    "nesterov": dict(hp=dict(gamma_schedule="nesterov"), sched=("nesterov", 0.0, 3.0, None)),
    "nesterov-a5-capped": dict(
        hp=dict(gamma_schedule="nesterov", nesterov_a=5.0, gamma_max=0.6), sched=("nesterov", 0.0, 5.0, 0.6)
    ),
    "coupled-decay-maximize": dict(
        hp=dict(gamma=0.7, weight_decay=0.05, maximize=True), sched=("constant", 0.7, 3.0, None)
    ),
    "decoupled-decay-amsgrad": dict(
        hp=dict(gamma=0.3, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True),
        sched=("constant", 0.3, 3.0, None),
    ),
}


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_buffer_form_equals_two_sequence_recursion(path, case):
    hp, (kind, gamma, a, gmax) = REFERENCE_CASES[case]["hp"], REFERENCE_CASES[case]["sched"]
    steps = 25
    got, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, lr=1e-2, **hp, **PATHS[path]), steps)
    want = _reference(
        steps,
        lr=1e-2,
        betas=hp.get("betas", (0.9, 0.999)),
        weight_decay=hp.get("weight_decay", 0.0),
        decoupled=hp.get("decoupled_weight_decay", False),
        maximize=hp.get("maximize", False),
        amsgrad=hp.get("amsgrad", False),
        gamma_at=_gamma_schedule(kind, gamma, a, gmax),
    )
    _assert_close_traj(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("path", [p for p in _path_params(interpreted_is_slow=False) if p.values[0] != "forloop"])
def test_paths_agree_with_the_forloop_path(path):
    hp = dict(lr=3e-2, gamma=0.6, weight_decay=0.01, decoupled_weight_decay=True, amsgrad=True)
    got, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, **hp, **PATHS[path]), 15)
    want, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, **hp, foreach=False), 15)
    _assert_close_traj(got, want, atol=1e-6, rtol=1e-6)


def test_steady_state_step_is_lr_over_one_minus_gamma():
    """Constant gradient sign: Adam's step tends to -lr, AdamRAG's to -lr / (1 - gamma)."""
    p = torch.zeros(1, requires_grad=True)
    opt = AdamRAG([p], lr=1e-3, gamma=0.5)
    prev = p.detach().clone()
    for _ in range(200):
        p.grad = torch.ones(1)
        opt.step()
        move, prev = (p.detach() - prev).item(), p.detach().clone()
    assert move == pytest.approx(-1e-3 / (1 - 0.5), rel=1e-4)


# --------------------------------------------------------------------------------------------
# Invariant: replacing Adam's step by delta = -lr g gives SGD(momentum=gamma, nesterov=True)
# --------------------------------------------------------------------------------------------
def _run_functional_sgd_direction(path: str, steps: int, lr: float, gamma: float, weight_decay: float):
    flags = PATHS[path]
    fused = flags.get("fused", False)
    params = [x.clone() for x in _initial_points()]
    a = _curvatures()
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    d = [torch.zeros_like(p) for p in params]
    step_t = [torch.zeros((), dtype=torch.float32) for _ in params]
    out = []
    for t in range(1, steps + 1):
        grads = [_grad(p, ai, t) for p, ai in zip(params, a)]
        adamrag(
            params, grads, m, v, [], d, step_t,
            foreach=flags.get("foreach", False), fused=fused, capturable=flags.get("capturable", False),
            amsgrad=False, beta1=0.9, beta2=0.999, lr=lr, weight_decay=weight_decay,
            decoupled_weight_decay=False, eps=1e-8, maximize=False, gamma=gamma,
            gamma_schedule="constant", nesterov_a=3.0, gamma_max=None, _direction="sgd",
        )  # fmt: skip
        out.append([p.clone() for p in params])
    return out


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_direction_reproduces_nesterov_sgd(path, weight_decay):
    got = _run_functional_sgd_direction(path, 15, lr=0.05, gamma=0.8, weight_decay=weight_decay)
    want, _, _ = _run_optimizer(
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, weight_decay=weight_decay), 15
    )
    _assert_close_traj(got, want, atol=2e-6)


# --------------------------------------------------------------------------------------------
# Invariants: zero gradients; loss scaling with eps = 0
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_PATHS)
def test_zero_gradients_from_the_start_leave_params_and_buffer_unchanged(path):
    init = _initial_points()
    params = [x.clone().requires_grad_() for x in init]
    opt = AdamRAG(params, lr=0.1, gamma=0.9, **PATHS[path])
    for _ in range(5):
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
    for p, x in zip(params, init):
        assert torch.equal(p.detach(), x)
        assert torch.count_nonzero(opt.state[p]["ravine_buf"]) == 0


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("scale", [4.0, 1 / 64, 3.7])
def test_loss_scaling_leaves_the_path_unchanged_with_eps_zero(path, scale):
    hp = dict(lr=1e-2, eps=0.0, gamma=0.5, **PATHS[path])
    got, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, **hp), 10, grad_scale=scale)
    want, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, **hp), 10)
    if math.log2(scale) % 2 == 0:  # a power of 4: every operation scales exactly
        for gs, ws in zip(got, want):
            assert all(torch.equal(g, w) for g, w in zip(gs, ws))
    else:
        _assert_close_traj(got, want, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Invariant: state_dict save/load mid-run continues the identical trajectory
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_PATHS)
def test_state_dict_roundtrip_mid_run_continues_identically(path):
    hp = dict(lr=2e-2, gamma_schedule="nesterov", weight_decay=0.01, amsgrad=True, **PATHS[path])
    a = _curvatures()
    params = [x.clone().requires_grad_() for x in _initial_points()]
    opt = AdamRAG(params, **hp)

    def advance(ps, o, t0, n):
        for t in range(t0, t0 + n):
            for p, ai in zip(ps, a):
                p.grad = _grad(p.detach(), ai, t)
            o.step()

    advance(params, opt, 1, 6)
    buf = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()}, buf)
    advance(params, opt, 7, 6)

    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    params2 = [x.clone().requires_grad_() for x in saved["params"]]
    opt2 = AdamRAG(params2, lr=123.0, gamma=0.1)  # hyperparameters come from the state dict
    opt2.load_state_dict(saved["opt"])
    advance(params2, opt2, 7, 6)
    for p, q in zip(params, params2):
        assert torch.equal(p.detach(), q.detach())
        for key in ("exp_avg", "exp_avg_sq", "ravine_buf", "max_exp_avg_sq"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])
        assert float(opt.state[p]["step"]) == float(opt2.state[q]["step"]) == 12.0


# --------------------------------------------------------------------------------------------
# Parameter groups, weight decay modes, dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_PATHS)
def test_param_groups_use_their_own_lr_betas_and_gamma(path):
    init = _initial_points()
    hp0 = dict(lr=1e-2, betas=(0.9, 0.999), gamma=0.5)
    hp1 = dict(lr=3e-2, betas=(0.5, 0.9), gamma_schedule="nesterov", weight_decay=0.1, decoupled_weight_decay=True)
    params = [x.clone().requires_grad_() for x in init]
    opt = AdamRAG([{"params": params[:2]}, {"params": params[2:], **hp1}], **hp0, **PATHS[path])
    a = _curvatures()
    for t in range(1, 11):
        for p, ai in zip(params, a):
            p.grad = _grad(p.detach(), ai, t)
        opt.step()
    ref0 = _reference(10, lr=1e-2, gamma_at=_gamma_schedule("constant", 0.5), init=init)[-1]
    ref1 = _reference(
        10, lr=3e-2, betas=(0.5, 0.9), weight_decay=0.1, decoupled=True,
        gamma_at=_gamma_schedule("nesterov", 0.0), init=init,
    )[-1]  # fmt: skip
    for i, p in enumerate(params):
        want = ref0[i] if i < 2 else ref1[i]
        torch.testing.assert_close(p.detach().double(), want, atol=2e-5, rtol=1e-5)


def test_coupled_and_decoupled_weight_decay_differ_as_documented():
    """After one step from m = v = 0: coupled decay enters g (and is normalised); decoupled is -lr wd y."""
    y0 = torch.tensor([2.0, -1.0])
    g = torch.tensor([0.5, 0.25])
    lr, wd = 0.1, 0.5
    out = {}
    for decoupled in (False, True):
        p = y0.clone().requires_grad_()
        opt = AdamRAG([p], lr=lr, weight_decay=wd, decoupled_weight_decay=decoupled, eps=0.0, gamma=0.5)
        p.grad = g.clone()
        opt.step()
        out[decoupled] = p.detach()
    # step 1: delta = -lr sign(g_eff) (Adam's first step with eps = 0), d_1 = delta, y_2 = y_1 + (1 + gamma) delta
    coupled_delta = -lr * torch.sign(g + wd * y0)
    decoupled_delta = -lr * torch.sign(g) - lr * wd * y0
    torch.testing.assert_close(out[False], y0 + 1.5 * coupled_delta)
    torch.testing.assert_close(out[True], y0 + 1.5 * decoupled_delta)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_bfloat16_params_with_fp32_state(path):
    init = _initial_points(torch.bfloat16)
    got, opt, params = _run_optimizer(
        lambda ps: AdamRAG(ps, lr=1e-2, fp32_state=True, **PATHS[path]), 10, dtype=torch.bfloat16, init=init
    )
    for p in params:
        assert p.dtype == torch.bfloat16
        for key in ("exp_avg", "exp_avg_sq", "ravine_buf"):
            assert opt.state[p][key].dtype == torch.float32
    # bf16 rounding of y after every step: within a few bf16 ulps of the float64 recursion
    want = _reference(10, lr=1e-2, gamma_at=_gamma_schedule("constant", 0.5), init=init)
    for g, w in zip(got[-1], want[-1]):
        torch.testing.assert_close(g.double(), w, atol=4e-2, rtol=2e-2)
    # and the fp32 state survives a state_dict round trip in fp32
    opt2 = AdamRAG([p.detach().clone().requires_grad_() for p in params], fp32_state=True, **PATHS[path])
    opt2.load_state_dict(opt.state_dict())
    for p, q in zip(params, opt2.param_groups[0]["params"]):
        assert opt2.state[q]["exp_avg_sq"].dtype == torch.float32
        assert torch.equal(opt2.state[q]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def test_bfloat16_params_without_fp32_state_keep_state_in_bfloat16():
    p = torch.randn(3, dtype=torch.bfloat16, requires_grad=True)
    opt = AdamRAG([p])
    p.grad = torch.ones_like(p)
    with pytest.warns(UserWarning, match=r"beta2=0\.999.*pass fp32_state=True"):
        opt.step()
    assert opt.state[p]["ravine_buf"].dtype == torch.bfloat16


@pytest.mark.parametrize("path", ALL_PATHS)
def test_complex_params_follow_their_real_view(path):
    """As torch Adam: a complex tensor is optimised as the real tensor of its (re, im) pairs."""
    gen = torch.Generator().manual_seed(3)
    z0 = torch.randn(4, 2, generator=gen)
    zc = torch.view_as_complex(z0.clone()).requires_grad_()
    zr = z0.clone().requires_grad_()
    hp = dict(lr=1e-2, gamma=0.6, weight_decay=0.01, amsgrad=True, **PATHS[path])
    opt_c, opt_r = AdamRAG([zc], **hp), AdamRAG([zr], **hp)
    for t in range(1, 9):
        g = torch.sin(zr.detach() * t) + 0.3
        zr.grad = g.clone()
        zc.grad = torch.view_as_complex(g.clone())
        opt_c.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(zc.detach()), zr.detach(), atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Arguments and refusals
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(lr=-1e-3), "-0.001"),
        (dict(lr=float("nan")), "nan"),
        (dict(lr=float("inf")), "inf"),
        (dict(betas=(1.0, 0.999)), "1.0"),
        (dict(betas=(0.9, -0.1)), "-0.1"),
        (dict(betas=(0.9,)), "(0.9,)"),
        (dict(eps=-1e-8), "-1e-08"),
        (dict(gamma=1.0), "1.0"),
        (dict(gamma=-0.5), "-0.5"),
        (dict(weight_decay=-0.1), "-0.1"),
        (dict(gamma_schedule="cosine"), "cosine"),
        (dict(nesterov_a=2.5), "2.5"),
        (dict(gamma_max=1.0), "1.0"),
        (dict(lr="fast"), "fast"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_value(kwargs, bad):
    with pytest.raises(ValueError) as err:
        AdamRAG([torch.zeros(2, requires_grad=True)], **kwargs)
    assert bad in str(err.value)


def test_param_group_with_invalid_gamma_is_refused():
    opt = AdamRAG([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="gamma.*1.5"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "gamma": 1.5})
    assert len(opt.param_groups) == 1  # the refused group was not added


def test_fused_with_foreach_or_differentiable_is_refused():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="foreach"):
        AdamRAG([p], fused=True, foreach=True)
    with pytest.raises(RuntimeError, match="differentiable"):
        AdamRAG([p], fused=True, differentiable=True)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_sparse_gradients_are_refused_with_a_clear_error(path):
    p = torch.zeros(4, 2, requires_grad=True)
    opt = AdamRAG([p], **PATHS[path])
    p.grad = torch.sparse_coo_tensor([[0, 2]], torch.ones(2, 2), (4, 2), check_invariants=True)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of the fused path")
def test_fused_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    p = torch.zeros(2, requires_grad=True)
    opt = AdamRAG([p], fused=True)
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="CUDA"):
        opt.step()


def test_default_path_is_forloop_on_cpu_as_torch_adam(monkeypatch):
    import sensitivity.optim.adamrag as mod

    called = []
    monkeypatch.setattr(mod, "_single_tensor_adamrag", lambda *a, **k: called.append("forloop"))
    monkeypatch.setattr(mod, "_multi_tensor_adamrag", lambda *a, **k: called.append("foreach"))
    p = torch.zeros(2, requires_grad=True)
    opt = AdamRAG([p])
    p.grad = torch.ones(2)
    opt.step()
    assert called == ["forloop"]


def test_differentiable_step_matches_and_passes_gradients():
    """differentiable=True gives the same update, and autograd sees through it (as torch's optimizers)."""
    x0 = torch.tensor([1.0, -2.0, 0.5])
    plain, _, _ = _run_optimizer(lambda ps: AdamRAG(ps, lr=0.1), 3, init=[x0])
    leaf = x0.clone().requires_grad_()
    p = leaf.clone()  # a non-leaf parameter, so the step can be differentiated w.r.t. the leaf
    opt = AdamRAG([p], lr=0.1, differentiable=True)
    a = _curvatures([(3,)])[0]
    for t in range(1, 4):
        p.grad = _grad(p.detach(), a, t)
        opt.step()
    torch.testing.assert_close(p.detach(), plain[-1][0], atol=1e-6, rtol=1e-6)
    (p.sum()).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


# --------------------------------------------------------------------------------------------
# The gradient-step point w_t
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("schedule", ["constant", "nesterov"])
def test_swap_to_gradient_point_gives_w_and_restores_y_exactly(path, schedule):
    hp = dict(lr=1e-2, gamma=0.5, gamma_schedule=schedule)
    _, opt, params = _run_optimizer(lambda ps: AdamRAG(ps, **hp, **PATHS[path]), 7)
    _, ws = _reference(7, lr=1e-2, gamma_at=_gamma_schedule(schedule, 0.5), return_w=True)
    before = [p.detach().clone() for p in params]
    with opt.gradient_point():
        for p, w in zip(params, ws[-1]):
            torch.testing.assert_close(p.detach().double(), w, atol=2e-5, rtol=1e-5)
        with pytest.raises(RuntimeError, match="gradient-step point"):
            opt.step()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    opt.swap_to_gradient_point()
    with pytest.raises(RuntimeError, match="already"):
        opt.swap_to_gradient_point()
    opt.swap_to_extrapolated_point()
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    with pytest.raises(RuntimeError, match="not at the gradient-step point"):
        opt.swap_to_extrapolated_point()


# --------------------------------------------------------------------------------------------
# Progress on real non-convex problems at default settings
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_makes_progress_on_rosenbrock_at_default_settings():
    """Rosenbrock's banana from (-1.5, 2): f = (1 - x)^2 + 100 (y - x^2)^2, gradient written out by hand."""
    xy = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = AdamRAG([xy])  # lr=1e-3, betas=(0.9, 0.999), gamma=0.5

    def f(x, y):
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    start = f(*xy.detach()).item()
    for _ in range(5000):
        x, y = xy.detach()
        xy.grad = torch.stack([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
        opt.step()
    assert f(*xy.detach()).item() < 0.01 * start
    assert torch.linalg.vector_norm(xy.detach() - 1.0) < 0.35  # started 3.2 away from the minimum (1, 1)


def test_makes_progress_on_a_small_mlp_at_default_settings():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3]
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = AdamRAG(model.parameters())
    start = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * start
    with opt.gradient_point():
        at_w = torch.nn.functional.mse_loss(model(x), y).item()
    assert at_w < 0.5 * start


def test_state_holds_the_documented_buffers():
    p = torch.zeros(3, requires_grad=True)
    opt = AdamRAG([p], amsgrad=True)
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq", "ravine_buf", "max_exp_avg_sq"}
    assert copy.deepcopy(opt.state_dict())["param_groups"][0]["gamma"] == 0.5


@pytest.mark.parametrize("workspaces", [False, True], ids=["allocating", "workspace"])
def test_functional_foreach_with_and_without_workspaces_matches_forloop(workspaces):
    """The for-each core as used on CUDA (allocating temporaries) and on CPU (persistent scratch)."""

    def run(foreach):
        params = [x.clone() for x in _initial_points()]
        state = [[torch.zeros_like(p) for p in params] for _ in range(4)]
        steps = [torch.tensor(0.0) for _ in params]
        ws = [torch.empty_like(p) for p in params] if foreach and workspaces else None
        for t in range(1, 8):
            grads = [_grad(p, a, t) for p, a in zip(params, _curvatures())]
            adamrag(
                params, grads, state[0], state[1], state[2], state[3], steps, foreach=foreach, workspaces=ws,
                amsgrad=True, beta1=0.9, beta2=0.99, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=False,
                eps=1e-8, maximize=True, gamma=0.6, gamma_schedule="constant", nesterov_a=3.0, gamma_max=None,
            )  # fmt: skip
        return params

    for got, want in zip(run(True), run(False)):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
