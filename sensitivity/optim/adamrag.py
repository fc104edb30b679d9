# mypy: allow-untyped-defs
"""AdamRAG: an Adam step taken from a Ravine-extrapolated point (this product's reconstruction).

A sibling of ``torch/optim/adam.py``: one class that validates its arguments, one functional core
(:func:`adamrag`) with three implementations chosen by a flag -- a for-loop over tensors
(``_single_tensor_adamrag``), ``torch._foreach_*`` (``_multi_tensor_adamrag``) and a fused Triton
kernel (``_fused_adamrag``, in :mod:`sensitivity.optim._adamrag_triton`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import (
    Optimizer,
    ParamsT,
    _capturable_doc,
    _differentiable_doc,
    _foreach_doc,
    _get_value,
    _maximize_doc,
    _params_doc,
    _use_grad_for_differentiable,
)

__all__ = ["AdamRAG", "adamrag"]

_GAMMA_SCHEDULES = ("constant", "nesterov")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


# --------------------------------------------------------------------------------------------
# Argument checks (shared by the constructor and add_param_group)
# --------------------------------------------------------------------------------------------
def _as_real(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"Invalid {name}: a Tensor {name} must have one element, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid {name}: {value!r} is not a real number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value} is not finite")
    return value


def _validate_hyperparameters(group: dict[str, Any]) -> None:
    """Raise ValueError naming the first invalid hyperparameter of ``group``; normalise numbers to float."""
    lr = _as_real("learning rate", group["lr"])
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
    b1 = _as_real("beta parameter at index 0", betas[0])
    b2 = _as_real("beta parameter at index 1", betas[1])
    if not 0.0 <= b1 < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {b1} (must be in [0, 1))")
    if not 0.0 <= b2 < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {b2} (must be in [0, 1))")
    eps = _as_real("epsilon value", group["eps"])
    if eps < 0.0:
        raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
    gamma = _as_real("gamma (extrapolation coefficient)", group["gamma"])
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"Invalid gamma (extrapolation coefficient): {gamma} (must be in [0, 1))")
    wd = _as_real("weight_decay value", group["weight_decay"])
    if wd < 0.0:
        raise ValueError(f"Invalid weight_decay value: {wd} (must be >= 0)")
    schedule = group["gamma_schedule"]
    if schedule not in _GAMMA_SCHEDULES:
        raise ValueError(f"Invalid gamma_schedule: {schedule!r} (must be one of {', '.join(_GAMMA_SCHEDULES)})")
    a = _as_real("nesterov_a", group["nesterov_a"])
    if a < 3.0:
        raise ValueError(f"Invalid nesterov_a: {a} (must be >= 3, Attouch and Fadili's condition)")
    gamma_max = group["gamma_max"]
    if gamma_max is not None:
        gamma_max = _as_real("gamma_max", gamma_max)
        if not 0.0 <= gamma_max < 1.0:
            raise ValueError(f"Invalid gamma_max: {gamma_max} (must be in [0, 1) or None)")
    group.update(
        lr=lr, betas=(b1, b2), eps=eps, gamma=gamma, weight_decay=wd, nesterov_a=a, gamma_max=gamma_max
    )


# --------------------------------------------------------------------------------------------
# The extrapolation coefficient gamma_t
# --------------------------------------------------------------------------------------------
def _gamma_value(t: float, gamma: float, schedule: str, a: float, gamma_max: float | None) -> float:
    """gamma_t on the host; gamma_0 = 0 by definition (d_0 = 0 anyway)."""
    if t < 1:
        return 0.0
    if schedule == "constant":
        return gamma
    g = (t - 1.0) / (t + a - 1.0)
    return min(g, gamma_max) if gamma_max is not None else g


def _gamma_tensor(t: Tensor, gamma: float, schedule: str, a: float, gamma_max: float | None) -> Tensor:
    """gamma_t for a tensor of steps (kept on device: no host sync, CUDA-graph safe)."""
    if schedule == "constant":
        return (t >= 1).to(t.dtype) * gamma
    # (t-1)/(t+a-1) is negative only for t < 1 (a >= 3), so clamping at 0 also gives gamma_0 = 0.
    return ((t - 1.0) / (t + (a - 1.0))).clamp(min=0.0, max=1.0 if gamma_max is None else gamma_max)


def _one_minus_pow(beta: float, t: Tensor) -> Tensor:
    """1 - beta^t for a tensor step, without the float32 cancellation of ``1 - beta**t`` near t = 1."""
    if beta == 0.0:
        return torch.ones_like(t)
    return -torch.expm1(t * math.log(beta))


def _state_dtype(p: Tensor, fp32_state: bool) -> torch.dtype:
    return torch.float32 if fp32_state and p.dtype in _LOW_PRECISION else p.dtype


_WARNED_NO_DECAY: set[tuple[Any, ...]] = set()


def _warn_if_state_cannot_decay(dtype: torch.dtype, betas: tuple[float, float]) -> None:
    """Warn when a moment kept in ``dtype`` cannot decay: ``beta * x`` rounds back to ``x`` once
    ``1 - beta`` is below half the dtype's relative spacing (bfloat16: 2**-8, so beta2 = 0.999 leaves
    v stuck at its largest value, as in torch's Adam with bfloat16 parameters)."""
    if dtype not in _LOW_PRECISION or (dtype, *betas) in _WARNED_NO_DECAY:
        return
    half_spacing = torch.finfo(dtype).eps / 2
    stuck = [name for name, beta in (("beta1", betas[0]), ("beta2", betas[1])) if 0 < 1 - beta < half_spacing]
    if stuck:
        _WARNED_NO_DECAY.add((dtype, *betas))  # once per process and setting, not per parameter and step
        warnings.warn(
            f"AdamRAG keeps its state in {dtype} for {dtype} parameters (fp32_state=False, as torch's Adam): with "
            f"{' and '.join(f'{n}={b:g}' for n, b in zip(('beta1', 'beta2'), betas) if n in stuck)}, "
            f"1 - beta is below {dtype}'s rounding step, so that moment never decays; pass fp32_state=True "
            f"to keep m, v and d in float32", UserWarning, stacklevel=4,
        )


