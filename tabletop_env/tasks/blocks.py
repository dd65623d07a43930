"""Block tasks: push, pick-and-place, stack, flip, and two arrangements (row, pyramid)."""

from __future__ import annotations

import numpy as np

from tabletop_env import objects
from tabletop_env.objects import BLOCK_SIZE
from tabletop_env.state import CUBE_SYMMETRIES, ROTATION_FULL, quaternion_multiply
from tabletop_env.tasks.base import Goal, Task, yaw_quaternion

TIMEOUT_PER_OBJECT = 200  # env steps per object, docs/method.md section 2


class Push(Task):
    """Move every block to a random resting pose on the table (positions + yaw, faces alike)."""

    def __init__(self, n_blocks: int, name: str) -> None:
        self.name = name
        self.objects = objects.blocks(n_blocks)
        self.max_episode_steps = TIMEOUT_PER_OBJECT * n_blocks

    def sample_goal(self, env, rng):
        return Goal(env.random_layout(rng))


class PickAndPlace(Push):
    """Like push, but one block's goal is in the air: its bottom 5-25 cm above the table."""

    min_lift, max_lift = 0.05, 0.25  # metres from the table to the block's bottom face

    def sample_goal(self, env, rng):
        poses = env.random_layout(rng)
        lifted = int(rng.integers(env.n_objects))
        poses[lifted, 2] = env.rest_heights[lifted] + rng.uniform(self.min_lift, self.max_lift)
        return Goal(poses, held_object=lifted)


def _footprint_fits(env, centre: np.ndarray, half_extent: float) -> np.ndarray:
    """Shift ``centre`` (x, y) so a square of ``half_extent`` metres lies in the placement area."""
    return np.clip(centre, env.placement_low + half_extent, env.placement_high - half_extent)


class Stack(Task):
    """Build a tower: block 0 at the bottom, block i on block i - 1, at a random spot and yaw."""

    fixed_layout = True

    def __init__(self, n_blocks: int, name: str) -> None:
        self.name = name
        self.objects = objects.blocks(n_blocks)
        self.max_episode_steps = TIMEOUT_PER_OBJECT * n_blocks

    def sample_goal(self, env, rng):
        centre = _footprint_fits(env, rng.uniform(env.placement_low, env.placement_high), BLOCK_SIZE)
        q = yaw_quaternion(rng.uniform(-np.pi, np.pi))
        poses = np.array([[*centre, BLOCK_SIZE * (i + 0.5) + 0.0005 * i, *q] for i in range(env.n_objects)])
        return Goal(poses)


class Arrangement(Task):
    """Three blocks in a fixed shape at a random spot and yaw: ``"row"`` or ``"pyramid"``."""

    fixed_layout = True
    gap = 0.005  # metres between neighbouring blocks

    def __init__(self, shape: str, name: str) -> None:
        if shape not in ("row", "pyramid"):
            raise ValueError(f"shape must be 'row' or 'pyramid', got {shape!r}")
        self.name, self.shape = name, shape
        self.objects = objects.blocks(3)
        self.max_episode_steps = TIMEOUT_PER_OBJECT * 3

    def sample_goal(self, env, rng):
        pitch = BLOCK_SIZE + self.gap
        half = BLOCK_SIZE / 2
        if self.shape == "row":
            local = [(-pitch, 0.0, half), (0.0, 0.0, half), (pitch, 0.0, half)]
        else:  # two side by side, the third bridging them
            local = [(-pitch / 2, 0.0, half), (pitch / 2, 0.0, half), (0.0, 0.0, half + BLOCK_SIZE + 0.0005)]
        yaw = rng.uniform(-np.pi, np.pi)
        centre = _footprint_fits(env, rng.uniform(env.placement_low, env.placement_high), 1.5 * pitch + half)
        rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        q = yaw_quaternion(yaw)
        poses = np.array([[*(centre + rotation @ np.array(p[:2])), p[2], *q] for p in local])
        return Goal(poses)


class Flip(Task):
    """One block with marked faces: turn it so another face is up (full rotation is compared)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.objects = (objects.block("red", faces_alike=False),)
        self.max_episode_steps = TIMEOUT_PER_OBJECT * 2
        self.rotation_modes = np.array([ROTATION_FULL])
        # Cube rotations that move the +z face elsewhere (20 of the 24).
        keeps_up = [abs(1 - 2 * (q[0] ** 2 + q[1] ** 2)) > 0.5 and (1 - 2 * (q[0] ** 2 + q[1] ** 2)) > 0 for q in CUBE_SYMMETRIES]
        self._flips = CUBE_SYMMETRIES[~np.array(keeps_up)]

    def sample_goal(self, env, rng):
        poses = env.random_layout(rng)
        flip = self._flips[rng.integers(len(self._flips))]
        poses[0, 3:] = quaternion_multiply(poses[0, 3:], flip)
        return Goal(poses)
