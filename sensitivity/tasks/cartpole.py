"""``cartpole``: REINFORCE with a learned baseline on gymnasium's ``CartPole-v1``.

The agent (Williams 1992; Sutton & Barto 2018, sec. 13.4, "REINFORCE with baseline"): a policy
network (4 -> 64 -> 64 -> 2, tanh) and a value network of the same shape with one output, both
trained by the optimizer under study. One optimizer step:

1. run ``batch_size`` episodes with the current policy, sampling each action from its softmax;
2. for every visited state s_t, the discounted return G_t = sum_k discount^k r_{t+k};
3. advantage A_t = G_t - V(s_t), standardised over the batch (mean 0, standard deviation 1);
4. loss = -mean_t[log pi(a_t | s_t) A_t] + mean_t[((1 - discount) G_t - v(s_t))^2], the value
   network v predicting the return scaled by (1 - discount) (so V = v / (1 - discount)), which
   keeps both terms of order one.

An **epoch** is ``steps_per_epoch`` such steps. After each epoch the policy is **evaluated** on
``eval_episodes`` episodes whose environment seeds are fixed (the same for every trial, a paired
comparison) and whose actions are sampled with a generator of fixed seed, so the evaluation is a
deterministic function of the weights. Metrics: ``return``, the mean undiscounted evaluation
return (reward per episode, 9 to 500 on CartPole-v1, maximised), and ``policy_entropy``, the mean
entropy of the policy over the evaluation states (nats; ln 2 = 0.693 is a uniform choice).

**Seeds**: the trial seed initialises both networks and the generator from which every training
episode's environment seed and every sampled action are drawn.

**Divergence**: a non-finite loss or parameter (caught by the training loop), or a **collapse**:
after an epoch the policy is near-deterministic (``policy_entropy`` below
:data:`COLLAPSE_ENTROPY` = 1 % of ln 2) while its evaluation return is no better than at
initialisation. Such a policy has stopped exploring; its log-probabilities saturate and REINFORCE
cannot move it again. ``--divergence-factor`` does not apply to this task.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from sensitivity.errors import UserError
from sensitivity.tasks.base import Metric, Task

ENV_ID = "CartPole-v1"
EVAL_SEED = 1_000_000
"""Evaluation episode i resets its environment with seed EVAL_SEED + i; actions are sampled with a
generator seeded EVAL_SEED."""
COLLAPSE_ENTROPY = 0.01 * math.log(2)
"""Mean policy entropy (nats) below which a policy counts as deterministic for the collapse rule."""

RETURN = Metric("return", "maximize", "reward/episode", "mean evaluation return")
ENTROPY = Metric("policy_entropy", "maximize", "nats", "policy entropy on evaluation states")


@dataclasses.dataclass(frozen=True)
class EnvData:
    """What ``cartpole`` loads: the environment's id (environments are made per episode batch)."""

    env_id: str
    description: str

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> "EnvData":
        return self


