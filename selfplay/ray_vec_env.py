"""Games on Ray actors: an SB3 ``VecEnv`` for one machine or a cluster (``trainer.vec_env=ray``).

Each :class:`GameWorker` actor hosts a share of the games and steps them together, so one round
trip per actor serves several environment steps; the learner (policies, updates) stays in the
driver process. Game ``i`` always lives in worker ``i * workers // n_games``'s share, in order.

Faults: when a worker dies (its process or node is gone), its games are rebuilt from their
factories on a new worker and start from a fresh reset. The step that was in flight is reported
for those games as ``done=True`` with ``info["game_lost"] = True`` and the fresh observation, so
a consumer (:class:`selfplay.collector.Collector`) can drop their half-played games instead of
learning from them. ``restarts`` counts the replaced workers.

Needs the ``ray`` extra; only :mod:`selfplay.vec_env` imports this module, when it is chosen.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from selfplay.config import ConfigError
from selfplay.vec_env import GameWorkersLost

log = logging.getLogger("selfplay")


def _stack(observations: Sequence[Any]) -> Any:
    """Per-game observations (dicts of arrays or arrays) -> one batch, games first."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def _concat(batches: Sequence[Any]) -> Any:
    """Worker batches (games first) -> one batch over all games, in worker order."""
    if isinstance(batches[0], dict):
        return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    return np.concatenate(batches)


class GameWorker:
    """A Ray actor holding several games; steps them in turn in its own process.

    ``step`` follows SB3's ``VecEnv`` conventions: a finished game is reset at once, its last
    observation goes to ``info["terminal_observation"]``.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        self.envs = [fn() for fn in env_fns]
        self.steps = 0  # env steps taken here (all games)

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.envs[0].observation_space, self.envs[0].action_space

    def place(self) -> dict:
        """Where this worker runs: Ray node id, host name, process id, games, steps so far."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "games": len(self.envs), "steps": self.steps}

    def reset(self, seeds: Sequence[int | None], options: Sequence[dict]) -> tuple[Any, list[dict]]:
        results = [env.reset(seed=seed, **({"options": opt} if opt else {})) for env, seed, opt in zip(self.envs, seeds, options)]
        return _stack([obs for obs, _ in results]), [info for _, info in results]

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, list[dict], list[dict]]:
        """``actions`` (games, ...) -> stacked observations, rewards (games,), dones (games,),
        infos and reset infos (one dict per game)."""
        observations, rewards, dones, infos, reset_infos = [], [], [], [], []
        for env, action in zip(self.envs, actions):
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            reset_info: dict = {}
            if done:
                info["terminal_observation"] = obs
                obs, reset_info = env.reset()
            observations.append(obs)
            rewards.append(reward)
            dones.append(done)
            infos.append(info)
            reset_infos.append(reset_info)
        self.steps += len(self.envs)
        return _stack(observations), np.asarray(rewards, dtype=np.float32), np.asarray(dones), infos, reset_infos

    def call(self, name: str, args: tuple, kwargs: dict, games: Sequence[int]) -> list:
        return [getattr(self.envs[g], name)(*args, **kwargs) for g in games]

    def get_attr(self, name: str, games: Sequence[int]) -> list:
        return [self.envs[g].get_wrapper_attr(name) for g in games]

    def set_attr(self, name: str, value: Any, games: Sequence[int]) -> None:
        for g in games:
            setattr(self.envs[g], name, value)

    def is_wrapped(self, wrapper_class: type, games: Sequence[int]) -> list[bool]:
        from stable_baselines3.common.env_util import is_wrapped

        return [is_wrapped(self.envs[g], wrapper_class) for g in games]

    def close(self) -> None:
        for env in self.envs:
            env.close()


_RemoteGameWorker = ray.remote(GameWorker)


