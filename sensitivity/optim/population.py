"""Batched optimizers: one optimizer's update for K models at once, with per-member hyperparameters.

A population (:mod:`sensitivity.population`) holds each parameter of K copies of one model as one
stacked tensor of shape (K, *shape). The classes here update such stacks in place, each member with
its own learning rate, betas, gamma and weight decay, held as float32 tensors of shape (K,) and
broadcast over each stack as (K, 1, ..., 1).

Each update is written as plain tensor ops that reproduce, bit for bit on the CPU, the arithmetic
the single-model optimizer performs on one member's tensors on the path it takes there (torch's
single-tensor path: ``foreach`` and ``fused`` are chosen only for CUDA tensors):

* ``adam`` / ``adamw``: ``torch.optim._single_tensor_adam`` (``torch.optim.Adam`` / ``AdamW``);
* ``nag`` / ``sgd``: ``torch.optim._single_tensor_sgd`` (``torch.optim.SGD``, nesterov or not);
* ``lion``: ``lion_pytorch.lion_pytorch.update_fn`` (lucidrains' lion-pytorch, Chen et al. 2023);
* ``adamrag``: :func:`sensitivity.optim.adamrag._single_tensor_adamrag`, constant gamma.

Which op reproduces which (checked in ``tests/population/test_population_optimizers.py``):
a scalar the single path passes (``mul_(beta)``, ``div_(c)``, ``lerp_(g, w)``) is a Python float
rounded to float32 by the kernel, so the member's value is the same double rounded to float32 once;
derived scalars (``lr / (1 - beta1**t)``) are computed per member in Python doubles as the single
path computes them. ``x.add_(y, alpha=s)`` is a fused multiply-add on the CPU (one rounding), which
``torch.addcmul(x, y, s_k)`` reproduces and ``x + y * s_k`` does not; ``x.addcmul_(y, y, value=s)``
is ``x + (s y) y``, i.e. ``torch.addcmul(x, y * s_k, y)``; ``x.addcdiv_(y, z, value=s)`` is
``x + (s y) / z``, i.e. ``torch.addcdiv(x, s_k * y, z)``.

Members can be dropped (:meth:`PopulationOptimizer.keep`) when they diverge; nothing a member
computes depends on another member's numbers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from sensitivity.catalog import optimizer_info

_EPS = 1e-8
"""eps of Adam, AdamW and AdamRAG as the registry builds them (their constructors' default)."""


class PopulationOptimizer:
    """The common part: stacked parameters, per-member hyperparameters (Python doubles), member
    selection, and the per-member scalar tensors each update needs.

    Args:
        params: name -> stacked parameter of shape (K, *shape), updated in place (detached leaves).
        hyperparameters: K dicts, one per member, each holding every hyperparameter of the
            optimizer (use :func:`build_population_optimizer` to merge the catalog defaults).
        maximize: ascend instead of descend (as torch's ``maximize``); Lion has no such flag.

    Raises:
        ValueError: ``hyperparameters`` is empty, or a stack's leading size is not K.
    """

    hyperparameter_names: tuple[str, ...] = ()

    def __init__(self, params: dict[str, Tensor], hyperparameters: Sequence[dict[str, float]],
                 maximize: bool = False) -> None:
        if not hyperparameters:
            raise ValueError("a population optimizer needs at least one member's hyperparameters")
        k = len(hyperparameters)
        for name, p in params.items():
            if p.shape[0] != k:
                raise ValueError(f"stacked parameter {name} has {p.shape[0]} members, hyperparameters {k}")
        self.params = params
        self.hp = {n: [float(h[n]) for h in hyperparameters] for n in self.hyperparameter_names}
        self.maximize = maximize
        self.step_count = 0
        self.state: dict[str, dict[str, Tensor]] = {name: {} for name in params}

    @property
    def size(self) -> int:
        """K, the members still in the population."""
        return len(next(iter(self.hp.values())))

    def keep(self, mask: Sequence[bool]) -> None:
        """Keep only the members where ``mask`` is True (in order): stacks, state and hyperparameters.

        The caller re-indexes its own stacks (``self.params`` is rebound to the kept rows).
        """
        idx = torch.tensor([i for i, m in enumerate(mask) if m], dtype=torch.long)
        for name in list(self.params):
            dev_idx = idx.to(self.params[name].device)
            self.params[name] = self.params[name][dev_idx]
            self.state[name] = {key: s[dev_idx] for key, s in self.state[name].items()}
        self.hp = {n: [v for v, m in zip(values, mask) if m] for n, values in self.hp.items()}

    def _per_member(self, values: Sequence[float], like: Tensor) -> Tensor:
        """Python doubles, one per member, as float32 (the kernel's rounding of a scalar) of shape (K, 1, ...)."""
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))

    def step(self, grads: dict[str, Tensor], lr_factor: float = 1.0) -> None:
        """One update of every stack from ``grads`` (name -> gradient stack of the same shape).

        Args:
            grads: the members' gradients, shape (K, *shape) per parameter.
            lr_factor: the learning-rate schedule's factor for this step; each member's lr is
                ``lr * lr_factor`` in doubles, as ``LambdaLR`` sets ``group["lr"]``.
        """
        self.step_count += 1
        lrs = [lr * lr_factor for lr in self.hp["lr"]]
        for name, p in self.params.items():
            g = grads[name]
            if self.maximize:
                g = -g
            self._update(name, p, g, lrs)

    def _update(self, name: str, p: Tensor, g: Tensor, lrs: list[float]) -> None:
        raise NotImplementedError