class AdamRAG(Optimizer):
    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        gamma: float = 0.5,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        gamma_schedule: str = "constant",
        nesterov_a: float = 3.0,
        gamma_max: float | None = None,
        amsgrad: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fp32_state: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "gamma": gamma,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "gamma_schedule": gamma_schedule,
            "nesterov_a": nesterov_a,
            "gamma_max": gamma_max,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "fused": fused,
            "capturable": capturable,
            "differentiable": differentiable,
            "fp32_state": fp32_state,
        }
        _validate_hyperparameters(defaults)  # fail before touching params
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        self._swap_backup: dict[Tensor, Tensor] | None = None
        self._workspace: dict[Tensor, Tensor] = {}
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- groups and state
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group; its own lr, betas, eps, gamma, ... are validated like the defaults.

        Raises:
            ValueError: an invalid hyperparameter (the optimizer is left unchanged).
        """
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        _validate_hyperparameters(merged)
        if merged["fused"] and merged["differentiable"]:
            raise RuntimeError("`fused` does not support `differentiable`")
        if merged["fused"] and merged["foreach"]:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        super().add_param_group(param_group)
        _validate_hyperparameters(self.param_groups[-1])  # store the normalised floats

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_swap_backup", None)
        self.__dict__.setdefault("_workspace", {})
        for group in self.param_groups:
            for key, default in (
                ("gamma_schedule", "constant"),
                ("nesterov_a", 3.0),
                ("gamma_max", None),
                ("amsgrad", False),
                ("maximize", False),
                ("foreach", None),
                ("fused", None),
                ("capturable", False),
                ("differentiable", False),
                ("fp32_state", False),
                ("decoupled_weight_decay", False),
            ):
                group.setdefault(key, default)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As :meth:`torch.optim.Optimizer.load_state_dict`, but fp32 state of bf16/fp16 params stays fp32.

        torch casts every floating-point state tensor to its parameter's dtype on load; with
        ``fp32_state=True`` that would round m, v and d to bf16, so they are restored from the saved
        fp32 values afterwards.
        """
        saved_state = state_dict["state"]
        saved_ids = [pid for g in state_dict["param_groups"] for pid in g["params"]]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        fp32 = {p: g["fp32_state"] for g in self.param_groups for p in g["params"]}
        for pid, p in zip(saved_ids, params):
            if not fp32[p] or p.dtype not in _LOW_PRECISION or pid not in saved_state:
                continue
            for key, value in saved_state[pid].items():
                if key != "step" and torch.is_tensor(value) and value.dtype == torch.float32:
                    self.state[p][key] = value.to(device=p.device, dtype=torch.float32, copy=True)

    def _fused_device_check(self, p: Tensor) -> None:
        interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
        if not (p.is_cuda or (interpret and p.device.type == "cpu")):
            raise RuntimeError(
                f"AdamRAG(fused=True) needs CUDA parameters (a Triton kernel), got a parameter on {p.device}; "
                "use foreach=True on this device"
            )
        if p.dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.complex64):
            raise RuntimeError(
                f"AdamRAG(fused=True) supports float32, bfloat16, float16 and complex64 params, got {p.dtype}"
            )

    def _init_group(
        self,
        group,
        params_with_grad,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        ravine_bufs,
        state_steps,
    ) -> bool:
        has_complex = False
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    "AdamRAG does not support sparse gradients (got a sparse gradient for a parameter of shape "
                    f"{tuple(p.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
                )
            has_complex |= torch.is_complex(p)
            params_with_grad.append(p)
            grads.append(p.grad)
            state = self.state[p]
            if len(state) == 0:
                if group["fused"]:
                    self._fused_device_check(p)
                # As torch Adam: step lives on the host unless capturable/fused (kernel launches cost more).
                state["step"] = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if group["capturable"] or group["fused"]
                    else torch.tensor(0.0, dtype=torch.float32)
                )
                dtype = _state_dtype(p, group["fp32_state"])
                _warn_if_state_cannot_decay(dtype, group["betas"])
                state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                state["ravine_buf"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            ravine_bufs.append(state["ravine_buf"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            if group["differentiable"] and state["step"].requires_grad:
                raise RuntimeError("`requires_grad` is not supported for `step` in differentiable mode")
            state_steps.append(state["step"])
        return has_complex

    def _workspaces_for(self, params: list[Tensor], exp_avgs: list[Tensor]) -> list[Tensor]:
        """One persistent scratch tensor per parameter (CPU foreach path only, see the class notes)."""
        out = []
        for p, m in zip(params, exp_avgs):
            w = self._workspace.get(p)
            if w is None or w.shape != m.shape or w.dtype != m.dtype or w.device != m.device:
                w = torch.empty_like(m, memory_format=torch.preserve_format)
                self._workspace[p] = w
            out.append(w)
        return out

    @_use_grad_for_differentiable
    def step(self, closure=None):
        """Perform one AdamRAG step on every parameter that has a gradient.

        Args:
            closure (Callable, optional): re-evaluates the model and returns the loss.

        Returns:
            the closure's loss, or None.

        Raises:
            RuntimeError: on sparse gradients, or while swapped to the gradient-step point.
        """
        if self._swap_backup is not None:
            raise RuntimeError(
                "AdamRAG.step() called while the parameters are at the gradient-step point w_t; "
                "call swap_to_extrapolated_point() (or leave the gradient_point() block) first"
            )
        self._accelerator_graph_capture_health_check()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params_with_grad: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            max_exp_avg_sqs: list[Tensor] = []
            ravine_bufs: list[Tensor] = []
            state_steps: list[Tensor] = []
            has_complex = self._init_group(
                group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, ravine_bufs, state_steps
            )
            if not params_with_grad:
                continue
            foreach, fused = _resolve_implementation(
                params_with_grad, group["foreach"], group["fused"], group["differentiable"]
            )
            workspaces = None
            if foreach and not group["capturable"] and params_with_grad[0].device.type == "cpu":
                workspaces = self._workspaces_for(params_with_grad, exp_avgs)
            beta1, beta2 = group["betas"]
            adamrag(
                params_with_grad,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_exp_avg_sqs,
                ravine_bufs,
                state_steps,
                foreach=foreach,
                fused=fused,
                capturable=group["capturable"],
                differentiable=group["differentiable"],
                has_complex=has_complex,
                workspaces=workspaces,
                amsgrad=group["amsgrad"],
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                decoupled_weight_decay=group["decoupled_weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                gamma=group["gamma"],
                gamma_schedule=group["gamma_schedule"],
                nesterov_a=group["nesterov_a"],
                gamma_max=group["gamma_max"],
            )
        return loss

    # ---------------------------------------------------------------- the gradient-step point w_t
    def _current_gamma(self, group: dict[str, Any], step: Tensor) -> float | Tensor:
        args = (group["gamma"], group["gamma_schedule"], group["nesterov_a"], group["gamma_max"])
        if step.device.type != "cpu" or step.requires_grad:
            return _gamma_tensor(step.detach(), *args)
        return _gamma_value(step.item(), *args)

    @torch.no_grad()
    def swap_to_gradient_point(self) -> None:
        """Move every parameter from the extrapolated point y_{t+1} to the gradient-step point w_t.

        ``p <- p - gamma_t * d`` for each parameter with state (``w_t = y_{t+1} - gamma_t (w_t - w_{t-1})``);
        the current values are kept in a copy (one parameter-sized buffer per tensor) so that
        :meth:`swap_to_extrapolated_point` restores them bit for bit. Only parameters move: BatchNorm
        running statistics (buffers, not parameters) were accumulated during training at the
        extrapolated points y, so evaluating at w uses statistics of slightly different weights. When
        that matters, recompute them at w (e.g. ``torch.optim.swa_utils.update_bn``) inside the swap.

        Raises:
            RuntimeError: if already swapped.
        """
        if self._swap_backup is not None:
            raise RuntimeError("AdamRAG is already at the gradient-step point; call swap_to_extrapolated_point()")
        backup: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state or "ravine_buf" not in state:
                    continue
                backup[p] = p.detach().clone(memory_format=torch.preserve_format)
                g = self._current_gamma(group, state["step"])
                d = state["ravine_buf"]
                if isinstance(g, Tensor):
                    p.sub_((d * g.to(d.dtype if not d.is_complex() else torch.float32)).to(p.dtype))
                elif g != 0.0:
                    p.sub_(d.to(p.dtype) if d.dtype != p.dtype else d, alpha=g)
        self._swap_backup = backup

    @torch.no_grad()
    def swap_to_extrapolated_point(self) -> None:
        """Undo :meth:`swap_to_gradient_point`: restore the exact parameter values y_{t+1}.

        Raises:
            RuntimeError: if not swapped.
        """
        if self._swap_backup is None:
            raise RuntimeError("AdamRAG is not at the gradient-step point; call swap_to_gradient_point() first")
        for p, saved in self._swap_backup.items():
            p.copy_(saved)
        self._swap_backup = None

    @contextlib.contextmanager
    def gradient_point(self) -> Iterator[None]:
        """Context manager: parameters at w_t inside the block, restored exactly on exit (even on error).

        Example::

            >>> with opt.gradient_point():
            ...     val_loss = evaluate(model)
        """
        self.swap_to_gradient_point()
        try:
            yield
        finally:
            self.swap_to_extrapolated_point()


AdamRAG.__doc__ = (
    r"""Implements AdamRAG: an Adam step taken from a Ravine-extrapolated point.

    This is the product's documented reconstruction of AdamRAG (Zhang, Zhao, Li, Pan, "AdamRAG:
    Adaptive Algorithm with Ravine Method for Training Deep Neural Networks", Neural Processing
    Letters 57(3), art. 53, 2025, doi:10.1007/s11063-025-11766-6) from the paper's abstract -- an
    Adam-type adaptive step, momentum regulating the step size, and the extrapolation step of the
    Ravine method of Gelfand and Tsetlin (1961) in the form of Attouch and Fadili ("From the Ravine
    method to the Nesterov method and vice versa: a dynamical system perspective", arXiv:2201.11643).
    It is not the paper's code, which no reachable source publishes.

    The Ravine method alternates a gradient step and an extrapolation,
    :math:`w_k = y_k - s\nabla f(y_k)`, :math:`y_{k+1} = w_k + \gamma_k (w_k - w_{k-1})`; the
    parameter tensor holds the extrapolated point :math:`y`, where gradients are taken. AdamRAG
    replaces the gradient step by Adam's step and stores the difference
    :math:`d_t = w_t - w_{t-1}` (``ravine_buf``) rather than :math:`w_{t-1}`, which avoids cancellation
    between two nearly equal weight tensors:

    .. math::
       \begin{aligned}
            &\textbf{input}: \eta \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)}, \epsilon \text{ (eps)},
                \lambda \text{ (weight decay)}, \gamma \text{ or } (a, \gamma_{max}),
                y_1 \text{ (params)}, f \text{ (objective)} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ v_0 \leftarrow 0,\ d_0 \leftarrow 0,\ \gamma_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots \\
            &\quad g_t \leftarrow \pm\nabla f(y_t) \quad (- \text{ if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \neq 0 \text{ and not decoupled}:\ g_t \leftarrow g_t + \lambda y_t \\
            &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t \\
            &\quad v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2
                \quad (\textit{amsgrad}: \hat v_t \leftarrow \max(\hat v_{t-1}, v_t) \text{ used below}) \\
            &\quad \delta_t \leftarrow -\eta\, \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
                \qquad (w_t = y_t + \delta_t \text{ is Adam's step}) \\
            &\quad \textbf{if}\ \lambda \neq 0 \text{ and decoupled}:\ \delta_t \leftarrow \delta_t - \eta\lambda y_t \\
            &\quad d_t \leftarrow \gamma_{t-1} d_{t-1} + \delta_t \qquad (= w_t - w_{t-1}) \\
            &\quad y_{t+1} \leftarrow y_t + \delta_t + \gamma_t d_t
                \qquad (= w_t + \gamma_t (w_t - w_{t-1})) \\
       \end{aligned}

    with :math:`\gamma_t = \gamma` (``gamma_schedule="constant"``, :math:`0 \le \gamma < 1`) or the
    Nesterov-type schedule :math:`\gamma_t = \min\big(\frac{t-1}{t+a-1}, \gamma_{max}\big)`
    (``gamma_schedule="nesterov"``, :math:`a \ge 3`, Attouch and Fadili). Under a constant gradient
    sign the steady-state step is :math:`\eta/(1-\gamma)`, so a given lr moves the weights
    :math:`1/(1-\gamma)` times as far as Adam's (2x at the default gamma = 0.5).

    Special cases, each checked by the tests: :math:`\gamma = 0` is exactly Adam (coupled decay)
    or AdamW (decoupled); replacing Adam's step by :math:`\delta_t = -\eta g_t` gives
    ``torch.optim.SGD(momentum=gamma, nesterov=True)``.

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), ``ravine_buf`` (d) and, with
    amsgrad, ``max_exp_avg_sq``: three parameter-sized buffers against Adam's two. The for-each path
    on CPU also keeps one parameter-sized scratch buffer per parameter (not saved in the state dict):
    a fresh allocation of that size costs more than the arithmetic there.

    The gradient-step point :math:`w_t = y_{t+1} - \gamma_t d_t` can be evaluated with
    :meth:`gradient_point` (a context manager) or :meth:`swap_to_gradient_point` /
    :meth:`swap_to_extrapolated_point`; only parameters move, so BatchNorm running statistics
    (accumulated at the points y) are those of the extrapolated weights.
    """
    + rf"""
    Args:
        {_params_doc}
        lr (float, optional): learning rate :math:`\eta` (default: 1e-3)
        betas (tuple[float, float], optional): decay rates of the running averages of the gradient
            and of its square, each in [0, 1) (default: (0.9, 0.999))
        eps (float, optional): term added to the denominator, >= 0 (default: 1e-8)
        gamma (float, optional): extrapolation coefficient in [0, 1) for the constant schedule
            (default: 0.5); ignored by the Nesterov schedule
        weight_decay (float, optional): weight decay :math:`\lambda` >= 0 (default: 0)
        decoupled_weight_decay (bool, optional): AdamW-style decay, :math:`\delta \leftarrow \delta - \eta\lambda y`,
            instead of adding :math:`\lambda y` to the gradient (default: False)
        gamma_schedule (str, optional): ``"constant"`` or ``"nesterov"`` (default: "constant")
        nesterov_a (float, optional): :math:`a \ge 3` of the Nesterov schedule (default: 3.0)
        gamma_max (float, optional): cap in [0, 1) on the Nesterov schedule (default: None, no cap)
        amsgrad (bool, optional): use the running maximum of v, as torch Adam (default: False)
        {_foreach_doc}
        fused (bool, optional): use the fused Triton kernel (CUDA tensors of dtype float32,
            bfloat16, float16 or complex64); one kernel launch per group, device, and dtype.
            Not the default: for-each is, as in torch Adam. (default: None)
        {_maximize_doc}
        {_capturable_doc}
        {_differentiable_doc}
        fp32_state (bool, optional): keep m, v and d in float32 for bfloat16/float16 parameters
            (default: False: state in the parameter's dtype, as torch Adam). In bfloat16, ``0.999 * v``
            rounds back to ``v``: with beta2 = 0.999 the second moment never decays (torch's Adam
            does the same); a UserWarning says so at the first step. Pass True for such parameters.

    Raises:
        ValueError: an invalid lr, betas, eps, gamma, weight_decay, gamma_schedule, nesterov_a or
            gamma_max (the message names the value), also for groups added later.
        RuntimeError: sparse gradients (on ``step``); ``fused`` with ``foreach`` or ``differentiable``.

    Example::

        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdamRAG(model.parameters(), lr=1e-3, gamma=0.5)
        >>> loss = model(torch.randn(8, 4)).square().mean()
        >>> loss.backward()
        >>> opt.step()
    """
)


# --------------------------------------------------------------------------------------------
# Implementation choice
# --------------------------------------------------------------------------------------------
def _resolve_implementation(
    params: list[Tensor], foreach: bool | None, fused: bool | None, differentiable: bool
) -> tuple[bool, bool]:
    """(foreach, fused) as torch Adam chooses: foreach when every tensor is on CUDA, fused only when asked."""
    if fused is None and foreach is None:
        if differentiable or torch.jit.is_scripting():
            return False, False
        foreach = all(p.is_cuda and type(p) in (Tensor, torch.nn.Parameter) for p in params)
        return foreach, False
    return bool(foreach), bool(fused)


# --------------------------------------------------------------------------------------------
# The functional core
# --------------------------------------------------------------------------------------------
def adamrag(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    ravine_bufs: list[Tensor],
    state_steps: list[Tensor],
    foreach: bool | None = None,
    fused: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    has_complex: bool = False,
    workspaces: list[Tensor] | None = None,
    *,
    amsgrad: bool,
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
    _direction: str = "adam",
) -> None:
    r"""Functional AdamRAG: update ``params`` and the state lists in place. See :class:`AdamRAG`.

    All lists are aligned (one entry per parameter; ``max_exp_avg_sqs`` empty unless amsgrad).
    ``state_steps`` holds 0-dim float tensors (host unless capturable/fused), incremented here.
    ``workspaces`` (optional, for-each only): one scratch tensor per parameter, shaped like its state.
    ``_direction="sgd"`` (private, for tests) replaces Adam's step by :math:`\delta = -\eta g`, which
    turns the method into Nesterov's SGD.
    """
    if not all(isinstance(t, Tensor) for t in state_steps):
        raise RuntimeError("`state_steps` must be a list of 0-dim tensors")
    if _direction not in ("adam", "sgd"):
        raise ValueError(f"Invalid _direction: {_direction!r}")
    foreach, fused = _resolve_implementation(params, foreach, fused, differentiable)
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused:
        from sensitivity.optim._adamrag_triton import fused_adamrag as func
    elif foreach:
        func = _multi_tensor_adamrag
    else:
        func = _single_tensor_adamrag
    kwargs = dict(
        amsgrad=amsgrad,
        has_complex=has_complex,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay,
        eps=eps,
        maximize=maximize,
        gamma=gamma,
        gamma_schedule=gamma_schedule,
        nesterov_a=nesterov_a,
        gamma_max=gamma_max,
        capturable=capturable,
        differentiable=differentiable,
        _direction=_direction,
    )
    if foreach:
        kwargs["workspaces"] = workspaces
    func(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, ravine_bufs, state_steps, **kwargs)


def _single_tensor_adamrag(
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
    """The reference path: one tensor at a time, the update written as in the class docstring."""
    sched = (gamma, gamma_schedule, nesterov_a, gamma_max)
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq, d, step_t = exp_avgs[i], exp_avg_sqs[i], ravine_bufs[i], state_steps[i]
        step_t += 1

        if weight_decay != 0 and not decoupled_weight_decay:
            grad = grad.add(param, alpha=weight_decay)

        if torch.is_complex(param):
            grad = torch.view_as_real(grad)
            exp_avg = torch.view_as_real(exp_avg)
            exp_avg_sq = torch.view_as_real(exp_avg_sq)
            d = torch.view_as_real(d)
            param = torch.view_as_real(param)
        if grad.dtype != exp_avg.dtype:  # fp32 state for a low-precision parameter
            grad = grad.to(exp_avg.dtype)

        if capturable or differentiable:
            step = step_t if capturable else step_t.detach()
            gamma_t = _gamma_tensor(step, *sched)
            gamma_prev = _gamma_tensor(step - 1, *sched)
        else:
            step = _get_value(step_t)
            gamma_t = _gamma_value(step, *sched)
            gamma_prev = _gamma_value(step - 1, *sched)

        if _direction == "sgd":
            delta = grad.mul(-lr)
        else:
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            if isinstance(step, Tensor):
                bias_correction1 = _one_minus_pow(beta1, step)
                bias_correction2 = _one_minus_pow(beta2, step)
            else:
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            if amsgrad:
                max_exp_avg_sq = max_exp_avg_sqs[i]
                if torch.is_complex(max_exp_avg_sq):
                    max_exp_avg_sq = torch.view_as_real(max_exp_avg_sq)
                if differentiable:
                    max_exp_avg_sq.copy_(torch.maximum(max_exp_avg_sq.clone(), exp_avg_sq))
                else:
                    torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
                second = max_exp_avg_sq
            else:
                second = exp_avg_sq
            if differentiable:  # out of place where autograd needs the operands
                denom = (second.sqrt() / bias_correction2_sqrt).add_(eps)
                delta = exp_avg.clone().div(denom).mul_(-step_size)
            else:  # one temporary: sqrt(v), then the denominator, then delta, in place
                denom = second.sqrt().div_(bias_correction2_sqrt).add_(eps)
                delta = torch.div(exp_avg, denom, out=denom).mul_(-step_size)

        if weight_decay != 0 and decoupled_weight_decay:
            delta.add_(param, alpha=-lr * weight_decay)

        # d_t = gamma_{t-1} d_{t-1} + delta_t ;  y_{t+1} = y_t + delta_t + gamma_t d_t
        if isinstance(gamma_prev, Tensor):
            d.mul_(gamma_prev.to(d.dtype)).add_(delta)
            delta.add_(d * gamma_t.to(d.dtype))
        else:
            d.mul_(gamma_prev).add_(delta)
            if gamma_t != 0.0:
                delta.add_(d, alpha=gamma_t)
        param.add_(delta)


# --------------------------------------------------------------------------------------------
# For-each path
# --------------------------------------------------------------------------------------------
def _group_for_foreach(
    lists: list[list[Tensor]], steps: list[Tensor], by_step: bool
) -> dict[tuple, tuple[list[list[Tensor]], list[Tensor]]]:
    """Group aligned lists by (device, param dtype, state dtype[, step value]).

    Like torch's ``_group_tensors_by_device_and_dtype`` but allowing float32 state for
    low-precision params, and (host steps) splitting by step so each group's scalars are plain floats.
    """
    groups: dict[tuple, tuple[list[list[Tensor]], list[Tensor]]] = {}
    params, states = lists[0], lists[2]
    for i, p in enumerate(params):
        key: tuple = (p.device, p.dtype, states[i].dtype)
        if by_step:
            key += (_get_value(steps[i]),)
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = ([[] for _ in lists], [])
        for out, src in zip(entry[0], lists):
            if src:
                out.append(src[i])
        entry[1].append(steps[i])
    return groups


def _multi_tensor_adamrag(
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
    workspaces: list[Tensor] | None = None,
    _direction: str = "adam",
) -> None:
    """torch._foreach_* implementation, a few passes over memory per step.

    With host steps, per group of equal step the update is rewritten so that Adam's step is never
    materialised: with s = sqrt(v) + eps sqrt(1-beta2^t) and c = -lr sqrt(1-beta2^t)/(1-beta1^t),
    delta = c m / s, and
        d <- gamma_{t-1} d                     (decoupled decay: d -= lr wd y; y *= 1 - lr wd)
        y <- y + gamma_t d
        d <- d + c m / s                       (= gamma_{t-1} d + delta)
        y <- y + (1 + gamma_t) c m / s         (= y + delta + gamma_t d)
    Passes: lerp m, mul+addcmul v, sqrt, add eps, then 2 on d and 2 on y. On CPU the scratch s
    lives in ``workspaces``: a fresh parameter-sized allocation (page faults) costs more than the
    arithmetic there. (Cutting the lists into L2-sized waves was measured: within noise, not kept.)
    """
    if not params:
        return
    if differentiable:
        raise RuntimeError("the for-each path does not support differentiable=True; use foreach=False")
    sched = (gamma, gamma_schedule, nesterov_a, gamma_max)
    lists = [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, ravine_bufs, workspaces or []]
    grouped = _group_for_foreach(lists, state_steps, by_step=not capturable)
    for key, (tensors, steps) in grouped.items():
        p_, g_, m_, v_, vmax_, d_, ws_ = tensors
        if has_complex:
            p_, g_, m_, v_, d_ = (
                [torch.view_as_real(t) if t.is_complex() else t for t in lst] for lst in (p_, g_, m_, v_, d_)
            )
            vmax_ = [torch.view_as_real(t) if t.is_complex() else t for t in vmax_]
            ws_ = [torch.view_as_real(t) if t.is_complex() else t for t in ws_]
        ws = ws_ if ws_ else None

        if steps[0].device.type == "cpu":
            torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        else:
            torch._foreach_add_(steps, 1)

        if capturable:
            g = _foreach_effective_grads(p_, g_, m_, None, maximize, weight_decay, decoupled_weight_decay)
            _multi_tensor_capturable_tail(
                p_, g, m_, v_, vmax_, d_, steps, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
                weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay, eps=eps,
                maximize=maximize, sched=sched, _direction=_direction,
            )
            continue

        step = key[3] + 1  # grouped by the step before this increment
        scalars = dict(
            step=step, gamma_t=_gamma_value(step, *sched), gamma_prev=_gamma_value(step - 1, *sched),
            amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, eps=eps, maximize=maximize, _direction=_direction,
        )
        _foreach_host_step(p_, g_, m_, v_, vmax_, d_, ws, **scalars)


def _foreach_effective_grads(p_, g_, m_, ws, maximize, weight_decay, decoupled_weight_decay):
    """The gradient the moments see: -g (maximize), + wd y (coupled decay), in the state dtype.

    Written into ``ws`` when given (no allocation), else into new tensors; ``g_`` itself is never modified.
    """
    coupled = weight_decay != 0 and not decoupled_weight_decay
    if not (maximize or coupled or g_[0].dtype != m_[0].dtype):
        return g_
    if ws:
        torch._foreach_copy_(ws, g_)
        g = ws
    elif g_[0].dtype != m_[0].dtype:
        g = [t.to(m_[0].dtype) for t in g_]
    else:
        g = torch._foreach_neg(g_) if maximize else torch._foreach_add(g_, p_, alpha=weight_decay)
        if maximize and coupled:
            torch._foreach_add_(g, p_, alpha=weight_decay)
        return g
    if maximize:
        torch._foreach_neg_(g)
    if coupled:
        torch._foreach_add_(g, p_, alpha=weight_decay)
    return g


def _foreach_host_step(
    p_, g_, m_, v_, vmax_, d_, ws, *, step, gamma_t, gamma_prev, amsgrad, beta1, beta2, lr, weight_decay,
    decoupled_weight_decay, eps, maximize, _direction,
) -> None:
    """One for-each AdamRAG update of aligned lists sharing one host step (see _multi_tensor_adamrag)."""
    g = _foreach_effective_grads(p_, g_, m_, ws, maximize, weight_decay, decoupled_weight_decay)
    if _direction == "adam":
        torch._foreach_lerp_(m_, g, 1 - beta1)
        torch._foreach_mul_(v_, beta2)
        torch._foreach_addcmul_(v_, g, g, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(vmax_, v_)
        second = vmax_ if amsgrad else v_
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        c = -lr * bias_correction2_sqrt / bias_correction1
        if ws:  # g (if it lived in ws) is no longer needed: reuse ws for s
            for s_i, v_i in zip(ws, second):
                torch.sqrt(v_i, out=s_i)
            denom = ws
        else:
            denom = torch._foreach_sqrt(second)
        torch._foreach_add_(denom, eps * bias_correction2_sqrt)
        numer = m_
    else:  # delta = -lr g  (Nesterov SGD, tests only)
        c, numer, denom = -lr, g, None

    if gamma_prev == 0.0:
        torch._foreach_zero_(d_)
    else:
        torch._foreach_mul_(d_, gamma_prev)
    if weight_decay != 0 and decoupled_weight_decay:
        torch._foreach_add_(d_, p_, alpha=-lr * weight_decay)
        torch._foreach_mul_(p_, 1 - lr * weight_decay)
    if gamma_t != 0.0 and (gamma_prev != 0.0 or (weight_decay != 0 and decoupled_weight_decay)):
        torch._foreach_add_(p_, d_, alpha=gamma_t)
    if denom is None:
        torch._foreach_add_(d_, numer, alpha=c)
        torch._foreach_add_(p_, numer, alpha=(1 + gamma_t) * c)
    else:
        torch._foreach_addcdiv_(d_, numer, denom, c)
        torch._foreach_addcdiv_(p_, numer, denom, (1 + gamma_t) * c)


def _multi_tensor_capturable_tail(
    p_, g, m_, v_, vmax_, d_, steps, *, amsgrad, beta1, beta2, lr, weight_decay, decoupled_weight_decay,
    eps, maximize, sched, _direction,
) -> None:
    """For-each update with steps on the device: every step-dependent scalar stays a device tensor."""
    t = torch.stack(steps)
    gamma_t = list(_gamma_tensor(t, *sched).unbind())
    gamma_prev = list(_gamma_tensor(t - 1, *sched).unbind())
    if _direction == "adam":
        torch._foreach_lerp_(m_, g, 1 - beta1)
        torch._foreach_mul_(v_, beta2)
        torch._foreach_addcmul_(v_, g, g, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(vmax_, v_)
        second = vmax_ if amsgrad else v_
        bias_correction1 = _one_minus_pow(beta1, t)
        bias_correction2_sqrt = _one_minus_pow(beta2, t).sqrt()
        # s = -(sqrt(v) + eps sqrt(bc2)) bc1 / (lr sqrt(bc2)), so that m / s = delta
        scale = list((-(bias_correction1) / (lr * bias_correction2_sqrt)).unbind()) if lr != 0 else None
        denom = torch._foreach_sqrt(second)
        torch._foreach_add_(denom, list((eps * bias_correction2_sqrt).unbind()))
        if scale is None:  # lr = 0: delta = 0
            delta = torch._foreach_mul(m_, 0.0)
        else:
            torch._foreach_mul_(denom, scale)
            delta = torch._foreach_div(m_, denom)
    else:
        delta = torch._foreach_mul(g, -lr)
    if weight_decay != 0 and decoupled_weight_decay:
        torch._foreach_add_(delta, p_, alpha=-lr * weight_decay)
    torch._foreach_mul_(d_, gamma_prev)
    torch._foreach_add_(d_, delta)
    torch._foreach_add_(delta, torch._foreach_mul(d_, gamma_t))
    torch._foreach_add_(p_, delta)
