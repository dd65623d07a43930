"""Shared builders for selfplay tests."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from selfplay.config import Config, make_config
from selfplay.events import Demonstration, event_of
from selfplay.game import BOB, GameConfig, SelfPlayGame
from selfplay.learning import agent_observation_space, build_learner
from selfplay.vec_env import game_config
from tabletop_env.scripted import move_action
from tabletop_env.wrappers import ACTION_DIMS, DEFAULT_BINS, nearest_bins

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "game": {"alice_steps": 20, "bob_steps_per_object": 20, "max_goals": 2},
    "trainer": {"total_steps": 512, "n_games": 2, "rollout_steps": 256, "checkpoint_every": 1},
    "alice": {"batch_size": 64, "width": 32, "head": [32]},
    "bob": {"batch_size": 64, "width": 32, "head": [32]},
    "logger": {"wandb": {"mode": "disabled"}, "progress": "lines"},
}


#: The same small setup as command-line overrides (``python -m selfplay.train``).
TINY_ARGS = [
    "game.alice_steps=20", "game.bob_steps_per_object=20", "game.max_goals=2",
    "trainer.n_games=2", "trainer.rollout_steps=256", "trainer.checkpoint_every=1",
    "alice.batch_size=64", "bob.batch_size=64", "alice.width=32", "bob.width=32",
    "logger.progress=lines",
]


def tiny_config(**overrides) -> Config:
    """A Config small enough for tests (validated like a command line's)."""
    return make_config(TINY, **overrides)


def game_rules(**overrides) -> GameConfig:
    """The user's default game rules (``selfplay/conf/``) with ``overrides`` (:class:`GameConfig` fields)."""
    return replace(game_config(make_config()), **overrides)


def train_env(**extra: str) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false", "HYDRA_FULL_ERROR": "0", **extra}


def train_cli(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """``python -m selfplay.train <args>`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "selfplay.train", *args], cwd=ROOT, env=train_env(),
                          capture_output=True, text=True, timeout=timeout, **popen)


def import_ray():
    """Ray, or a skip when the ``ray`` extra is not installed. CI sets SELFPLAY_REQUIRE_RAY=1 so
    that the Ray tests fail there instead of being skipped."""
    import os

    import pytest

    if os.environ.get("SELFPLAY_REQUIRE_RAY") == "1":
        import ray

        return ray
    return pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")


def sb3_ppo_twin(learner):
    """SB3's own ``PPO`` with ``learner``'s settings, weights and optimiser state, to run its real
    ``PPO.train`` beside :meth:`PPOLearner.update` (SB3 needs an env for the spaces: a stub)."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv

    class Spaces(gym.Env):
        observation_space, action_space = learner.observation_space, learner.action_space

    s = learner.settings
    model = PPO("MultiInputPolicy", DummyVecEnv([Spaces]), learning_rate=s.learning_rate, n_steps=64, batch_size=s.batch_size,
                n_epochs=s.n_epochs, gamma=s.gamma, gae_lambda=s.gae_lambda, ent_coef=s.ent_coef, vf_coef=s.vf_coef,
                clip_range=s.clip_range, clip_range_vf=s.clip_range_vf, target_kl=s.target_kl, max_grad_norm=s.max_grad_norm,
                normalize_advantage=s.normalize_advantage, policy_kwargs=learner.policy_kwargs, seed=0, device="cpu")
    model.policy.load_state_dict(learner.policy.state_dict())
    model.policy.optimizer.load_state_dict(learner.optimizer.state_dict())
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def fill_rollout_buffer(model, batch: dict) -> None:
    """SB3's ``DictRolloutBuffer`` of ``model`` holding ``batch`` (the collector's format) as one
    rollout of one env, so that ``model.train()`` trains on exactly those transitions."""
    from stable_baselines3.common.buffers import DictRolloutBuffer

    size = len(batch["actions"])
    buffer = DictRolloutBuffer(size, model.observation_space, model.action_space, device=model.device,
                               gae_lambda=model.gae_lambda, gamma=model.gamma, n_envs=1)
    for key in buffer.observations:
        buffer.observations[key][:] = batch["observations"][key].reshape(buffer.observations[key].shape)
    buffer.actions[:] = batch["actions"].reshape(buffer.actions.shape)
    for name in ("values", "log_probs", "advantages", "returns"):
        getattr(buffer, name)[:] = batch[name].reshape(-1, 1)
    buffer.pos, buffer.full = size, True
    model.rollout_buffer, model.n_steps = buffer, size


# -- scripted players and batches for the game, ABC and learner tests ----------------------------
#: A discrete game action: middle bins (stay still), fingers fully open.
HOLD = np.full(ACTION_DIMS, DEFAULT_BINS // 2)
HOLD[-1] = DEFAULT_BINS - 1


def push_actions(game: SelfPlayGame, distance: float = 0.12, direction: float | None = None):
    """A scripted Alice that pushes block 0 along ``direction`` * y by ``distance`` m (default:
    towards the middle of the table), then waits."""
    block = game.sim.object_poses()[0, :3]
    s = direction if direction is not None else (-1.0 if block[1] > 0 else 1.0)
    waypoints = [  # (tool target, steps, speed limit in [0, 1]: a push at 2 cm per step, not 5)
        (block + [0, -0.08 * s, 0.10], 8, 1.0),
        (block + [0, -0.08 * s, 0.0], 8, 1.0),
        (block + [0, (distance - 0.03) * s, 0.0], 12, 0.4),
        (block + [0, (distance - 0.03) * s, 0.12], 200, 1.0),
    ]
    for target, steps, limit in waypoints:
        for _ in range(steps):
            action = move_action(game.sim, target, yaw=0.0, opening=-1.0)
            action[:3] = np.clip(action[:3], -limit, limit)
            yield nearest_bins(action, DEFAULT_BINS)


def failed_goal_with_states():
    """Alice pushes a block, Bob times out; returns the demonstration, the goal and Alice's
    scene state before each of her steps."""
    game = SelfPlayGame(1, game_rules(alice_steps=30, bob_steps_per_object=5, max_goals=2, alice_start="continue"),
                        {"randomise_robot": False})
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
    demo = event_of(info, Demonstration)
    return game, {"observations": demo.observations, "actions": demo.actions}, goal, states


def bob_and_batch(seed: int = 0, size: int | None = None, **overrides):
    """Bob's learner (tiny config + ``overrides``), a batch of ``size`` transitions (default:
    one demonstration's) with random actions and advantages, and the demonstration."""
    cfg = tiny_config(**{"seed": seed, **overrides})
    game, demo, _, _ = failed_goal_with_states()
    space = agent_observation_space(game.observation_space)
    bob = build_learner(cfg, BOB, space, game.action_space)
    rng = np.random.default_rng(seed)
    observations = {k: v for k, v in demo["observations"].items() if k in space.spaces}
    size = size or len(demo["actions"])
    rows = np.arange(size) % len(demo["actions"])
    batch = {
        "observations": {k: v[rows] for k, v in observations.items()},
        "actions": rng.integers(0, 11, (size, 6)),
        "values": rng.normal(size=size).astype(np.float32),
        "log_probs": np.full(size, -14.0, dtype=np.float32),
        "advantages": rng.normal(size=size).astype(np.float32),
        "returns": rng.normal(size=size).astype(np.float32),
    }
    return bob, batch, demo


class Oracle:
    """Solves every goal at once by teleporting the objects there (tests the counting)."""

    def bind(self, env):
        self.env = env

    def __call__(self, obs):
        self.env.set_object_poses(self.env.goal)
        return np.zeros(ACTION_DIMS)


def idle(obs):
    """Holds the tool still with open fingers."""
    return np.array([0, 0, 0, 0, 0, 1.0])
