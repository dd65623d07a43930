"""Alice Behavioural Cloning: relabelling, the clipped loss, and PPO equivalence at beta = 0."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

from selfplay.abc import abc_loss
from selfplay.game import BOB, GameConfig, SelfPlayGame
from selfplay.ppo import ABCPPO, load_batch
from selfplay.trainer import agent_observation_space, build_model
from tests.helpers import tiny_config
from tests.test_game import HOLD, push_actions


def failed_goal_with_states():
    """Alice pushes a block, Bob times out; returns the demonstration, the goal and Alice's
    scene state before each of her steps."""
    game = SelfPlayGame(1, GameConfig(alice_steps=30, bob_steps_per_object=5, max_goals=2), {"randomise_robot": False})
    game.reset(seed=0)
    states, sent = [], []
    policy = push_actions(game)
    for _ in range(game.config.alice_steps):
        states.append(game.sim.get_state())
        sent.append(next(policy))
        game.step(sent[-1])
    goal = game._goal.copy()
    for _ in range(game.bob_timeout):
        _, _, _, _, info = game.step(HOLD)
    game.sent_actions = np.stack(sent)
    return game, info["demonstration"], goal, states


def test_relabelled_observations_equal_what_bob_sees():
    game, demo, goal, states = failed_goal_with_states()
    assert len(demo["actions"]) == len(states)
    for t in (0, 7, len(states) - 1):
        game.sim.set_state(states[t])
        game.sim.set_goal(goal)
        seen = game.sim.refresh()
        for key in seen:
            np.testing.assert_allclose(demo["observations"][key][t], seen[key], atol=2e-6, err_msg=f"{key} at step {t}")
        assert demo["observations"]["phase"][t, 0] == 1.0


def test_demonstrated_actions_are_alices():
    game, demo, _, _ = failed_goal_with_states()
    np.testing.assert_array_equal(demo["actions"], game.sent_actions)


def test_abc_loss_is_the_clipped_ratio():
    old = th.zeros(4)
    new = th.log(th.tensor([0.5, 0.9, 1.1, 2.0]))
    assert abc_loss(new, old, 0.2).item() == pytest.approx(-(0.8 + 0.9 + 1.1 + 1.2) / 4)


def _bob_and_batch(seed=0, beta=0.5):
    cfg = tiny_config(**{"abc.beta": beta, "seed": seed})
    game, demo, _, _ = failed_goal_with_states()
    space = agent_observation_space(game.observation_space)
    bob = build_model(cfg, BOB, space, game.action_space)
    rng = np.random.default_rng(seed)
    observations = {k: v for k, v in demo["observations"].items() if k in space.spaces}
    size = len(demo["actions"])
    batch = {
        "observations": observations,
        "actions": rng.integers(0, 11, (size, 6)),
        "values": rng.normal(size=size).astype(np.float32),
        "log_probs": np.full(size, -14.0, dtype=np.float32),
        "advantages": rng.normal(size=size).astype(np.float32),
        "returns": rng.normal(size=size).astype(np.float32),
    }
    return cfg, bob, batch, observations, demo["actions"]


def _log_likelihood(model, observations, actions):
    with th.no_grad():
        obs, _ = model.policy.obs_to_tensor(observations)
        _, log_prob, _ = model.policy.evaluate_actions(obs, th.as_tensor(actions))
    return log_prob.mean().item()


def test_a_few_abc_steps_raise_bobs_likelihood_of_alices_actions():
    cfg, bob, batch, observations, actions = _bob_and_batch(beta=0.5)
    batch["advantages"][:] = 0.0  # isolate the ABC term
    before = _log_likelihood(bob, observations, actions)
    bob.demonstrations.add(observations, actions, np.full(len(actions), before, dtype=np.float32))
    for _ in range(5):
        load_batch(bob, batch)
        bob.train()
    after = _log_likelihood(bob, observations, actions)
    assert after > before + 0.5, (before, after)


def test_with_beta_zero_the_update_equals_plain_sb3_ppo():
    cfg, bob, batch, observations, actions = _bob_and_batch(beta=0.0)
    bob.demonstrations.add(observations, actions, np.zeros(len(actions), dtype=np.float32))
    plain = PPO(
        "MultiInputPolicy", bob.get_env(), learning_rate=bob.learning_rate, n_steps=bob.n_steps, batch_size=bob.batch_size,
        n_epochs=bob.n_epochs, gamma=bob.gamma, gae_lambda=bob.gae_lambda, ent_coef=bob.ent_coef, vf_coef=bob.vf_coef,
        clip_range=0.2, max_grad_norm=bob.max_grad_norm, policy_kwargs=bob.policy_kwargs, seed=0, device="cpu",
    )
    plain.policy.load_state_dict(bob.policy.state_dict())
    plain.policy.optimizer.load_state_dict(bob.policy.optimizer.state_dict())
    plain.set_logger(bob.logger)
    for model in (bob, plain):
        load_batch(model, batch)
        np.random.seed(123)  # SB3's buffer shuffles with numpy's global generator
        model.train()
    for (name, a), (_, b) in zip(bob.policy.state_dict().items(), plain.policy.state_dict().items()):
        assert th.equal(a, b), name
    assert isinstance(bob, ABCPPO)
