"""The pool of past snapshots (docs/method.md section 2, item 8): some games play against an old opponent."""

from __future__ import annotations

import copy
from collections import deque

import numpy as np
from stable_baselines3.common.policies import BasePolicy

from selfplay.game import ALICE, BOB


class OpponentPool:
    """Snapshots of Alice's and Bob's policy weights: one every ``every`` updates, the last
    ``size`` kept, sampled uniformly.

    :meth:`draw` gives a new game its opponents: with probability ``probability`` one side
    (Alice or Bob, equally likely) is a policy holding a past snapshot, else both are the
    learning policies (``(None, None)``). Only the learning side of a game is trained. A game
    keeps its snapshot policy until it ends, even if the pool has dropped that snapshot since.
    """

    def __init__(self, templates: tuple[BasePolicy, BasePolicy], probability: float = 0.2, size: int = 10, every: int = 5) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"snapshot probability must be in [0, 1], got {probability}")
        if size < 1 or every < 1:
            raise ValueError(f"pool size and snapshot interval must be >= 1, got {size}, {every}")
        self.probability, self.size, self.every = probability, size, every
        self.snapshots: tuple[deque, deque] = (deque(maxlen=size), deque(maxlen=size))  # (id, state_dict)
        self._templates = templates
        self._policies: dict[tuple[int, int], BasePolicy] = {}
        self._next_id = 0

    def maybe_snapshot(self, update: int, policies: tuple[BasePolicy, BasePolicy]) -> bool:
        """Store both agents' current weights when ``update`` is a multiple of ``every``."""
        if update % self.every:
            return False
        for agent in (ALICE, BOB):
            state = {k: v.detach().cpu().clone() for k, v in policies[agent].state_dict().items()}
            self.snapshots[agent].append((self._next_id, state))
        self._next_id += 1
        live = {(a, i) for a in (ALICE, BOB) for i, _ in self.snapshots[a]}
        self._policies = {key: p for key, p in self._policies.items() if key in live}
        return True

    def draw(self, rng: np.random.Generator) -> tuple[BasePolicy | None, BasePolicy | None]:
        """Opponents for a new game: (past Alice or None, past Bob or None)."""
        if not self.snapshots[ALICE] or rng.random() >= self.probability:
            return (None, None)
        side = int(rng.integers(2))
        snapshot_id = self.snapshots[side][int(rng.integers(len(self.snapshots[side])))][0]
        policy = self.policy(side, snapshot_id)
        return (policy, None) if side == ALICE else (None, policy)

    def policy(self, agent: int, snapshot_id: int) -> BasePolicy:
        """A policy holding the weights of snapshot ``snapshot_id`` of ``agent`` (cached)."""
        key = (agent, snapshot_id)
        if key not in self._policies:
            state = next(s for i, s in self.snapshots[agent] if i == snapshot_id)
            policy = copy.deepcopy(self._templates[agent])
            policy.load_state_dict(state)
            policy.set_training_mode(False)
            self._policies[key] = policy
        return self._policies[key]

    def state_dict(self) -> dict:
        return {"snapshots": [list(s) for s in self.snapshots], "next_id": self._next_id}

    def load_state_dict(self, state: dict) -> None:
        for agent in (ALICE, BOB):
            self.snapshots[agent].clear()
            self.snapshots[agent].extend(state["snapshots"][agent])
        self._next_id = state["next_id"]
        self._policies = {}

