"""Bob as an off-policy learner (``bob.algo=sac``): SB3's SAC on continuous actions, trained
from a replay buffer of his own turns with hindsight goals, plus cloning of Alice's
demonstrations (docs/method.md section 9).

Why: on 2 CPU cores PPO's sparse-reward Bob barely learns (benchmarks/RESULTS.md, "Learning
ladder"). An off-policy learner reuses every step many times, and hindsight relabelling turns
each failed turn into successful examples of reaching what Bob did reach (Andrychowicz et al.,
2017). Alice's demonstrations enter as a behavioural-cloning term on the actor, in the spirit of
ABC (Nair et al., 2018, did the same for DDPG). Alice stays the PPO goal proposer.

The buffer stores whole turns. A sample keeps its turn's goal, or (with probability
``her_ratio``) takes the object poses reached at a later step of the same turn as its goal. Goal
features are recomputed for the sampled goal exactly as the simulator computes them, and so is
the reward: 1 when every object is at its goal after the step (which also ends the turn), else 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import DictReplayBufferSamples
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import DummyVecEnv

from selfplay.config import Config
from selfplay.game import BOB, STRUCTURED_KEYS
from selfplay.learning.cloning import goal_features
from selfplay.learning.sac_step import critic_pairs, sac_gradient_step, update_input_statistics
from selfplay.policies import observation_tensors, policy_kwargs
from tabletop_env.env import POSE_SIZE, object_rotation_modes, reads_goal_rotation
from tabletop_env.objects import blocks
from tabletop_env.state import ROTATION_IGNORE, ROTATION_TOLERANCE, objects_at_goal
from tabletop_env.wrappers import ACTION_DIMS, bin_values

#: An object that travelled this far (m) during a turn makes it a "moved" turn (``bob.moved_share``).
MOVED_TURN = 0.01

#: SB3's SAC statistics, logged for an off-policy Bob.
SAC_STATS = ("learning_rate", "actor_loss", "critic_loss", "ent_coef", "ent_coef_loss", "n_updates")


class TurnReplayBuffer:
    """Bob's turns for SAC, with hindsight goals (SAC's ``replay_buffer``: :meth:`sample`).

    Args:
        capacity: transitions kept (the oldest are overwritten).
        spaces: Bob's observation space (``robot``, ``objects``, ``goal``, ``mask``).
        rotation_modes: (M,) how each object slot's rotation counts for success
            (:func:`tabletop_env.state.objects_at_goal`); padding slots are ignored. When the
            goal features carry the rotation to the goal (a ``goal`` width of 13), a relabelled
            goal's rotation part is computed with these modes too, as the env computes it.
        her_ratio: share of samples whose goal is relabelled with a later pose of their turn.
        informative_only: relabel only with goals the objects do not satisfy yet before the step
            (with a 4 cm success radius most later poses of a turn are "already there" and teach
            that leaving the objects alone succeeds); such samples keep their turn's goal.
        moved_share: share of each minibatch drawn from turns in which an object moved at least
            ``MOVED_TURN`` (the rest uniformly from all): under random play few turns touch the
            block, and only those teach what moves it (a simple form of Zhao and Tresp's 2018
            energy-based prioritisation). 0: uniform sampling.
        seed: the buffer's own random generator.
    """

    def __init__(self, capacity: int, spaces: gym.spaces.Dict, rotation_modes: np.ndarray, her_ratio: float = 0.8,
                 seed: int | None = None, device: str = "cpu", informative_only: bool = False,
                 moved_share: float = 0.0) -> None:
        if capacity < 1 or not 0.0 <= her_ratio <= 1.0 or not 0.0 <= moved_share <= 1.0:
            raise ValueError(f"need capacity >= 1, her_ratio and moved_share in [0, 1], got {capacity}, {her_ratio}, {moved_share}")
        self.capacity, self.her_ratio, self.device = capacity, her_ratio, device
        self.informative_only, self.moved_share = informative_only, moved_share
        self.modes = np.asarray(rotation_modes)
        self.rotation_tolerance = ROTATION_TOLERANCE  # rad, the success rule's (a curriculum widens it)
        self.goal_rotation = reads_goal_rotation(spaces)
        m = spaces["mask"].shape[0]
        self.robot = np.zeros((2, capacity, *spaces["robot"].shape), dtype=np.float32)  # [now, next]
        self.objects = np.zeros((2, capacity, *spaces["objects"].shape), dtype=np.float32)
        self.mask = np.zeros((capacity, m), dtype=np.float32)
        self.goal = np.zeros((capacity, m, POSE_SIZE), dtype=np.float32)  # the turn's goal poses
        self.reached = np.zeros((capacity, m, POSE_SIZE), dtype=np.float32)  # object poses after the step
        self.actions = np.zeros((capacity, ACTION_DIMS), dtype=np.float32)
        self.turn = np.full(capacity, -1, dtype=np.int64)  # turn number of each slot
        self.turn_end = np.zeros(capacity, dtype=np.int64)  # slot of its turn's last transition
        self.moved = np.zeros(capacity, dtype=bool)  # an object of its turn moved >= MOVED_TURN
        self.pos, self.size, self._turns = 0, 0, 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add_turn(self, observations: list[dict[str, np.ndarray]], actions: np.ndarray) -> None:
        """One turn: ``observations`` (T + 1 dicts: before each step and after the last) and
        ``actions`` (T, 6) in [-1, 1]. Goal poses come from the observations' ``goal`` features."""
        steps = len(actions)
        if steps == 0:
            return
        if len(observations) != steps + 1:
            raise ValueError(f"a turn of {steps} actions needs {steps + 1} observations, got {len(observations)}")
        slots = (self.pos + np.arange(steps)) % self.capacity
        stack = {k: np.stack([o[k] for o in observations]) for k in ("robot", "objects", "mask", "goal")}
        for i, part in enumerate((slice(0, steps), slice(1, steps + 1))):
            self.robot[i, slots] = stack["robot"][part]
            self.objects[i, slots] = stack["objects"][part]
        self.mask[slots] = stack["mask"][:steps]
        self.goal[slots] = stack["goal"][:steps, :, :POSE_SIZE]
        # object poses after each step: position from the object features, orientation too
        self.reached[slots] = stack["objects"][1:, :, :POSE_SIZE]
        self.actions[slots] = actions
        self.turn[slots] = self._turns
        self.turn_end[slots] = slots[-1]
        travel = np.linalg.norm(stack["objects"][:, :, :3] - stack["objects"][0, :, :3], axis=-1) * stack["mask"][0]
        self.moved[slots] = travel.max() >= MOVED_TURN
        self._turns += 1
        self.pos = int((self.pos + steps) % self.capacity)
        self.size = min(self.size + steps, self.capacity)

    #: the arrays that hold the buffer's transitions (saved by :meth:`save`)
    ARRAYS = ("robot", "objects", "mask", "goal", "reached", "actions", "turn", "turn_end", "moved")

    def save(self, path: Path) -> None:
        """The stored transitions, the write position and the sampling generator's state, into
        one uncompressed ``.npz`` (405 bytes per transition with one object slot)."""
        counters = np.array([self.capacity, self.pos, self.size, self._turns], dtype=np.int64)
        rng = np.frombuffer(json.dumps(self._rng.bit_generator.state).encode(), dtype=np.uint8)
        with open(path, "wb") as file:  # np.savez on a path would append ".npz"
            np.savez(file, counters=counters, rng=rng, **{k: self._filled(k, self.size) for k in self.ARRAYS})

    def load(self, path: Path) -> None:
        """What :meth:`save` wrote; a ``ValueError`` saying what differs when it does not fit this
        buffer (another ``bob.buffer_size`` or observation layout)."""
        with np.load(path) as saved:
            capacity, pos, size, turns = (int(v) for v in saved["counters"])
            if capacity != self.capacity:
                raise ValueError(f"the saved replay buffer holds {capacity} transitions, bob.buffer_size is {self.capacity}")
            for key in self.ARRAYS:
                if saved[key].shape != self._filled(key, size).shape:
                    raise ValueError(f"replay buffer {key} has shape {saved[key].shape}, this run's is {self._filled(key, size).shape}")
            for key in self.ARRAYS:
                self._filled(key, size)[...] = saved[key]
            self.pos, self.size, self._turns = pos, size, turns
            self._rng.bit_generator.state = json.loads(saved["rng"].tobytes().decode())

    def _filled(self, key: str, size: int) -> np.ndarray:
        """A view of array ``key``'s first ``size`` slots (``robot`` and ``objects`` hold [now, next])."""
        array = getattr(self, key)
        return array[:, :size] if key in ("robot", "objects") else array[:size]

    def sample(self, batch_size: int, env: Any = None) -> DictReplayBufferSamples:
        """A minibatch for ``SAC.train``: observations, actions (B, 6), next observations,
        dones and rewards (B, 1), with hindsight goals on a ``her_ratio`` share."""
        index = self._sample_index(batch_size)
        goal = self.goal[index].copy()
        relabel = self._rng.random(batch_size) < self.her_ratio
        if relabel.any():
            start, end = index[relabel], self.turn_end[index[relabel]]
            ahead = (end - start) % self.capacity  # transitions after this one in its turn
            future = (start + np.floor(self._rng.random(len(start)) * (ahead + 1)).astype(np.int64)) % self.capacity
            intact = self.turn[future] == self.turn[start]  # not overwritten since
            rows, future = np.flatnonzero(relabel)[intact], future[intact]
            if self.informative_only:  # skip goals the objects already satisfy before the step
                now = self.objects[0, index[rows], :, :POSE_SIZE]
                keep = ~(objects_at_goal(now, self.reached[future], self.modes, rotation_tolerance=self.rotation_tolerance)
                         | (self.mask[index[rows]] < 0.5)).all(axis=1)
                rows, future = rows[keep], future[keep]
            goal[rows] = self.reached[future]
        mask = self.mask[index]
        at_goal = objects_at_goal(self.reached[index], goal, self.modes, rotation_tolerance=self.rotation_tolerance)
        success = (at_goal | (mask < 0.5)).all(axis=1).astype(np.float32)
        goal = goal * mask[..., None]
        observations = self._observations(0, index, goal, mask)
        next_observations = self._observations(1, index, goal, mask)
        to = lambda a: th.as_tensor(a, device=self.device)  # noqa: E731
        return DictReplayBufferSamples(
            observations=observations,
            actions=to(self.actions[index]),
            next_observations=next_observations,
            dones=to(success[:, None]),
            rewards=to(success[:, None]),
        )

    def _sample_index(self, batch_size: int) -> np.ndarray:
        """Slots of a minibatch: a ``moved_share`` of them from turns that moved an object."""
        index = self._rng.integers(self.size, size=batch_size)
        if self.moved_share > 0:
            moved = np.flatnonzero(self.moved[: self.size])
            n = int(round(self.moved_share * batch_size)) if len(moved) else 0
            index[:n] = moved[self._rng.integers(len(moved), size=n)]
        return index

    def _observations(self, which: int, index: np.ndarray, goal: np.ndarray, mask: np.ndarray) -> dict[str, th.Tensor]:
        objects = self.objects[which, index]
        arrays = {"robot": self.robot[which, index], "objects": objects, "mask": mask,
                  "goal": goal_features(goal, objects, mask, self.modes if self.goal_rotation else None)}
        return {k: th.as_tensor(v, device=self.device) for k, v in arrays.items()}


