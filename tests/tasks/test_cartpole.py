"""cartpole: REINFORCE with a learned baseline on gymnasium's CartPole-v1, seeded end to end, with its
returns, evaluation and collapse rule checked against hand computations."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

from sensitivity.tasks import get_task
from sensitivity.tasks.cartpole import COLLAPSE_ENTROPY, PolicyValueNet, run_episodes
from sensitivity.train import train_trial

CARTPOLE = get_task("cartpole")
SMALL = dict(epochs=2, steps_per_epoch=2, batch_size=2, eval_episodes=3)


def test_returns_to_go_and_episode_returns_match_a_hand_rollout():
    torch.manual_seed(0)
    model = PolicyValueNet()
    rollout, entropy = run_episodes(model, "CartPole-v1", [7], torch.Generator().manual_seed(3), discount=0.9)
    n = len(rollout.actions)
    # replay the same actions in a fresh environment with the same seed: same states, same length
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=7)
    for t, a in enumerate(rollout.actions.tolist()):
        assert np.allclose(rollout.obs[t].numpy(), obs, atol=1e-6)
        obs, reward, terminated, truncated, _ = env.step(a)
    assert terminated or truncated
    assert rollout.episode_returns == [float(n)]  # reward 1 per step
    expected = [(1 - 0.9 ** (n - t)) / (1 - 0.9) for t in range(n)]  # sum_k 0.9^k over the steps left
    assert rollout.returns.tolist() == pytest.approx(expected, rel=1e-6)
    # a near-uniform initial policy has entropy close to ln 2
    assert entropy == pytest.approx(math.log(2), abs=0.01)


def test_evaluation_is_a_deterministic_function_of_the_weights():
    cfg = CARTPOLE.config(**SMALL)
    data = CARTPOLE.load(cfg)
    torch.manual_seed(1)
    model = CARTPOLE.build_model(cfg, data)
    torch.manual_seed(123)  # the global random state must not matter
    a = CARTPOLE.evaluate(cfg, model, data, autocast=False)
    b = CARTPOLE.evaluate(cfg, model, data, autocast=False)
    assert a == b
    assert set(a) == {"return", "policy_entropy"} and 8 <= a["return"] <= 500


def test_same_seed_same_curve_other_seed_other_curve():
    cfg = CARTPOLE.config(**SMALL)
    run = lambda seed: train_trial(CARTPOLE, cfg, "adam", {"lr": 1e-2}, seed=seed, epochs=2, divergence_factor=5.0)  # noqa: E731
    a, b, c = run(4), run(4), run(5)
    assert a.metrics == b.metrics and a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss
    assert a.steps == 4 and a.epochs_run == 2
    assert a.throughput > 0  # environment steps per second


@pytest.mark.slow
def test_adam_learns_to_balance_the_pole():
    cfg = CARTPOLE.config(epochs=4, steps_per_epoch=10, batch_size=8, eval_episodes=10)
    result = train_trial(CARTPOLE, cfg, "adam", {"lr": 1e-2}, seed=0, epochs=4, divergence_factor=5.0)
    assert not result.diverged
    assert result.initial["return"] < 40  # a near-uniform policy falls within a few dozen steps
    assert max(result.metrics["return"]) > 3 * result.initial["return"]


def test_collapse_rule():
    initial = {"return": 20.0, "policy_entropy": 0.69}
    collapsed = {"return": 9.4, "policy_entropy": COLLAPSE_ENTROPY / 2}
    assert "collapsed" in CARTPOLE.divergence(3, 0.1, collapsed, initial, 5.0)
    # deterministic but good is not a collapse, nor is poor but still exploring
    assert CARTPOLE.divergence(3, 0.1, {"return": 500.0, "policy_entropy": 1e-4}, initial, 5.0) == ""
    assert CARTPOLE.divergence(3, 0.1, {"return": 9.4, "policy_entropy": 0.3}, initial, 5.0) == ""
    assert "non-finite" in CARTPOLE.divergence(3, 0.1, {"return": 9.4, "policy_entropy": math.nan}, initial, 5.0)


def test_a_huge_learning_rate_is_marked_diverged_with_its_reason():
    cfg = CARTPOLE.config(**SMALL)
    result = train_trial(CARTPOLE, cfg, "nag", {"lr": 1e6, "beta1": 0.9}, seed=0, epochs=2, divergence_factor=5.0)
    assert result.diverged
    assert "non-finite" in result.diverged_reason or "collapsed" in result.diverged_reason
    assert result.objective("return") == result.initial["return"]
