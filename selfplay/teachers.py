"""Teachers: where Bob's goals come from (docs/method.md sections 2 and 7).

A teacher is one class: ``alice_proposes`` says whether Alice plays (the self-play game: her final
object poses are Bob's goal) or the teacher hands Bob goals itself (:meth:`Teacher.sample_goal`).
A new curriculum is one subclass registered with :func:`register_teacher` and one
``selfplay/conf/teacher/<name>.yaml`` with ``name: <name>`` (its knobs as ``teacher.*`` keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from selfplay.game import GameConfig
    from tabletop_env import TabletopEnv

#: name -> teacher class (``teacher.name``).
TEACHERS: dict[str, type[Teacher]] = {}
#: The goal kinds the uniform teacher mixes (``teacher.uniform_tasks``).
GOAL_KINDS = ("push", "pick_and_place", "stack")


def register_teacher(cls: type[Teacher]) -> type[Teacher]:
    """Make a teacher class available as ``teacher.name=<cls.name>``."""
    TEACHERS[cls.name] = cls
    return cls


def make_teacher(rules: GameConfig, n_objects: int) -> Teacher:
    """The teacher ``rules.teacher`` names, for a game of ``n_objects`` blocks."""
    if rules.teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {rules.teacher!r}; choose from {sorted(TEACHERS)}")
    return TEACHERS[rules.teacher](rules, n_objects)


class Teacher:
    """Where one game's goals come from. ``rules``: the game's rules (the teacher's knobs among
    them); ``n_objects``: blocks on the table."""

    name: ClassVar[str]
    alice_proposes: ClassVar[bool]  # Alice plays and her final poses are the goals

    def __init__(self, rules: GameConfig, n_objects: int) -> None:
        self.rules, self.n_objects = rules, n_objects

    def sample_goal(self, sim: TabletopEnv, rng: np.random.Generator) -> np.ndarray:
        """The next goal (n_objects, 7) poses, from the scene as it is; only teachers without Alice."""
        raise NotImplementedError(f"teacher {self.name!r} has Alice propose the goals")


@register_teacher
class SelfPlayTeacher(Teacher):
    """Asymmetric self-play: Alice proposes every goal (the paper's method)."""

    name = "selfplay"
    alice_proposes = True


@register_teacher
class UniformTeacher(Teacher):
    """No curriculum (docs/method.md section 7's baseline): hand-designed random goals of the kinds
    ``uniform_tasks`` (push, pick-and-place, stack; stacks need two blocks), or with
    ``goal_distance`` push goals that far (m, [min, max]) from each block."""

    name = "uniform"
    alice_proposes = False

    def __init__(self, rules: GameConfig, n_objects: int) -> None:
        super().__init__(rules, n_objects)
        unknown = [kind for kind in rules.uniform_tasks if kind not in GOAL_KINDS]
        if unknown:
            raise ValueError(f"unknown uniform goal kind {unknown[0]!r}; choose from {GOAL_KINDS}")
        self.tasks = [_generic_task(kind, n_objects) for kind in rules.uniform_tasks if not (kind == "stack" and n_objects < 2)]

    def sample_goal(self, sim: TabletopEnv, rng: np.random.Generator) -> np.ndarray:
        task = self.tasks[rng.integers(len(self.tasks))]
        if self.rules.goal_distance is not None and task.name.startswith("uniform-push"):
            return self._near_push_goal(sim, rng)
        return task.sample_goal(sim, rng).poses

    def _near_push_goal(self, env: TabletopEnv, rng: np.random.Generator, tries: int = 100) -> np.ndarray:
        """Every block moved ``goal_distance`` (m) in a random direction, resting at a random
        yaw, inside the placement area and apart from the others (the ladder's near goals)."""
        low, high = self.rules.goal_distance
        poses = env.object_poses()
        goal = poses.copy()
        for i in range(self.n_objects):
            for _ in range(tries):
                angle, distance = rng.uniform(-np.pi, np.pi), rng.uniform(low, high)
                xy = poses[i, :2] + distance * np.array([np.cos(angle), np.sin(angle)])
                inside = np.all(xy >= env.placement_low) and np.all(xy <= env.placement_high)
                apart = all(np.linalg.norm(xy - goal[j, :2]) > 2 * env.footprint_radii.max() for j in range(i))
                if inside and apart:
                    break
            else:  # no direction fits: the nearest point of the area
                xy = np.clip(xy, env.placement_low, env.placement_high)
            yaw = rng.uniform(-np.pi, np.pi)
            goal[i] = (*xy, env.rest_heights[i] + 0.001, 0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2))
        return goal


def _generic_task(kind: str, n: int):
    """A holdout task's goal distribution for ``n`` blocks, whatever counts are registered."""
    from tabletop_env.tasks.blocks import PickAndPlace, Push, Stack

    factory = {"push": Push, "pick_and_place": PickAndPlace, "stack": Stack}[kind]
    return factory(n, f"uniform-{kind}{n}")
