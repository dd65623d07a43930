"""Push with objects the policy never saw in training: meshes that ship with pybullet_data."""

from __future__ import annotations

from tabletop_env import objects
from tabletop_env.tasks.base import Goal, Task
from tabletop_env.tasks.blocks import TIMEOUT_PER_OBJECT


class PushUnseen(Task):
    """Move each unseen object to a random resting pose (rotation modulo its own symmetry)."""

    def __init__(self, kinds: tuple[str, ...], name: str) -> None:
        self.name = name
        self.objects = tuple(objects.mesh(k) for k in kinds)
        self.max_episode_steps = TIMEOUT_PER_OBJECT * len(kinds)

    def sample_goal(self, env, rng):
        return Goal(env.random_layout(rng))