class PopulationAdam(PopulationOptimizer):
    """torch.optim.Adam (coupled weight decay) or AdamW (``decoupled=True``), single-tensor path."""

    hyperparameter_names = ("lr", "beta1", "beta2", "weight_decay")

    def __init__(self, params, hyperparameters, maximize: bool = False, decoupled: bool = False) -> None:
        super().__init__(params, hyperparameters, maximize)
        self.decoupled = decoupled

    def _update(self, name: str, p: Tensor, g: Tensor, lrs: list[float]) -> None:
        t = self.step_count
        b1, b2, wd = self.hp["beta1"], self.hp["beta2"], self.hp["weight_decay"]
        st = self.state[name]
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_avg_sq"] = torch.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if any(w != 0 for w in wd):
            if self.decoupled:  # param.mul_(1 - lr * wd)
                p.mul_(self._per_member([1 - lr * w for lr, w in zip(lrs, wd)], p))
            else:  # grad = grad.add(param, alpha=wd)
                g = torch.addcmul(g, p, self._per_member(wd, p))
        m.lerp_(g, self._per_member([1 - b for b in b1], p))
        v.mul_(self._per_member(b2, p))
        v.addcmul_(g * self._per_member([1 - b for b in b2], p), g)
        step_size = [lr / (1 - b ** t) for lr, b in zip(lrs, b1)]
        bc2_sqrt = [(1 - b ** t) ** 0.5 for b in b2]
        denom = (v.sqrt() / self._per_member(bc2_sqrt, p)).add_(_EPS)
        # param.addcdiv_(exp_avg, denom, value=-step_size)
        p.addcdiv_(self._per_member([-s for s in step_size], p) * m, denom)


class PopulationSGD(PopulationOptimizer):
    """torch.optim.SGD with momentum (heavy ball, or Nesterov with ``nesterov=True``), single-tensor path.

    A member whose momentum is 0 takes plain SGD steps, as torch does (no buffer; the registry's
    NAG with beta1 = 0 is plain SGD).
    """

    hyperparameter_names = ("lr", "beta1", "weight_decay")

    def __init__(self, params, hyperparameters, maximize: bool = False, nesterov: bool = False) -> None:
        super().__init__(params, hyperparameters, maximize)
        self.nesterov = nesterov

    def _update(self, name: str, p: Tensor, g: Tensor, lrs: list[float]) -> None:
        mom, wd = self.hp["beta1"], self.hp["weight_decay"]
        st = self.state[name]
        if any(w != 0 for w in wd):
            g = torch.addcmul(g, p, self._per_member(wd, p))
        if any(mu != 0 for mu in mom):
            with_momentum = self._per_member([float(mu != 0) for mu in mom], p).bool()
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.detach().clone()
            else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening), dampening 0
                st["momentum_buffer"].mul_(self._per_member(mom, p)).add_(g)
            buf = st["momentum_buffer"]
            if self.nesterov:  # grad = grad.add(buf, alpha=momentum)
                direction = torch.addcmul(g, buf, self._per_member(mom, p))
            else:
                direction = buf
            g = torch.where(with_momentum, direction, g) if not all(mu != 0 for mu in mom) else direction
        p.addcmul_(g, self._per_member([-lr for lr in lrs], p))  # param.add_(grad, alpha=-lr)