@dataclasses.dataclass
class Rollout:
    """The experience of one batch of episodes.

    Attributes:
        obs: visited states, shape (S, 4) float32, S the total steps of all episodes.
        actions: actions taken, shape (S,) int64.
        returns: discounted returns-to-go G_t, shape (S,) float32.
        episode_returns: undiscounted return of each episode, length ``batch_size``.
        discount: the discount factor of ``returns``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor
    episode_returns: list[float]
    discount: float


class PolicyValueNet(nn.Module):
    """Two MLPs on the CartPole state (B, 4): ``forward`` gives action logits (B, 2), ``value``
    the scaled value v(s) = (1 - discount) V(s), shape (B,)."""

    def __init__(self, obs_dim: int = 4, actions: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.policy = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, actions))
        self.critic = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, 1))
        with torch.no_grad():  # start near the uniform policy, as PPO implementations do
            self.policy[-1].weight.mul_(0.01)
            self.policy[-1].bias.zero_()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def _make_envs(env_id: str, n: int) -> list[Any]:
    import gymnasium

    return [gymnasium.make(env_id) for _ in range(n)]


@torch.no_grad()
def run_episodes(model: PolicyValueNet, env_id: str, env_seeds: list[int], generator: torch.Generator,
                 discount: float) -> tuple[Rollout, float]:
    """Run one episode per seed with the policy, all environments stepped together.

    Args:
        model: the agent; its parameters' device is where actions are sampled.
        env_id: gymnasium environment id.
        env_seeds: seed of each episode's ``reset``.
        generator: random source of the sampled actions (on the model's device).
        discount: discount factor of the returns-to-go.

    Returns:
        (the rollout, mean policy entropy in nats over every visited state).
    """
    device = next(model.parameters()).device
    envs = _make_envs(env_id, len(env_seeds))
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, env_seeds)]
    trajectories: list[list[tuple[Any, int, float]]] = [[] for _ in envs]
    alive = list(range(len(envs)))
    entropy_sum, states = 0.0, 0
    while alive:
        x = torch.as_tensor(np.stack([obs[i] for i in alive]), dtype=torch.float32, device=device)
        logits = model(x).float()
        probs = torch.softmax(logits, dim=-1)
        entropy_sum += float(-(probs * torch.log_softmax(logits, dim=-1)).sum())
        states += len(alive)
        actions = torch.multinomial(probs, 1, generator=generator).squeeze(1).tolist()
        still = []
        for i, a in zip(alive, actions):
            next_obs, reward, terminated, truncated, _ = envs[i].step(a)
            trajectories[i].append((obs[i], a, float(reward)))
            obs[i] = next_obs
            if not (terminated or truncated):
                still.append(i)
        alive = still
    for env in envs:
        env.close()
    all_obs, all_actions, all_returns, episode_returns = [], [], [], []
    for traj in trajectories:
        g, rets = 0.0, []
        for _, _, r in reversed(traj):
            g = r + discount * g
            rets.append(g)
        rets.reverse()
        all_obs += [o for o, _, _ in traj]
        all_actions += [a for _, a, _ in traj]
        all_returns += rets
        episode_returns.append(sum(r for _, _, r in traj))
    rollout = Rollout(
        obs=torch.as_tensor(np.stack(all_obs), dtype=torch.float32, device=device),
        actions=torch.as_tensor(all_actions, dtype=torch.int64, device=device),
        returns=torch.as_tensor(all_returns, dtype=torch.float32, device=device),
        episode_returns=episode_returns,
        discount=discount,
    )
    return rollout, entropy_sum / max(states, 1)


class CartPoleTask(Task):
    """REINFORCE with a learned baseline on CartPole-v1 (see the module docstring)."""

    name = "cartpole"
    description = "REINFORCE with learned baseline (policy + value MLPs 4-64-64) on gymnasium CartPole-v1"
    defaults = {
        "dataset": ENV_ID,
        "epochs": 10,
        "batch_size": 8,
        "steps_per_epoch": 10,
        "eval_episodes": 10,
        "discount": 0.99,
        "hidden": 64,
    }
    datasets = (ENV_ID,)
    metrics = (RETURN, ENTROPY)
    reference = "return"
    epoch = "steps_per_epoch policy updates of batch_size episodes each"
    example_unit = "env steps"
    data_source = "gymnasium's CartPole-v1 simulator (no data files)"
    cpu_trial_time = "3.5 s CPU, 1 thread (14.1 s wall on 2 cores shared with ~10 busy jobs); longer as the policy improves"
    cpu_threads = 1

    def load(self, config: dict[str, Any]) -> EnvData:
        try:
            import gymnasium
        except ImportError:
            raise UserError("task cartpole needs gymnasium; install it with `pip install gymnasium`") from None
        env_id = config.get("dataset") or ENV_ID
        try:
            gymnasium.make(env_id).close()
        except gymnasium.error.Error as err:
            raise UserError(f"gymnasium has no environment {env_id!r} ({err}); use {ENV_ID}") from None
        return EnvData(env_id, f"gymnasium {gymnasium.__version__} {env_id}, {config['eval_episodes']} evaluation episodes")

    def build_model(self, config: dict[str, Any], data: EnvData) -> nn.Module:
        return PolicyValueNet(hidden=int(config["hidden"]))

    def steps_per_epoch(self, config: dict[str, Any], data: EnvData) -> int:
        return int(config["steps_per_epoch"])

    def batches(self, config: dict[str, Any], data: EnvData, model: nn.Module,
                generator: torch.Generator) -> Iterator[Rollout]:
        n = int(config["batch_size"])
        for _ in range(self.steps_per_epoch(config, data)):
            seeds = torch.randint(0, 2**31 - 1, (n,), generator=generator, device=generator.device).tolist()
            rollout, _ = run_episodes(model, data.env_id, seeds, generator, float(config["discount"]))
            yield rollout

    def loss(self, model: nn.Module, batch: Rollout) -> tuple[torch.Tensor, int]:
        discount = batch.discount
        logp = torch.log_softmax(model(batch.obs).float(), dim=-1).gather(1, batch.actions[:, None]).squeeze(1)
        v = model.value(batch.obs).float()
        advantage = batch.returns - v.detach() / (1 - discount)
        advantage = (advantage - advantage.mean()) / (advantage.std(unbiased=False) + 1e-8)
        policy_loss = -(logp * advantage).mean()
        value_loss = nn.functional.mse_loss(v, batch.returns * (1 - discount))
        return policy_loss + value_loss, len(batch.actions)

    def evaluate(self, config: dict[str, Any], model: nn.Module, data: EnvData, autocast: bool) -> dict[str, float]:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
        seeds = [EVAL_SEED + i for i in range(int(config["eval_episodes"]))]
        rollout, entropy = run_episodes(model, data.env_id, seeds, generator, float(config["discount"]))
        return {"return": sum(rollout.episode_returns) / len(seeds), "policy_entropy": entropy}

    def divergence(self, epoch: int, train_loss: float, metrics: dict[str, float], initial: dict[str, float],
                   factor: float) -> str:
        entropy, ret = metrics["policy_entropy"], metrics["return"]
        if not (math.isfinite(entropy) and math.isfinite(ret)):
            return f"non-finite evaluation after epoch {epoch}"
        if entropy < COLLAPSE_ENTROPY and ret <= initial["return"]:
            return (f"policy collapsed after epoch {epoch}: entropy {entropy:.2g} nats, "
                    f"return {ret:.1f} <= initial {initial['return']:.1f}")
        return ""


CARTPOLE = CartPoleTask()
