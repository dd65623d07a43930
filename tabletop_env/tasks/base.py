"""What a holdout task is: objects, initial-state and goal distributions, episode limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tabletop_env.objects import ObjectSpec

if TYPE_CHECKING:
    from tabletop_env.env import TabletopEnv


@dataclass
class Goal:
    """Object poses (n, 7) to reach; ``held_object`` is the index of an object whose goal is in
    the air (it only stays there while the gripper holds it), else None."""

    poses: np.ndarray
    held_object: int | None = None


def yaw_quaternion(yaw: float) -> np.ndarray:
    """Rotation about the world z axis by ``yaw`` radians, as (x, y, z, w)."""
    return np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


class Task:
    """A zero-shot test. Subclasses set the class attributes and override :meth:`sample_goal`.

    ``fixed_layout`` tasks (arrangements, stacks) are evaluated with a single goal per episode.
    The success rule is shared: every object within 0.04 m and 0.2 rad of its goal pose, with
    rotation compared modulo each object's symmetry (``rotation_modes`` overrides it per task).
    """

    name: str = ""
    objects: tuple[ObjectSpec, ...] = ()
    max_episode_steps: int = 200
    fixed_layout: bool = False
    rotation_modes: np.ndarray | None = None

    def reset_scene(self, env: "TabletopEnv", rng: np.random.Generator) -> None:
        """Place the objects for a new episode (default: random resting layout)."""
        env.set_object_poses(env.random_layout(rng))

    def sample_goal(self, env: "TabletopEnv", rng: np.random.Generator) -> Goal:
        """A goal for the objects as they are now (the env is after :meth:`reset_scene`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.objects)} objects)"