class RayVecEnv(VecEnv):
    """``len(env_fns)`` games on ``workers`` Ray actors.

    Args:
        env_fns: one picklable factory per game (it must import on every node: install the
            package there too).
        workers: actors; 0 gives one per CPU Ray offers (``cpus_per_worker`` each), at most one per game.
        address: ``None`` starts a local Ray with this machine's cores (unless Ray is already
            initialised in this process, which is then used as is); ``"auto"`` or ``"<ip>:6379"``
            joins a running cluster.
        cpus_per_worker: CPUs Ray reserves per actor.
        spread: place actors on as many nodes as possible.
        max_restarts: dead actors replaced before the run stops with an error.
        start_timeout_s: seconds to wait for a new actor's games to come up.
        restart_seed: games rebuilt after a fault reset with ``restart_seed + restarts * n + i``
            (``None``: the factory's own seed).
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], workers: int = 0, address: str | None = None,
                 cpus_per_worker: float = 1.0, spread: bool = True, max_restarts: int = 100,
                 start_timeout_s: float = 300.0, restart_seed: int | None = None) -> None:
        self.env_fns = list(env_fns)
        self.owns_ray = not ray.is_initialized()
        self._reaper = None
        if self.owns_ray:
            self._reaper = _init_ray(address)
        n = len(self.env_fns)
        cpus = ray.cluster_resources().get("CPU", 0)
        if workers <= 0:
            workers = int(cpus // cpus_per_worker)
        workers = max(1, min(workers, n))
        if workers * cpus_per_worker > cpus:
            message = (f"{workers} workers x {cpus_per_worker} CPUs need {workers * cpus_per_worker:g} CPUs; "
                       f"the Ray cluster has {cpus:g} (lower ray.workers or ray.cpus_per_worker, or add nodes)")
            if self.owns_ray and address is None:  # a local instance never grows
                self._shutdown()
                raise ConfigError(f"config error: ray.workers: {message}")
            log.warning("ray: %s; waiting up to ray.start_timeout_s=%g s for nodes to join", message, start_timeout_s)
        self.shares = [[int(g) for g in games] for games in np.array_split(np.arange(n), workers)]
        self._actor_options = {"num_cpus": cpus_per_worker, "max_restarts": 0, "max_concurrency": 1,
                               "scheduling_strategy": "SPREAD" if spread else "DEFAULT"}
        self.max_restarts, self.start_timeout_s, self.restart_seed = max_restarts, start_timeout_s, restart_seed
        self.restarts = 0  # workers replaced after dying
        self.workers = [self._start_worker(share) for share in self.shares]
        places = self._get([w.place.remote() for w in self.workers], "start its games")
        observation_space, action_space = ray.get(self.workers[0].spaces.remote())
        super().__init__(n, observation_space, action_space)
        self._pending: list = []
        log.info("ray: %d games on %d workers: %s", n, workers, "; ".join(
            f"worker {k}: {p['games']} games on {p['host']} (node {p['node_id'][:8]}, pid {p['pid']})" for k, p in enumerate(places)))

    # -- workers ----------------------------------------------------------------------------------
    def _start_worker(self, share: Sequence[int]):
        return _RemoteGameWorker.options(**self._actor_options).remote([self.env_fns[i] for i in share])

    def _get(self, ref, what: str):
        try:
            return ray.get(ref, timeout=self.start_timeout_s)
        except GetTimeoutError:
            raise GameWorkersLost(f"ray: a game worker did not {what} within {self.start_timeout_s:.0f} s "
                               f"(ray.start_timeout_s); is a node with {self._actor_options['num_cpus']} free CPU(s) in the cluster?") from None

    def places(self) -> list[dict]:
        """For each worker: node id, host, pid, games and env steps so far."""
        return ray.get([w.place.remote() for w in self.workers])

    def _replace_worker(self, k: int, error: Exception) -> Any:
        """Worker ``k`` died: rebuild its games on a new actor from a fresh reset; returns their observations."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise GameWorkersLost(f"ray: {self.restarts} game workers died, more than ray.max_restarts={self.max_restarts}; last: {error}")
        log.warning("ray: game worker %d died (%s); its %d games restart from a fresh reset, half-played games dropped "
                    "(restart %d)", k, type(error).__name__, len(self.shares[k]), self.restarts)
        try:
            ray.kill(self.workers[k], no_restart=True)
        except Exception:  # already gone
            pass
        self.workers[k] = self._start_worker(self.shares[k])
        seeds = [None if self.restart_seed is None else self.restart_seed + self.restarts * self.num_envs + i for i in self.shares[k]]
        obs, _ = self._get(self.workers[k].reset.remote(seeds, [None] * len(seeds)), "restart its games")
        return obs

    # -- VecEnv -------------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        refs = [w.reset.remote([self._seeds[i] for i in share], [self._options[i] for i in share])
                for w, share in zip(self.workers, self.shares)]
        results = [self._get(ref, "reset its games") for ref in refs]
        self.reset_infos = [info for _, infos in results for info in infos]
        self._reset_seeds()
        self._reset_options()
        return _concat([obs for obs, _ in results])

    def step_async(self, actions: np.ndarray) -> None:
        self._pending = [w.step.remote(actions[share]) for w, share in zip(self.workers, self.shares)]

    def step_wait(self) -> VecEnvStepReturn:
        observations, rewards, dones, infos, reset_infos = [], [], [], [], []
        for k, ref in enumerate(self._pending):
            try:
                obs, rew, done, info, reset_info = ray.get(ref)
            except RayActorError as error:
                n = len(self.shares[k])
                obs, rew, done = self._replace_worker(k, error), np.zeros(n, dtype=np.float32), np.ones(n, dtype=bool)
                info, reset_info = [{"game_lost": True} for _ in range(n)], [{} for _ in range(n)]
            observations.append(obs)
            rewards.append(rew)
            dones.append(done)
            infos.extend(info)
            reset_infos.extend(reset_info)
        self._pending = []
        self.reset_infos = reset_infos
        return _concat(observations), np.concatenate(rewards), np.concatenate(dones), infos

    def _by_worker(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """(worker, its local game indices) for the given global game indices, in order."""
        wanted = set(self._get_indices(indices))
        return [(k, [j for j, i in enumerate(share) if i in wanted]) for k, share in enumerate(self.shares)
                if any(i in wanted for i in share)]

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        refs = [self.workers[k].call.remote(method_name, method_args, method_kwargs, games) for k, games in self._by_worker(indices)]
        return [value for values in ray.get(refs) for value in values]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        refs = [self.workers[k].get_attr.remote(attr_name, games) for k, games in self._by_worker(indices)]
        return [value for values in ray.get(refs) for value in values]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        ray.get([self.workers[k].set_attr.remote(attr_name, value, games) for k, games in self._by_worker(indices)])

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        refs = [self.workers[k].is_wrapped.remote(wrapper_class, games) for k, games in self._by_worker(indices)]
        return [value for values in ray.get(refs) for value in values]

    def close(self) -> None:
        """Close the games, end the workers and, if this env started Ray, shut it down."""
        if getattr(self, "closed", False):
            return
        self.closed = True
        try:
            places = ray.get([w.place.remote() for w in self.workers], timeout=30)
            log.info("ray: env steps per worker: %s; %d workers replaced after dying", "; ".join(
                f"worker {k} on {p['host']} (node {p['node_id'][:8]}): {p['steps']}" for k, p in enumerate(places)), self.restarts)
            ray.get([w.close.remote() for w in self.workers], timeout=30)
        except Exception:  # a dead worker has nothing left to report or close
            pass
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        if self.owns_ray:
            self._shutdown()

    def _shutdown(self) -> None:
        """Shut down the Ray this env started, and its reaper with whatever Ray left behind."""
        ray.shutdown()
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None


def _local_ray_processes() -> list[int]:
    """Process ids of the local Ray's own processes (GCS, raylet, monitors), whose children are
    Ray's agents and actors; empty if this Ray version does not say."""
    try:
        node = ray._private.worker._global_node
        return [info.process.pid for infos in node.all_processes.values() for info in infos]
    except Exception:  # a private API: without it, no reaper
        return []


def _init_ray(address: str | None):
    """Start a local Ray (``address=None``: all of this machine's cores, no dashboard) or join one.
    A ``host:port`` that nothing answers stops at once (Ray itself would retry for minutes).
    Returns the :class:`selfplay.processes.Reaper` that ends a local Ray's processes if this one
    dies without shutting it down (Ray's agents otherwise outlive a ``kill -9``), else None."""
    if address is None:
        from selfplay.processes import Reaper

        ray.init(include_dashboard=False, logging_level=logging.WARNING)
        roots = _local_ray_processes()
        if not roots:
            log.warning("ray: cannot list the local Ray's processes; if this process is killed, stop them with `ray stop`")
        return Reaper(roots) if roots else None
    hint = "start a head with `ray start --head --port=6379` (README, 'Games on a Ray cluster')"
    if re.fullmatch(r"[\w.\-]+:\d+", address):
        host, port = address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
        except OSError as error:
            raise ConfigError(f"config error: ray.address: no Ray head answers at {address} ({error.strerror or error}); {hint}") from None
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as error:
        raise ConfigError(f"config error: ray.address: could not join a Ray cluster at {address!r}: {error}; {hint}") from None
    return None