class PopulationLion(PopulationOptimizer):
    """lion-pytorch's ``Lion`` (``update_fn``; weight decay applied as ``p *= 1 - lr * wd``)."""

    hyperparameter_names = ("lr", "beta1", "beta2", "weight_decay")

    def __init__(self, params, hyperparameters, maximize: bool = False) -> None:
        if maximize:
            raise ValueError("lion-pytorch's Lion has no maximize flag")
        super().__init__(params, hyperparameters, maximize)

    def _update(self, name: str, p: Tensor, g: Tensor, lrs: list[float]) -> None:
        b1, b2, wd = self.hp["beta1"], self.hp["beta2"], self.hp["weight_decay"]
        st = self.state[name]
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
        m = st["exp_avg"]
        p.mul_(self._per_member([1.0 - lr * w for lr, w in zip(lrs, wd)], p))
        update = torch.addcmul(m * self._per_member(b1, p), g, self._per_member([1.0 - b for b in b1], p)).sgn_()
        p.addcmul_(update, self._per_member([-lr for lr in lrs], p))
        m.mul_(self._per_member(b2, p)).addcmul_(g, self._per_member([1.0 - b for b in b2], p))


class PopulationAdamRAG(PopulationOptimizer):
    """This product's :class:`~sensitivity.optim.AdamRAG`, constant gamma, single-tensor path.

    Coupled weight decay by default (as the registry builds it); ``decoupled=True`` as AdamRAG's
    ``decoupled_weight_decay``.
    """

    hyperparameter_names = ("lr", "beta1", "beta2", "gamma", "weight_decay")

    def __init__(self, params, hyperparameters, maximize: bool = False, decoupled: bool = False) -> None:
        super().__init__(params, hyperparameters, maximize)
        self.decoupled = decoupled

    def _update(self, name: str, p: Tensor, g: Tensor, lrs: list[float]) -> None:
        t = self.step_count
        b1, b2, wd, gamma = self.hp["beta1"], self.hp["beta2"], self.hp["weight_decay"], self.hp["gamma"]
        st = self.state[name]
        if not st:
            st["exp_avg"] = torch.zeros_like(p)
            st["exp_avg_sq"] = torch.zeros_like(p)
            st["ravine_buffer"] = torch.zeros_like(p)
        m, v, d = st["exp_avg"], st["exp_avg_sq"], st["ravine_buffer"]
        any_wd = any(w != 0 for w in wd)
        if any_wd and not self.decoupled:
            g = torch.addcmul(g, p, self._per_member(wd, p))
        m.lerp_(g, self._per_member([1 - b for b in b1], p))
        v.mul_(self._per_member(b2, p))
        v.addcmul_(g * self._per_member([1 - b for b in b2], p), g)
        step_size = [lr / (1 - b ** t) for lr, b in zip(lrs, b1)]
        bc2_sqrt = [(1 - b ** t) ** 0.5 for b in b2]
        denom = v.sqrt().div_(self._per_member(bc2_sqrt, p)).add_(_EPS)
        delta = torch.div(m, denom, out=denom).mul_(self._per_member([-s for s in step_size], p))
        if any_wd and self.decoupled:  # delta.add_(param, alpha=-lr * weight_decay)
            delta = torch.addcmul(delta, p, self._per_member([-lr * w for lr, w in zip(lrs, wd)], p))
        gamma_prev = [0.0 if t - 1 < 1 else gm for gm in gamma]
        d.mul_(self._per_member(gamma_prev, p)).add_(delta)
        if any(gm != 0 for gm in gamma):  # delta.add_(d, alpha=gamma_t), skipped where gamma_t is 0
            delta = torch.addcmul(delta, d, self._per_member(gamma, p))
        p.add_(delta)


def build_population_optimizer(name: str, params: dict[str, Tensor],
                               hyperparameters: Sequence[dict[str, float]]) -> PopulationOptimizer:
    """The batched form of ``registry.build_optimizer(name, ...)`` for K members.

    Each member's hyperparameters are merged over the catalog's defaults and keys the optimizer
    does not take are ignored, as :func:`~sensitivity.optim.registry.build_optimizer` does; the
    flags are the registry's (Adam coupled, AdamW decoupled, NAG nesterov, SGD heavy ball).

    Args:
        name: catalog name (``adamrag``, ``adam``, ``adamw``, ``nag``, ``sgd``, ``lion``).
        params: name -> stacked parameter (K, *shape).
        hyperparameters: K dicts (``lr`` and any of ``beta1, beta2, gamma, weight_decay``).

    Raises:
        KeyError: no optimizer of that name (the message lists the known names).
    """
    info = optimizer_info(name)
    merged = [{**info.defaults, **{k: v for k, v in hp.items() if k in info.hyperparameters}}
              for hp in hyperparameters]
    if info.name == "adamrag":
        return PopulationAdamRAG(params, merged)
    if info.name in ("adam", "adamw"):
        return PopulationAdam(params, merged, decoupled=info.name == "adamw")
    if info.name == "nag":
        return PopulationSGD(params, merged, nesterov=True)
    if info.name == "sgd":
        return PopulationSGD(params, merged, nesterov=False)
    if info.name == "lion":
        return PopulationLion(params, merged)
    raise KeyError(f"optimizer {name!r} has no population form")
