"""Scripted controllers for tests, demos and goal construction: reach, grasp, lift, place."""

from __future__ import annotations

import numpy as np

from tabletop_env.env import TabletopEnv


def block_yaw(quaternion: np.ndarray) -> float:
    """Yaw (rad) of a block resting on a face, folded into [-pi/4, pi/4] (its 90-degree symmetry)."""
    x, y, z, w = quaternion
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def move_action(env: TabletopEnv, position, yaw: float | None = None, opening: float = 1.0) -> np.ndarray:
    """The action (6,) that moves the tool towards ``position`` (m) and ``yaw`` (rad), with the
    finger command ``opening`` in [-1, 1]."""
    target = env.robot.target
    delta = (np.asarray(position) - np.asarray(env._tool_position)) / env.robot.control.max_translation
    action = np.zeros(6)
    action[:3] = np.clip(delta, -1, 1)
    if yaw is not None:
        action[3] = np.clip((yaw - target[3]) / env.robot.control.max_yaw, -1, 1)
    action[4] = np.clip(-target[4] / env.robot.control.max_pitch, -1, 1)
    action[5] = opening
    return action


def run_waypoints(env: TabletopEnv, waypoints, record=None) -> dict:
    """Step through (position, yaw, opening, steps) waypoints; returns the last info."""
    info: dict = {}
    for position, yaw, opening, steps in waypoints:
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(move_action(env, position, yaw, opening))
            if record is not None:
                record.append(env.get_state())
    return info


def grasp_and_lift(env: TabletopEnv, index: int, lift_to: float = 0.2, hold_steps: int = 50) -> dict:
    """Pick object ``index`` from the table and hold it ``lift_to`` m above the table."""
    pose = env.object_poses()[index]
    yaw = block_yaw(pose[3:])
    above = pose[:3] + np.array([0, 0, 0.12])
    at = pose[:3] + np.array([0, 0, 0.005])
    lifted = np.array([pose[0], pose[1], lift_to])
    return run_waypoints(
        env,
        [(above, yaw, 1.0, 30), (at, yaw, 1.0, 25), (at, yaw, -1.0, 15), (lifted, yaw, -1.0, 30), (lifted, yaw, -1.0, hold_steps)],
    )


def realize_goal(env: TabletopEnv, goal) -> None:
    """Put the scene into the goal state of a :class:`~tabletop_env.tasks.Goal`: objects at their
    goal poses, and for an in-air goal the gripper closed around the held object."""
    env.set_object_poses(goal.poses)
    if goal.held_object is None:
        env.robot.reset(env.home_joints)
        env.refresh()
        return
    pose = goal.poses[goal.held_object]
    yaw = block_yaw(pose[3:])
    joints = env.robot.solve_ik(pose[:3], yaw)
    width = 2 * env.rest_heights[goal.held_object]  # the block's edge: fingers touching its faces
    env.robot.reset(joints, finger_opening=width)
    env.refresh()


def hold_still(env: TabletopEnv, steps: int, opening: float = 1.0) -> dict:
    """Keep the tool where it is for ``steps`` steps with finger command ``opening``."""
    info: dict = {}
    for _ in range(steps):
        _, _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, opening], dtype=float))
    return info


__all__ = ["block_yaw", "move_action", "run_waypoints", "grasp_and_lift", "realize_goal", "hold_still"]
