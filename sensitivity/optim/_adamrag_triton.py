"""The fused AdamRAG step: one Triton kernel launch per (device, param dtype, state dtype) group.

Private module behind ``AdamRAG(fused=True)``. Every parameter of a group is updated by the same
launch: a table of data pointers (param, grad, exp_avg, exp_avg_sq, ravine_buf, step, max_exp_avg_sq)
and a block -> tensor map tell each program which tensor and which BLOCK-sized slice it owns.
Each element is read once and written once: gradient, m, v, d and the parameter read, m, v, d and
the parameter written -- 36 bytes per float32 parameter against fused Adam's 28.

The step counters stay on the device (as torch's fused Adam): the bias corrections and gamma_t
are computed inside the kernel, so a step launches two kernels (``_foreach_add_`` on the steps and
this one), never synchronises with the host, and can be captured in a CUDA graph once the pointer
table is cached (it is rebuilt, with a host-to-device copy, only when a tensor's address changes:
warm up before capturing, as for any CUDA graph).

On a machine without CUDA the same kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``)
on CPU tensors; the tests use that. Interpreter results say nothing about speed.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict

import torch
from torch import Tensor

import triton
import triton.language as tl

__all__ = ["fused_adamrag"]

_BLOCK = int(os.environ.get("ADAMRAG_FUSED_BLOCK", "2048"))
_NUM_WARPS = int(os.environ.get("ADAMRAG_FUSED_WARPS", "8"))
_TABLE_CACHE_SIZE = 16

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _expm1_neg(x):
    """exp(x) - 1 for x <= 0 without cancellation near 0 (1 - beta^t for beta^t close to 1)."""
    taylor = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x * (1.0 / 720.0))))))
    return tl.where(x > -0.0625, taylor, tl.exp(x) - 1.0)


@triton.jit
def _gamma_at(t, gamma, nesterov_a, gamma_max, NESTEROV: tl.constexpr, HAS_GAMMA_MAX: tl.constexpr):
    """gamma_t; gamma_0 = 0 (t is a float step count)."""
    if NESTEROV:
        g = tl.maximum((t - 1.0) / (t + nesterov_a - 1.0), 0.0)
        if HAS_GAMMA_MAX:
            g = tl.minimum(g, gamma_max)
    else:
        g = tl.where(t >= 1.0, gamma, 0.0)
    return g


@triton.jit
def _adamrag_slice(
    p_ptr, g_ptr, m_ptr, v_ptr, d_ptr, vmax_ptr, offs, mask,
    lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, gamma_t, gamma_prev,
    P_DTYPE: tl.constexpr, S_DTYPE: tl.constexpr, MASKED: tl.constexpr,
    MAXIMIZE: tl.constexpr, AMSGRAD: tl.constexpr, COUPLED_WD: tl.constexpr,
    DECOUPLED_WD: tl.constexpr, SGD_DIRECTION: tl.constexpr,
):
    if MASKED:
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        d = tl.load(d_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        g = tl.load(g_ptr + offs).to(tl.float32)
        p = tl.load(p_ptr + offs).to(tl.float32)
        d = tl.load(d_ptr + offs).to(tl.float32)
    if MAXIMIZE:
        g = -g
    if COUPLED_WD:
        g = g + weight_decay * p
    if SGD_DIRECTION:
        delta = -lr * g
    else:
        if MASKED:
            m = tl.load(m_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + offs, mask=mask, other=1.0).to(tl.float32)
        else:
            m = tl.load(m_ptr + offs).to(tl.float32)
            v = tl.load(v_ptr + offs).to(tl.float32)
        # m.lerp_(g, 1 - beta1), with torch's two-sided lerp formula
        w = 1.0 - beta1
        m = tl.where(w < 0.5, m + w * (g - m), g - (g - m) * (1.0 - w))
        v = v * beta2 + (1.0 - beta2) * (g * g)
        if AMSGRAD:
            if MASKED:
                vmax = tl.load(vmax_ptr + offs, mask=mask, other=1.0).to(tl.float32)
            else:
                vmax = tl.load(vmax_ptr + offs).to(tl.float32)
            vmax = tl.maximum(vmax, v)
            second = vmax
            if MASKED:
                tl.store(vmax_ptr + offs, vmax.to(S_DTYPE), mask=mask)
            else:
                tl.store(vmax_ptr + offs, vmax.to(S_DTYPE))
        else:
            second = v
        denom = tl.sqrt_rn(second) / bc2_sqrt + eps
        delta = tl.div_rn(m, denom) * (-step_size)
        if MASKED:
            tl.store(m_ptr + offs, m.to(S_DTYPE), mask=mask)
            tl.store(v_ptr + offs, v.to(S_DTYPE), mask=mask)
        else:
            tl.store(m_ptr + offs, m.to(S_DTYPE))
            tl.store(v_ptr + offs, v.to(S_DTYPE))
    if DECOUPLED_WD:
        delta = delta - (lr * weight_decay) * p
    d = gamma_prev * d + delta
    p = p + (delta + gamma_t * d)
    if MASKED:
        tl.store(d_ptr + offs, d.to(S_DTYPE), mask=mask)
        tl.store(p_ptr + offs, p.to(P_DTYPE), mask=mask)
    else:
        tl.store(d_ptr + offs, d.to(S_DTYPE))
        tl.store(p_ptr + offs, p.to(P_DTYPE))


@triton.jit(do_not_specialize=["K"])
def _adamrag_kernel(
    ptr_table,  # int64 [7, K]: param, grad, exp_avg, exp_avg_sq, ravine_buf, step, max_exp_avg_sq
    numels,  # int64 [K]: elements of each (real-viewed) tensor
    block_tensor,  # int32 [n_blocks]: which tensor block b belongs to
    block_first,  # int32 [K]: first block of each tensor
    K,
    lr, beta1, beta2, log_beta1, log_beta2, eps, weight_decay, gamma, nesterov_a, gamma_max,
    P_DTYPE: tl.constexpr, S_DTYPE: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
    MAXIMIZE: tl.constexpr, AMSGRAD: tl.constexpr, COUPLED_WD: tl.constexpr,
    DECOUPLED_WD: tl.constexpr, NESTEROV: tl.constexpr, HAS_GAMMA_MAX: tl.constexpr,
    SGD_DIRECTION: tl.constexpr,
):
    pid = tl.program_id(0)
    ti = tl.load(block_tensor + pid)
    local = (pid - tl.load(block_first + ti)).to(tl.int64)
    n = tl.load(numels + ti)
    start = local * BLOCK
    offs = start + tl.arange(0, BLOCK)

    p_ptr = tl.load(ptr_table + ti).to(tl.pointer_type(P_DTYPE))
    g_ptr = tl.load(ptr_table + K + ti).to(tl.pointer_type(P_DTYPE))
    m_ptr = tl.load(ptr_table + 2 * K + ti).to(tl.pointer_type(S_DTYPE))
    v_ptr = tl.load(ptr_table + 3 * K + ti).to(tl.pointer_type(S_DTYPE))
    d_ptr = tl.load(ptr_table + 4 * K + ti).to(tl.pointer_type(S_DTYPE))
    step_ptr = tl.load(ptr_table + 5 * K + ti).to(tl.pointer_type(tl.float32))
    vmax_ptr = tl.load(ptr_table + 6 * K + ti).to(tl.pointer_type(S_DTYPE))
    if ALIGNED:  # every address is 16-byte aligned (checked on the host): vector loads
        p_ptr = tl.multiple_of(p_ptr, 16)
        g_ptr = tl.multiple_of(g_ptr, 16)
        m_ptr = tl.multiple_of(m_ptr, 16)
        v_ptr = tl.multiple_of(v_ptr, 16)
        d_ptr = tl.multiple_of(d_ptr, 16)
        vmax_ptr = tl.multiple_of(vmax_ptr, 16)
        offs = tl.max_contiguous(tl.multiple_of(offs, BLOCK), BLOCK)

    # Step-dependent scalars, from the (already incremented) step on the device.
    t = tl.load(step_ptr)
    bias_correction1 = -_expm1_neg(t * log_beta1)  # 1 - beta1^t
    bias_correction2 = -_expm1_neg(t * log_beta2)  # 1 - beta2^t
    step_size = lr / bias_correction1
    bc2_sqrt = tl.sqrt_rn(bias_correction2)
    gamma_t = _gamma_at(t, gamma, nesterov_a, gamma_max, NESTEROV, HAS_GAMMA_MAX)
    gamma_prev = _gamma_at(t - 1.0, gamma, nesterov_a, gamma_max, NESTEROV, HAS_GAMMA_MAX)

    if start + BLOCK <= n:
        _adamrag_slice(
            p_ptr, g_ptr, m_ptr, v_ptr, d_ptr, vmax_ptr, offs, None,
            lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, gamma_t, gamma_prev,
            P_DTYPE, S_DTYPE, False, MAXIMIZE, AMSGRAD, COUPLED_WD, DECOUPLED_WD, SGD_DIRECTION,
        )
    else:
        _adamrag_slice(
            p_ptr, g_ptr, m_ptr, v_ptr, d_ptr, vmax_ptr, offs, offs < n,
            lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, gamma_t, gamma_prev,
            P_DTYPE, S_DTYPE, True, MAXIMIZE, AMSGRAD, COUPLED_WD, DECOUPLED_WD, SGD_DIRECTION,
        )


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------
class _Tables:
    """Device-side pointer table and block map for one set of tensors (kept alive while cached)."""

    __slots__ = ("ptr_table", "numels", "block_tensor", "block_first", "n_blocks", "k", "aligned")

    def __init__(self, ptrs: list[list[int]], numels: list[int], device: torch.device, block: int) -> None:
        self.k = len(numels)
        self.aligned = all(x % 16 == 0 for row in ptrs for x in row)
        blocks = [max(1, -(-n // block)) for n in numels]
        first, acc = [], 0
        for b in blocks:
            first.append(acc)
            acc += b
        self.n_blocks = acc
        block_tensor = torch.repeat_interleave(torch.arange(self.k, dtype=torch.int32), torch.tensor(blocks))
        host = [
            torch.tensor([x for row in ptrs for x in row], dtype=torch.int64),
            torch.tensor(numels, dtype=torch.int64),
            block_tensor,
            torch.tensor(first, dtype=torch.int32),
        ]
        if device.type == "cuda":
            if torch.cuda.is_current_stream_capturing():
                raise RuntimeError(
                    "AdamRAG(fused=True): a parameter, gradient or state tensor moved while a CUDA graph was "
                    "being captured; run a few optimizer steps before capturing so the pointer table is cached"
                )
            host = [h.pin_memory().to(device, non_blocking=True) for h in host]
        self.ptr_table, self.numels, self.block_tensor, self.block_first = host


_tables: OrderedDict[tuple, _Tables] = OrderedDict()


def _get_tables(rows: list[list[Tensor]], device: torch.device, block: int) -> _Tables:
    """The cached tables for these tensors: keyed by every address and size, so any move rebuilds them.

    Layout checks (dense tensors, gradient and state strides equal to the parameter's) run when a
    table is built; autograd gives gradients their parameter's strides, so a cached table stays valid.
    """
    ptrs = [[t.data_ptr() for t in row] for row in rows]
    numels = [t.numel() for t in rows[0]]
    key = (device, block, tuple(numels), *(tuple(r) for r in ptrs))
    tables = _tables.get(key)
    if tables is None:
        for j, p in enumerate(rows[0]):
            _check_dense(p, [row[j] for row in rows[1:5]] + [rows[6][j]])
            if rows[5][j].device != device:
                raise RuntimeError("AdamRAG(fused=True) keeps `step` on the parameter's device; got a host step")
        tables = _Tables(ptrs, numels, device, block)
        _tables[key] = tables
        while len(_tables) > _TABLE_CACHE_SIZE:
            _tables.popitem(last=False)
    else:
        _tables.move_to_end(key)
    return tables


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _check_dense(p: Tensor, others: list[Tensor]) -> None:
    """Elementwise over ``numel`` elements from ``data_ptr`` is right only for dense, equally strided tensors."""
    if not (p.is_contiguous() or p.is_non_overlapping_and_dense()):
        raise RuntimeError(
            f"AdamRAG(fused=True) needs dense parameters; got one of shape {tuple(p.shape)} and strides "
            f"{p.stride()}; use foreach=True"
        )
    for o in others:
        if o.stride() != p.stride():
            raise RuntimeError(
                f"AdamRAG(fused=True): a state or gradient tensor's strides {o.stride()} differ from its "
                f"parameter's {p.stride()}"
            )


def fused_adamrag(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    ravine_bufs: list[Tensor],
    state_steps: list[Tensor],
    *,
    amsgrad: bool,
    has_complex: bool,
    beta1: float,
    beta2: float,
    lr: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    eps: float,
    maximize: bool,
    gamma: float,
    gamma_schedule: str,
    nesterov_a: float,
    gamma_max: float | None,
    capturable: bool,
    differentiable: bool,
    _direction: str = "adam",
) -> None:
    """Fused AdamRAG (see :class:`sensitivity.optim.AdamRAG`); steps are float32 tensors on the device.

    Raises:
        RuntimeError: differentiable=True, non-dense parameters, a step on another device, or a
            pointer table that must be rebuilt during CUDA-graph capture.
    """
    if not params:
        return
    if differentiable:
        raise RuntimeError("AdamRAG with fused=True does not support differentiable=True")
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault((p.device, p.dtype, exp_avgs[i].dtype), []).append(i)
    log_b1 = math.log(beta1) if beta1 > 0 else -math.inf
    log_b2 = math.log(beta2) if beta2 > 0 else -math.inf
    single = len(groups) == 1
    for (device, p_dtype, s_dtype), idx in groups.items():
        if single:
            rows = [params, grads, exp_avgs, exp_avg_sqs, ravine_bufs, state_steps]
        else:
            rows = [[lst[i] for i in idx] for lst in (params, grads, exp_avgs, exp_avg_sqs, ravine_bufs, state_steps)]
        rows.append(([max_exp_avg_sqs[i] for i in idx] if not single else max_exp_avg_sqs) if amsgrad else rows[4])
        if has_complex:
            rows = [[_real(t) for t in row] if j != 5 else row for j, row in enumerate(rows)]
        steps = rows[5]
        if steps[0].device != device:
            raise RuntimeError("AdamRAG(fused=True) keeps `step` on the parameter's device; got a host step")
        torch._foreach_add_(steps, 1)
        tables = _get_tables(rows, device, _BLOCK)
        real_dtype = rows[0][0].dtype
        state_dtype = rows[2][0].dtype
        _adamrag_kernel[(tables.n_blocks,)](
            tables.ptr_table,
            tables.numels,
            tables.block_tensor,
            tables.block_first,
            tables.k,
            float(lr),
            float(beta1),
            float(beta2),
            log_b1,
            log_b2,
            float(eps),
            float(weight_decay),
            float(gamma),
            float(nesterov_a),
            float(gamma_max if gamma_max is not None else 1.0),
            P_DTYPE=_TL_DTYPES[real_dtype],
            S_DTYPE=_TL_DTYPES[state_dtype],
            BLOCK=_BLOCK,
            ALIGNED=tables.aligned,
            MAXIMIZE=maximize,
            AMSGRAD=amsgrad,
            COUPLED_WD=weight_decay != 0 and not decoupled_weight_decay,
            DECOUPLED_WD=weight_decay != 0 and decoupled_weight_decay,
            NESTEROV=gamma_schedule == "nesterov",
            HAS_GAMMA_MAX=gamma_max is not None,
            SGD_DIRECTION=_direction == "sgd",
            num_warps=_NUM_WARPS,
        )
