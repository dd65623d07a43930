"""Our learning pipeline against SB3's: the collector's per-agent GAE equals SB3's
``RolloutBuffer.compute_returns_and_advantage`` on the same recorded trajectories, across rollout
boundaries; any MultiDiscrete action space goes through collect -> PPOLearner.update
(benchmarks/ladder_pipeline.py is rung 0 of the learning ladder)."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import DummyVecEnv

from benchmarks.ladder_pipeline import HYPERPARAMETERS, GameShaped, Tally, build_bob, make_venv
from selfplay.collector import Collector, state_value
from selfplay.game import BOB

SMALL = {**HYPERPARAMETERS, "width": 16, "head": [16], "batch_size": 32, "n_epochs": 2}


class Scripted(gym.Env):
    """A game-shaped env (Bob always acts) whose rewards, terminations and truncations follow a
    script. ``robot`` = [game, t]: every transition says which game and step it is. A reset's
    observation differs from the terminal one (which SB3's VecEnv keeps in the info)."""

    def __init__(self, game: int, rewards: np.ndarray, terminal: set[int], truncated: set[int] = frozenset(),
                 nvec=(3, 3, 3)) -> None:
        self.game, self.rewards, self.terminal, self.truncated, self.t = game, rewards, terminal, truncated, 0
        self.observation_space = gym.spaces.Dict({
            "robot": gym.spaces.Box(-1e3, 1e3, shape=(2,), dtype=np.float32),
            "objects": gym.spaces.Box(-1.0, 1.0, shape=(2, 3), dtype=np.float32),
            "goal": gym.spaces.Box(-1.0, 1.0, shape=(2, 3), dtype=np.float32),
            "mask": gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32),
            "phase": gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        })
        self.action_space = gym.spaces.MultiDiscrete(list(nvec))

    def observation(self, t: int, reset: bool = False) -> dict:
        rng = np.random.default_rng([self.game, t, reset])  # varied inputs: varied values
        return {"robot": np.array([self.game, t], np.float32),
                "objects": rng.uniform(-1, 1, (2, 3)).astype(np.float32),
                "goal": rng.uniform(-1, 1, (2, 3)).astype(np.float32),
                "mask": np.array([1.0, t % 2], np.float32), "phase": np.ones(1, np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation(self.t, reset=self.t > 0), {}  # t runs on across episodes

    def step(self, action):
        assert self.action_space.contains(np.asarray(action))
        t = self.t
        self.t += 1
        return self.observation(self.t), float(self.rewards[t]), t in self.terminal, t in self.truncated, {}


def sb3_advantages(rewards, values, dones, last_value, gamma, lam):
    """SB3's GAE over one env's steps: ``dones[t]`` ends the episode after step t; ``last_value``
    is the value of the step after the last (used unless that one ended an episode)."""
    space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    buffer = RolloutBuffer(len(rewards), space, gym.spaces.Discrete(2), gamma=gamma, gae_lambda=lam, n_envs=1)
    buffer.rewards[:, 0], buffer.values[:, 0] = rewards, values
    buffer.episode_starts[0, 0] = 1.0
    buffer.episode_starts[1:, 0] = dones[:-1]
    buffer.compute_returns_and_advantage(th.tensor([last_value]), np.array([dones[-1]]))
    return buffer.advantages[:, 0], buffer.returns[:, 0]


def test_collector_gae_equals_sb3_across_rollout_boundaries():
    gamma, lam, n_games, T = 0.9, 0.8, 3, 12
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(n_games, 3 * T)).astype(np.float32)
    terminal = [
        {3, 4, T - 1, 2 * T + 5},  # a one-step episode; an episode ending on a rollout's last step
        {T - 2, T + 1},  # ending one step before a boundary: a one-step stream is held
        set(),
    ]
    truncated = [
        {2 * T - 1},  # cut on a rollout's last step
        {T + 6},
        {7, 8, T + 3},  # cut (a TimeLimit) twice in a row; between cuts, bootstrapped at every boundary
    ]
    venv = DummyVecEnv([lambda g=g: Scripted(g, rewards[g], terminal[g], truncated[g]) for g in range(n_games)])
    bob = build_bob(0, venv.observation_space, venv.action_space, {**SMALL, "gamma": gamma, "gae_lambda": lam})
    collector = Collector(venv, None, bob)
    batches = []
    for _ in range(2):
        collector.collect(n_games * T)
        alice, batch = collector.take_batches((gamma, gamma), (lam, lam))[0]
        assert alice is None and batch["actions"].shape[1:] == (3,)
        batches.append(batch)
    held = [t for game in collector.streams for t in game[BOB]]

    # Everything each game recorded (2T steps), in time order, from the batches and the held steps.
    values = np.full((n_games, 2 * T), np.nan, np.float32)
    seen = np.zeros((n_games, 2 * T), int)
    for batch in batches:
        for (g, t), v, r in zip(batch["observations"]["robot"].astype(int), batch["values"], batch["rewards"]):
            values[g, t], seen[g, t] = v, seen[g, t] + 1
            assert r == pytest.approx(rewards[g, t])
    for transition in held:
        g, t = transition.observation["robot"].astype(int)
        values[g, t] = transition.value
    assert not np.isnan(values).any()
    dones = np.array([[t in terminal[g] | truncated[g] for t in range(2 * T)] for g in range(n_games)])
    # Each step goes to exactly one update, as in SB3: Bob acts next in every game, so nothing waits.
    assert held == []
    assert (seen == 1).all()
    next_values = [state_value(bob.policy, {k: v[g] for k, v in collector.obs.items()}) for g in range(n_games)]

    # SB3's PPO.collect_rollouts on a truncation: reward += gamma * V(terminal observation), then done.
    sb3_rewards = rewards[:, : 2 * T].copy()
    for g in range(n_games):
        for t in truncated[g]:
            terminal_obs = {k: v for k, v in venv.envs[g].observation(t + 1).items() if k != "phase"}
            with th.no_grad():
                sb3_rewards[g, t] += gamma * bob.policy.predict_values(bob.policy.obs_to_tensor(terminal_obs)[0]).item()

    # SB3 on the steps each update got from each game, bootstrapped with the value of the step after.
    for batch in batches:
        robot = batch["observations"]["robot"].astype(int)
        for g in range(n_games):
            rows = np.flatnonzero(robot[:, 0] == g)
            steps = robot[rows, 1]
            assert (np.diff(steps) == 1).all()  # in time order, no gaps
            first, last = steps[0], steps[-1]
            window = slice(first, last + 1)
            last_value = values[g, last + 1] if last + 1 < 2 * T else next_values[g]
            adv, ret = sb3_advantages(sb3_rewards[g, window], values[g, window], dones[g, window].astype(np.float32),
                                      last_value, gamma, lam)
            np.testing.assert_allclose(batch["advantages"][rows], adv, rtol=1e-5, atol=1e-5, err_msg=f"game {g}")
            np.testing.assert_allclose(batch["returns"][rows], ret, rtol=1e-5, atol=1e-5, err_msg=f"game {g}")
    venv.close()


def test_a_one_action_task_goes_through_collect_load_and_train():
    th.set_num_threads(1)
    tally = Tally()
    venv = make_venv("CartPole-v1", 4, tally, with_phase=True)
    assert venv.action_space.shape == (1,)
    bob = build_bob(0, venv.observation_space, venv.action_space, SMALL)
    before = {k: v.clone() for k, v in bob.policy.state_dict().items()}
    collector = Collector(venv, None, bob)
    stats = collector.collect(256)
    assert stats.steps == [0, 256] and tally.steps == 256 and tally.episodes
    _, batch = collector.take_batches((0.99, 0.99), (0.95, 0.95))[0]
    assert batch["actions"].shape == (256, 1) and set(np.unique(batch["actions"])) <= {0, 1}  # nothing held back
    bob.update(batch)
    assert any(not th.equal(before[k], v) for k, v in bob.policy.state_dict().items())
    venv.close()


def test_both_arms_start_from_the_same_weights():
    from stable_baselines3 import PPO

    from selfplay.policies import policy_kwargs

    ours = make_venv("CartPole-v1", 2, Tally(), with_phase=True)
    theirs = make_venv("CartPole-v1", 2, Tally(), with_phase=False)
    bob = build_bob(7, ours.observation_space, ours.action_space, SMALL)
    sb3 = PPO("MultiInputPolicy", theirs, seed=7, device="cpu",
              policy_kwargs=policy_kwargs(use_goal=True, width=SMALL["width"], depth=SMALL["depth"], head=tuple(SMALL["head"])))
    a, b = bob.policy.state_dict(), sb3.policy.state_dict()
    assert a.keys() == b.keys() and all(th.equal(a[k], b[k]) for k in a)
    assert isinstance(GameShaped("CartPole-v1").action_space, gym.spaces.MultiDiscrete)


def test_state_value_is_sb3s_value():
    from selfplay.collector import state_value

    env = Scripted(0, np.zeros(3), set())
    bob = build_bob(0, env.observation_space, env.action_space, SMALL)
    for t in range(3):
        observation = env.observation(t, reset=t == 2)
        with th.no_grad():
            expected = bob.policy.predict_values(bob.policy.obs_to_tensor({k: v for k, v in observation.items() if k != "phase"})[0])
        assert state_value(bob.policy, observation) == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_no_update_trains_a_tiny_remainder_minibatch():
    env = Scripted(0, np.zeros(20), set())
    venv = DummyVecEnv([lambda: env])
    bob = build_bob(0, venv.observation_space, venv.action_space, {**SMALL, "batch_size": 4, "n_epochs": 2})
    collector = Collector(venv, None, bob)
    collector.collect(9)
    _, batch = collector.take_batches((0.99, 0.99), (0.95, 0.95))[0]
    assert len(batch["actions"]) == 9  # batch sizes vary in our pipeline (held-back steps, Alice/Bob split)
    sizes = []
    evaluate = bob.policy.evaluate_actions

    def recording(obs, actions):
        sizes.append(len(actions))
        return evaluate(obs, actions)

    bob.policy.evaluate_actions = recording
    bob.update(batch)
    assert sum(sizes) == 2 * 9
    assert min(sizes) >= bob.settings.batch_size // 2, f"minibatch sizes {sizes}"
