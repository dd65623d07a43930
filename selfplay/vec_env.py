"""Building games and the vectorised env that runs them: ``trainer.vec_env`` picks SB3's
``DummyVecEnv`` (one process), ``SubprocVecEnv`` (one process per game) or
:class:`selfplay.ray_vec_env.RayVecEnv` (games on Ray actors, on one machine or a cluster).

Ray is an optional extra; it is imported only when ``trainer.vec_env=ray`` is chosen.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import fields
from functools import partial

from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from selfplay.config import Config, ConfigError, GameSchema
from selfplay.game import GameConfig, SelfPlayGame

#: The one line a user sees when the Ray backend is chosen without Ray installed.
RAY_INSTALL_HINT = ("config error: trainer.vec_env=ray needs Ray, which is not installed: "
                    "pip install 'selfplay[ray]' (from a checkout: pip install -e '.[ray]')")


class GameWorkersLost(RuntimeError):
    """The Ray backend gave up: more game workers died than ``ray.max_restarts`` allows, or a new
    one did not start within ``ray.start_timeout_s``."""


#: ``game.*`` keys that are schedules over training, which the trainer follows (not game rules).
GAME_SCHEDULES = ("position_first_steps", "rotation_tolerance_from", "rotation_tolerance_steps")


def game_config(cfg: Config) -> GameConfig:
    """The game rules of a run's config: ``game.*`` as they are, the teacher's goal source
    (``teacher.*``), and Bob's kind of actions and replay (``bob.algo``, ``bob.replay_alice``).
    With ``game.position_first_steps`` the game starts position-only; the trainer switches it."""
    rules = {f.name: getattr(cfg.game, f.name) for f in fields(GameSchema) if f.name not in GAME_SCHEDULES}
    rules["position_only"] = cfg.game.position_only_at(0)
    rules["alice_start_distance"] = tuple(cfg.game.alice_start_distance)
    return GameConfig(
        **rules,
        teacher=cfg.teacher.name,
        uniform_tasks=tuple(cfg.teacher.uniform_tasks),
        goal_distance=None if cfg.teacher.goal_distance is None else tuple(cfg.teacher.goal_distance),
        bob_actions="continuous" if cfg.bob.algo == "sac" else "discrete",
        alice_turns_for_replay=cfg.bob.algo == "sac" and cfg.bob.replay_alice,
    )


def make_game(cfg: Config, seed: int, render_mode: str | None = None) -> SelfPlayGame:
    """One game of a run's config, reset with ``seed``."""
    game = SelfPlayGame(
        n_objects=cfg.env.n_objects,
        config=game_config(cfg),
        env_kwargs=cfg.env.workspace(),
        bins=cfg.env.action_bins,
        max_objects=cfg.env.max_objects,
        render_mode=render_mode,
    )
    game.reset(seed=seed)
    return game


def _game_factory(cfg: Config, seed: int, trainer_pid: int | None = None) -> SelfPlayGame:
    """One game; in a worker process forked by the trainer (``trainer_pid``), the worker first
    ties its life to the trainer's (:func:`selfplay.processes.follow_parent`)."""
    if trainer_pid is not None and os.getpid() != trainer_pid:
        from selfplay.processes import follow_parent

        follow_parent(trainer_pid)
    return make_game(cfg, seed)


def require_ray() -> None:
    """Raise :class:`ConfigError` with :data:`RAY_INSTALL_HINT` when Ray cannot be imported."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except ValueError:  # a module entry of None (how tests hide an installed Ray)
        found = False
    if not found:
        raise ConfigError(RAY_INSTALL_HINT)


def make_vec_env(cfg: Config) -> VecEnv:
    """``trainer.n_games`` games behind the backend ``trainer.vec_env`` names. Game ``i`` starts
    from seed ``seed * 1000 + i`` on every backend, so they all play the same games."""
    factories = [partial(_game_factory, cfg, cfg.seed * 1000 + i) for i in range(cfg.trainer.n_games)]
    if cfg.trainer.vec_env == "ray":
        require_ray()
        from selfplay.ray_vec_env import RayVecEnv

        r = cfg.ray
        return RayVecEnv(factories, workers=r.workers, address=r.address, cpus_per_worker=r.cpus_per_worker,
                         spread=r.spread, max_restarts=r.max_restarts, start_timeout_s=r.start_timeout_s,
                         restart_seed=cfg.seed * 1000 + 500_000)
    if cfg.trainer.vec_env == "subproc":  # workers die with the trainer and leave signals to it
        factories = [partial(_game_factory, cfg, cfg.seed * 1000 + i, os.getpid()) for i in range(cfg.trainer.n_games)]
        return SubprocVecEnv(factories, start_method="fork")
    return DummyVecEnv(factories)
