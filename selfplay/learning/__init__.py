"""The learners: one per agent, each owning its policy, optimiser and update.

- :mod:`selfplay.learning.ppo`: :class:`PPOLearner`, PPO with optional extra losses (Alice, Bob).
- :mod:`selfplay.learning.losses`: the extra-loss interface and the minibatch it sees.
- :mod:`selfplay.learning.cloning`: Alice Behavioural Cloning (relabelling, buffer, loss): Bob's extra loss.
- :mod:`selfplay.learning.sac`: :class:`OffPolicyBob`, SB3's SAC with hindsight goals (``bob.algo=sac``).

:func:`build_learner` makes the learner a run's config asks for.
"""

from __future__ import annotations

import gymnasium as gym

from selfplay.config import Config
from selfplay.game import ALICE, BOB
from selfplay.learning.cloning import AliceBehaviouralCloning
from selfplay.learning.ppo import PPO_STATS, PPOLearner
from selfplay.learning.sac import SAC_STATS, OffPolicyBob

Learner = PPOLearner | OffPolicyBob


def agent_observation_space(game_space: gym.spaces.Dict) -> gym.spaces.Dict:
    """Both agents see a :class:`TabletopEnv` observation (the game's, without ``phase``), so
    Bob's checkpoint acts on any holdout id unchanged."""
    return gym.spaces.Dict({k: v for k, v in game_space.spaces.items() if k != "phase"})


def build_learner(cfg: Config, agent: int, observation_space: gym.spaces.Dict, action_space: gym.spaces.Space,
                  template: bool = False) -> Learner:
    """Alice: a :class:`PPOLearner` without goal features; Bob: with goal features and ABC
    (``abc.enabled``, weight ``abc.beta``), or with ``bob.algo=sac`` an :class:`OffPolicyBob`.
    ``observation_space``: the agents' (:func:`agent_observation_space`). A ``template`` (the
    snapshot pool's) only needs its policy: no replay buffer. Seeds: ``seed + agent``."""
    settings = cfg.alice if agent == ALICE else cfg.bob
    if agent == BOB and settings.algo == "sac":
        return OffPolicyBob(cfg, observation_space, replay=not template)
    extra = []
    if agent == BOB and cfg.abc.enabled and cfg.abc.beta > 0:
        extra.append(AliceBehaviouralCloning(cfg.abc.beta, cfg.abc.clip, batch_size=cfg.abc.batch_size or settings.batch_size,
                                             seed=cfg.seed + agent))
    return PPOLearner(observation_space, action_space, settings, use_goal=agent == BOB, seed=cfg.seed + agent,
                      device=cfg.trainer.device, extra_losses=extra)


__all__ = ["PPO_STATS", "SAC_STATS", "AliceBehaviouralCloning", "Learner", "OffPolicyBob", "PPOLearner",
           "agent_observation_space", "build_learner"]