def rotation_modes_for(n_objects: int, max_objects: int, modes: np.ndarray) -> np.ndarray:
    """Padded (max_objects,) rotation modes: the game's ``modes`` (n,), then ignored slots."""
    return np.concatenate([np.asarray(modes), np.full(max_objects - n_objects, ROTATION_IGNORE)])


class DemonstrationCloning:
    """Alice's relabelled demonstrations as a cloning term for an off-policy Bob's actor:
    ``coef * mean(sum((mu(s) - a)^2))``, ``mu`` the actor's deterministic action in [-1, 1].
    Demonstrations are replaced at every update (the newest ``capacity`` steps are kept).

    ``q_filter``: clone a demonstrated action only where Bob's critic rates it above his own
    (min over the twin critics of Q(s, a) > Q(s, mu(s))), as in Nair et al. 2018: demonstrations
    from a near-random Alice then cannot pull his actor away from what he has learned.
    ``kept``: the share of the last step's demonstration steps that were cloned."""

    def __init__(self, coef: float, capacity: int = 20_000, seed: int | None = None, q_filter: bool = False) -> None:
        self.coef, self.capacity, self.q_filter = coef, capacity, q_filter
        self.kept = float("nan")
        self.observations: dict[str, np.ndarray] | None = None
        self.actions: np.ndarray | None = None
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return 0 if self.actions is None else len(self.actions)

    def add(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Demonstration steps: observations (dict of (T, ...) arrays) and actions (T, 6) in [-1, 1]."""
        new = {k: np.asarray(observations[k], dtype=np.float32) for k in STRUCTURED_KEYS}
        if self.actions is None:
            self.observations, self.actions = new, np.asarray(actions, dtype=np.float32)
        else:
            self.observations = {k: np.concatenate([self.observations[k], new[k]])[-self.capacity:] for k in STRUCTURED_KEYS}
            self.actions = np.concatenate([self.actions, actions])[-self.capacity:].astype(np.float32)

    def step(self, model: SAC, batch_size: int) -> float:
        """One gradient step of the cloning loss on the actor; returns the loss (nan if none)."""
        if self.coef <= 0 or len(self) == 0:
            return float("nan")
        index = self._rng.integers(len(self), size=min(batch_size, len(self)))
        obs = {k: th.as_tensor(v[index]) for k, v in self.observations.items()}
        target = th.as_tensor(self.actions[index])
        mean_actions, _, _ = model.actor.get_action_dist_params(obs)
        actions = th.tanh(mean_actions)
        error = (actions - target).square().sum(dim=1)
        if self.q_filter:
            with th.no_grad():
                better = _min_q(model, obs, target) > _min_q(model, obs, actions)
            self.kept = float(better.float().mean())
            if not better.any():  # no step at all: Adam's momentum would still move the actor
                return 0.0
            error = error * better
        loss = self.coef * error.mean()
        model.actor.optimizer.zero_grad()
        loss.backward()
        model.actor.optimizer.step()
        return float(loss.detach())


def _min_q(model: SAC, observations: dict[str, th.Tensor], actions: th.Tensor) -> th.Tensor:
    """(B,) the smaller of the twin critics' values of ``actions`` (B, 6)."""
    return th.cat(model.critic(observations, actions), dim=1).min(dim=1).values


def continuous_actions(policy, observations: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
    """A SAC policy's actions (B, 6) in [-1, 1] for a batch (dict of (B, ...) arrays)."""
    with th.no_grad():
        return policy.actor(observation_tensors(policy, observations), deterministic=deterministic).cpu().numpy()


def is_continuous(policy) -> bool:
    """Whether a policy acts with continuous actions (an off-policy Bob's SAC policy)."""
    return hasattr(policy, "actor")


def fused_adam(device: str) -> dict[str, Any]:
    """Adam's keyword arguments for the SAC networks: ``fused=True`` where this torch has a fused
    Adam for ``device`` (6x faster steps for these small networks on a CPU), else none."""
    try:
        th.optim.Adam([th.zeros(1, device=th.device("cpu" if device == "auto" else device), requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


class _Spaces(gym.Env):
    """Carries the spaces SB3's ``SAC`` needs to build itself; never stepped."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space


class OffPolicyBob:
    """Bob's learner with ``bob.algo=sac``: SB3's ``SAC`` on continuous actions in [-1, 1] with
    the object-set network, a :class:`TurnReplayBuffer` of his turns (hindsight goals) and a
    cloning term on Alice's demonstrations (:class:`DemonstrationCloning`, weight ``abc.beta``).
    Its checkpoint is a standard SB3 zip: ``SAC.load`` opens it.

    Args:
        cfg: the run's config (``bob.*``, ``abc.*``, ``env.*`` for the success rule per slot).
        observation_space: the game's observation space (its structured keys are used).
        replay: give it a replay buffer (the learning Bob; a pool's template needs none).
    """

    on_policy = False  # learns from whole turns in a replay buffer (:meth:`learn`)
    stat_names = SAC_STATS

    def __init__(self, cfg: Config, observation_space: gym.spaces.Dict, replay: bool = True) -> None:
        b = self.settings = cfg.bob
        self.gamma, self.gae_lambda = b.gamma, 1.0  # no PPO batch: GAE unused
        self.action_bins = cfg.env.action_bins
        space = gym.spaces.Dict({k: observation_space[k] for k in STRUCTURED_KEYS})
        actions = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIMS,), dtype=np.float32)
        kwargs = policy_kwargs(use_goal=True, width=b.width, depth=b.depth, head=tuple(b.head), normalize=b.normalize_inputs)
        kwargs["net_arch"] = list(b.head)  # SAC: the same head sizes for actor and critics
        kwargs["optimizer_kwargs"] = fused_adam(cfg.trainer.device)
        self.model = SAC("MultiInputPolicy", DummyVecEnv([lambda: _Spaces(space, actions)]), learning_rate=b.learning_rate,
                         buffer_size=1, batch_size=b.batch_size, tau=b.tau, gamma=b.gamma, learning_starts=0,
                         target_entropy="auto" if b.target_entropy is None else b.target_entropy,
                         policy_kwargs=kwargs, seed=cfg.seed + BOB, device=cfg.trainer.device, verbose=0)
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self._objects = (cfg.env.n_objects, cfg.env.max_objects)
        if replay:
            modes = self._rotation_modes(cfg.game.position_only_at(0))
            self.model.replay_buffer = TurnReplayBuffer(b.buffer_size, space, modes, her_ratio=b.her_ratio, seed=cfg.seed,
                                                        informative_only=b.her_informative_only, moved_share=b.moved_share)
        self.cloning = DemonstrationCloning(cfg.abc.beta if cfg.abc.enabled else 0.0, seed=cfg.seed, q_filter=cfg.abc.q_filter)
        self._gradient_credit = 0.0  # gradient steps owed (fractions carried over)
        self._step_stats: list[dict[str, th.Tensor]] = []  # per gradient step, until take_stats()
        self._cloning_losses: list[float] = []
        self._targets = critic_pairs(self.model)

    @property
    def policy(self):
        return self.model.policy

    @property
    def observation_space(self) -> gym.spaces.Dict:
        return self.model.observation_space

    @property
    def action_space(self) -> gym.spaces.Space:
        return self.model.action_space

    @property
    def policy_kwargs(self) -> dict:
        return self.model.policy_kwargs

    def _rotation_modes(self, position_only: bool) -> np.ndarray:
        n, max_objects = self._objects
        return rotation_modes_for(n, max_objects, object_rotation_modes(blocks(n), position_only))

    def set_position_only(self, on: bool) -> None:
        """Hindsight rewards by position alone from now on, or by the full rule (the game's
        ``game.position_first_steps`` switch); the replay's turns are relabelled when sampled."""
        if isinstance(self.model.replay_buffer, TurnReplayBuffer):
            self.model.replay_buffer.modes = self._rotation_modes(on)

    def set_rotation_tolerance(self, tolerance: float) -> None:
        """Hindsight rewards with this rotation tolerance (rad) from now on, as the games'
        success rule (``game.rotation_tolerance_from``'s curriculum)."""
        if isinstance(self.model.replay_buffer, TurnReplayBuffer):
            self.model.replay_buffer.rotation_tolerance = tolerance

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from now on for the actor, the critics and the entropy weight (the
        loop's ``learning_rate_end`` schedule; the cloning term steps the actor's optimiser)."""
        model = self.model
        for optimizer in (model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer):
            if optimizer is not None:
                update_learning_rate(optimizer, learning_rate)

    def set_demonstrations(self, demos: dict | None) -> None:
        """Alice's demonstrations (bin actions) join the cloning term's, as action values."""
        if demos is not None and self.cloning.coef > 0:
            self.cloning.add(demos["observations"], bin_values(self.action_bins)[demos["actions"]])

    def learn(self, turns: list[tuple[list[dict], np.ndarray]], new_steps: int) -> dict[str, float]:
        """Bob's finished turns into his replay buffer, then ``bob.updates_per_step`` SAC gradient
        steps per env step he took (``new_steps``), each followed by one cloning step on Alice's
        demonstrations. Returns SAC's statistics (:data:`SAC_STATS`) and ``abc_loss`` of every
        gradient step since the last call (also those of :meth:`learn_some`); {} if none."""
        self.learn_some(turns, new_steps)
        return self.take_stats()

    def learn_some(self, turns: list[tuple[list[dict], np.ndarray]], new_steps: int) -> None:
        """:meth:`learn` without the statistics: what the trainer calls between the games' steps
        (``trainer.learn_during_collection``); :meth:`take_stats` then reports them all."""
        b, model = self.settings, self.model
        for observations, actions in turns:
            model.replay_buffer.add_turn(observations, actions)
        if len(model.replay_buffer) < b.learning_starts:
            return
        self._gradient_credit += new_steps * b.updates_per_step
        steps = int(self._gradient_credit)
        self._gradient_credit -= steps
        if not steps:
            return
        model.policy.set_training_mode(True)
        for _ in range(steps):
            batch = model.replay_buffer.sample(b.batch_size)
            update_input_statistics(model, batch.observations)
            self._step_stats.append(sac_gradient_step(model, batch, self._targets, b.action_l2))
            self._cloning_losses.append(self.cloning.step(model, b.batch_size))

    def take_stats(self) -> dict[str, float]:
        """Means over the gradient steps taken since the last call; {} if there were none."""
        steps_stats, cloning = self._step_stats, self._cloning_losses
        if not steps_stats:
            return {}
        self._step_stats, self._cloning_losses = [], []
        model = self.model
        stats = {k: float(th.stack([s[k] for s in steps_stats]).mean()) for k in steps_stats[0]}
        stats["learning_rate"], stats["n_updates"] = model.actor.optimizer.param_groups[0]["lr"], float(model._n_updates)
        if not np.isnan(cloning).all():
            stats["abc_loss"] = float(np.nanmean(cloning))
            if self.cloning.q_filter:
                stats["abc_kept"] = self.cloning.kept
        return stats

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """Actions (B, 6) in [-1, 1] for a batch of observations."""
        return continuous_actions(self.policy, observations, deterministic=deterministic)

    def save(self, path: Path) -> None:
        self.model.save(path)

    def load(self, path: Path) -> None:
        """The weights and optimiser states of a ``SAC`` zip (the replay buffer: :meth:`load_replay`)."""
        self.model.set_parameters(str(path), exact_match=True)

    @property
    def keeps_replay(self) -> bool:
        """Whether this Bob learns from a replay buffer (a pool's template has none)."""
        return isinstance(self.model.replay_buffer, TurnReplayBuffer)

    def save_replay(self, path: Path) -> None:
        """Bob's replay buffer (:meth:`TurnReplayBuffer.save`), for a resume that continues it."""
        self.model.replay_buffer.save(path)

    def load_replay(self, path: Path) -> None:
        self.model.replay_buffer.load(path)
