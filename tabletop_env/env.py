"""``TabletopEnv``: a goal-conditioned Panda tabletop in gymnasium's goal-env convention."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet

from tabletop_env import objects as catalogue
from tabletop_env.robot import ControlConfig, Panda
from tabletop_env.sim import PhysicsConfig, Simulation
from tabletop_env.state import (
    IDENTITY_QUATERNION,
    POSITION_TOLERANCE,
    ROTATION_IGNORE,
    ROTATION_TOLERANCE,
    SYMMETRY_NAMES,
    SceneState,
    canonical_poses,
    objects_at_goal,
    pose_at_goal,
    pose_rotation_to_goal,
)
from tabletop_env.wrappers import ACTION_DIMS

ROBOT_FEATURES = 21  # tool pos (3), tool vel (3), tool rotation matrix x/y columns (6), opening + target (2), arm joints (7)
OBJECT_FEATURES = 17  # pos (3), quat (4), lin vel (3), ang vel (3), pos - tool pos (3), finger contact (1)
GOAL_FEATURES = 10  # goal pos (3), goal quat (4), goal pos - pos (3)
GOAL_ROTATION_FEATURES = 3  # with goal_rotation=True: the rotation to the goal, world frame (rad)
POSE_SIZE = 7  # position (3) + quaternion (4)

#: The goal-env keys: all that SB3's ``HerReplayBuffer`` needs, and all consistent when it relabels
#: ``desired_goal`` (the structured ``goal`` features would keep the old goal).
GOAL_ENV_KEYS = ("observation", "achieved_goal", "desired_goal")
#: The keys of an object-set network (the self-play agents'): see :class:`TabletopEnv`.
STRUCTURED_KEYS = ("robot", "objects", "goal", "mask")

TABLE_HALF_EXTENTS = (0.6, 0.5, 0.02)  # metres; the top surface is at z = 0


def observation_spaces(max_objects: int, goal_rotation: bool = False) -> dict[str, gym.spaces.Box]:
    """Every observation key's space for ``max_objects`` object slots (the goal-env keys, flat,
    and the structured keys: ``objects`` (max_objects, 17), ``goal`` (max_objects, 10 or 13),
    ``mask`` (max_objects,), ``robot`` (21,))."""
    m = max_objects
    box = lambda *shape: gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)  # noqa: E731
    return {
        "observation": box(ROBOT_FEATURES + m * OBJECT_FEATURES + m),
        "achieved_goal": box(m * POSE_SIZE),
        "desired_goal": box(m * POSE_SIZE),
        "robot": box(ROBOT_FEATURES),
        "objects": box(m, OBJECT_FEATURES),
        "goal": box(m, GOAL_FEATURES + GOAL_ROTATION_FEATURES * goal_rotation),
        "mask": gym.spaces.Box(0.0, 1.0, shape=(m,), dtype=np.float32),
    }


def reads_goal_rotation(observation_space: gym.spaces.Dict) -> bool:
    """Whether observations of ``observation_space`` (an env's, or a saved policy's) carry the
    rotation to the goal in their goal features (``goal_rotation=True``)."""
    return observation_space["goal"].shape[-1] == GOAL_FEATURES + GOAL_ROTATION_FEATURES


def object_rotation_modes(specs: Sequence[catalogue.ObjectSpec], ignore_rotation: bool = False) -> np.ndarray:
    """How each object's rotation counts for success (n,) (:mod:`tabletop_env.state` modes): by
    its symmetry, or not at all with ``ignore_rotation``."""
    if ignore_rotation:
        return np.full(len(specs), ROTATION_IGNORE)
    return np.array([SYMMETRY_NAMES[s.symmetry] for s in specs])
TABLE_CENTRE = (-0.15, 0.0)  # metres (x, y) of the table centre: the Panda stands near its -x edge
FALL_DEPTH = 0.05  # an object this far below the table surface has fallen off (m)
EXPLOSION_SPEED = 25.0  # m/s; faster than this means the simulation blew up
EXPLOSION_DISTANCE = 5.0  # m from the origin
# Angular speeds (rad/s) may be 10x the linear limit before they count as an explosion.
_ANGULAR_SPEED_SCALE = 0.1


class TabletopEnv(gym.Env):
    """Franka Panda at a table with 1 to 8 objects; a goal is every object's pose.

    Observation (``Dict``): ``observation`` (flat robot + padded objects + mask), ``achieved_goal``
    and ``desired_goal`` ((max_objects * 7,) poses: position m, quaternion xyzw; padding slots hold
    the identity pose), plus, with ``structured_keys``, the keys of an object-set network:
    ``robot`` (ROBOT_FEATURES,), ``objects`` (max_objects, OBJECT_FEATURES), ``goal``
    (max_objects, GOAL_FEATURES, + GOAL_ROTATION_FEATURES with ``goal_rotation``) and ``mask``
    (max_objects,), 1 for a real object. The
    registered gymnasium ids leave the structured keys out by default, so that SB3's
    ``HerReplayBuffer``, which relabels ``desired_goal`` only, never sees a ``goal`` that
    contradicts it; ``gym.make(id, structured_keys=True)`` gives what a self-play Bob reads.

    Action: ``Box(-1, 1, (6,))`` = dx, dy, dz (m, scaled by ``control.max_translation``),
    dyaw, dpitch (rad, scaled) and the finger opening (-1 closed, +1 fully open). One step is
    ``physics.control_dt`` seconds (0.04 s by default).

    Reward: 0 when every object is at its goal (``info["is_success"]``), else -1.

    Args:
        task: a :class:`~tabletop_env.tasks.Task` or registered task name; it fixes the objects,
            the initial-state and goal distributions and the episode limit.
        objects: the objects when no task is given (default: one block); goals are then random
            on-table layouts unless ``reset(options={"goal": poses})`` or :meth:`set_goal` sets one.
        max_objects: padding size of the object arrays (the same policy serves any count).
        render_mode: None, "rgb_array" (headless TinyRenderer) or "human" (GUI).
        max_episode_steps: truncation limit; default: the task's, else 50 per object.
        terminate_on_success: end the episode once the goal has been held ``success_hold_steps``.
        placement_low, placement_high: (x, y) corners of the area objects and goals are placed in (m).
        randomise_robot: start each episode from a jittered home pose.
        home_tool_position: where the home pose puts the tool (m); the arm is solved for it once.
        ignore_rotation: an object is at its goal by position alone (for curricula and
            diagnostics; the holdout tasks' rule compares rotations too).
        goal_rotation: each object's goal features end with the rotation that takes it to its
            goal's orientation, modulo its symmetry (3, rotation vector in the world frame, rad;
            zeros where rotation does not count; :func:`tabletop_env.state.rotation_to_goal`):
            GOAL_FEATURES + GOAL_ROTATION_FEATURES features instead of GOAL_FEATURES.
        structured_keys: add ``robot``, ``objects``, ``goal`` and ``mask`` to the observation.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 25}

    def __init__(
        self,
        task: Any = None,
        objects: Sequence[catalogue.ObjectSpec] | None = None,
        max_objects: int = 8,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        terminate_on_success: bool = True,
        success_hold_steps: int = 1,
        placement_low: Sequence[float] = (-0.2, -0.25),
        placement_high: Sequence[float] = (0.2, 0.25),
        randomise_robot: bool = True,
        home_tool_position: Sequence[float] = (-0.05, 0.0, 0.15),
        settle_steps: int = 3,
        ignore_rotation: bool = False,
        goal_rotation: bool = False,
        structured_keys: bool = True,
        physics: PhysicsConfig = PhysicsConfig(),
        control: ControlConfig = ControlConfig(),
    ) -> None:
        if isinstance(task, str):
            from tabletop_env.tasks import make_task

            task = make_task(task)
        self.task = task
        if task is not None and objects is not None:
            raise ValueError("give a task or objects, not both (the task fixes its objects)")
        specs = tuple(task.objects if task is not None else (catalogue.blocks(1) if objects is None else objects))
        if not 1 <= len(specs) <= max_objects:
            raise ValueError(f"need between 1 and max_objects={max_objects} objects, got {len(specs)}")
        if success_hold_steps < 1:
            raise ValueError(f"success_hold_steps must be >= 1, got {success_hold_steps}")
        self.object_specs = specs
        self._object_kinds = tuple(f"{s.kind}" for s in specs)  # what a SceneState must match
        self.n_objects = len(specs)
        self.max_objects = max_objects
        self.render_mode = render_mode
        self.structured_keys = structured_keys
        self.terminate_on_success = terminate_on_success
        self.success_hold_steps = success_hold_steps
        self.placement_low = np.asarray(placement_low, dtype=float)
        self.placement_high = np.asarray(placement_high, dtype=float)
        if np.any(self.placement_low >= self.placement_high):
            raise ValueError(f"placement_low {placement_low} must be below placement_high {placement_high}")
        self.randomise_robot = randomise_robot
        self.home_tool_position = tuple(home_tool_position)
        self.settle_steps = settle_steps
        if max_episode_steps is None:
            max_episode_steps = task.max_episode_steps if task is not None else 50 * self.n_objects
        self.max_episode_steps = max_episode_steps
        self._task_modes = getattr(task, "rotation_modes", None) if task is not None else None
        self.set_ignore_rotation(ignore_rotation)
        self.rotation_tolerance = ROTATION_TOLERANCE  # rad; a curriculum may widen it (set_rotation_tolerance)
        self.goal_rotation = goal_rotation
        self.goal_feature_size = GOAL_FEATURES + GOAL_ROTATION_FEATURES * goal_rotation

        self._physics_config, self._control_config = physics, control
        self._build_scene()

        n, m = self.n_objects, max_objects
        spaces = observation_spaces(max_objects, goal_rotation)
        flat = spaces["observation"].shape[0]
        self._keys = tuple(spaces) if structured_keys else GOAL_ENV_KEYS
        self.observation_space = gym.spaces.Dict({k: spaces[k] for k in self._keys})
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIMS,), dtype=np.float32)

        # One buffer per observation: [robot | objects | mask | achieved | desired | goal].
        sizes = [("robot", ROBOT_FEATURES), ("objects", m * OBJECT_FEATURES), ("mask", m),
                 ("achieved_goal", m * POSE_SIZE), ("desired_goal", m * POSE_SIZE), ("goal", m * self.goal_feature_size)]
        self._obs_slices, start = {}, 0
        for key, size in sizes:
            self._obs_slices[key] = slice(start, start + size)
            start += size
        self._obs_slices["observation"] = slice(0, flat)
        self._obs_template = np.zeros(start, dtype=np.float32)
        template = self._views(self._obs_template)
        template["mask"][:n] = 1.0
        # Goal arrays of padding slots hold the identity pose, so they always count as "at goal".
        template["achieved_goal"].reshape(m, POSE_SIZE)[:, 3:] = IDENTITY_QUATERNION
        template["desired_goal"].reshape(m, POSE_SIZE)[:, 3:] = IDENTITY_QUATERNION
        self._pose_rows: list[tuple] = [(0.0,) * POSE_SIZE] * n
        self._velocity_rows: list[tuple] = [(0.0,) * 6] * n
        self._tool_position = (0.0, 0.0, 0.0)
        # No goal until reset(): a placeholder below the table, never "at goal" (not a valid goal)
        self._apply_goal(np.tile(np.concatenate([[0.0, 0.0, -1.0], IDENTITY_QUATERNION]), (n, 1)), None)
        self._steps = 0
        self._hold = 0
        self._sim_error: str | None = None
        self._rng = np.random.default_rng()

    # -- scene --------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        self.sim = Simulation(self._physics_config, self.render_mode)
        sim = self.sim
        sim.create_box("table", TABLE_HALF_EXTENTS, 0.0, (0.82, 0.71, 0.55, 1.0), (*TABLE_CENTRE, -TABLE_HALF_EXTENTS[2]))
        sim.set_dynamics("table", lateralFriction=0.6)
        self.robot = Panda(sim, self._control_config)
        self.home_joints = self.robot.solve_ik(self.home_tool_position)
        self._object_ids = []
        rest_heights, radii, inner = [], [], []
        for i, spec in enumerate(self.object_specs):
            body = catalogue.create(sim, f"object{i}", spec)
            self._object_ids.append(body)
            pybullet.resetBasePositionAndOrientation(body, (0, 0, 1), (0, 0, 0, 1), physicsClientId=sim.client)
            low, high = pybullet.getAABB(body, physicsClientId=sim.client)
            rest_heights.append(1.0 - low[2])
            radii.append(0.5 * float(np.hypot(high[0] - low[0], high[1] - low[1])))
            inner.append(0.5 * float(min(h - l for h, l in zip(high, low))))
        self.rest_heights = np.array(rest_heights)  # m from the table to the centre, default orientation
        self.inner_radii = np.array(inner)  # m, half the smallest extent (goals closer than this overlap)
        self.footprint_radii = np.array(radii)  # m, bound on the footprint for any yaw
        self._object_index = {body: i for i, body in enumerate(self._object_ids)}
        # Translucent goal markers, only when rendering: they have no collision shape.
        self._goal_markers = []
        if self.render_mode is not None:
            for spec, height in zip(self.object_specs, rest_heights):
                rgba = (*catalogue.COLOURS.get(spec.colour, (0.5, 0.5, 0.5, 1))[:3], 0.35)
                half = catalogue.BLOCK_SIZE / 2 if "block" in spec.kind else height
                # smaller than the object: TinyRenderer ignores alpha, so size tells them apart
                self._goal_markers.append(sim.create_marker((0.5 * half,) * 3, rgba))

    def close(self) -> None:
        self.sim.close()

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode. ``options``: ``state`` (a :class:`SceneState` to start from) and/or
        ``goal`` ((n, 7) object poses); otherwise the task (or a random layout) draws both."""
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        if self._sim_error is not None:  # a blown-up world is rebuilt from scratch
            self.sim.close()
            self._build_scene()
            self._sim_error = None
        if "state" in options:
            self.set_state(options["state"])
        else:
            self.sim.forget_contacts()  # a seeded reset must not depend on the last episode
            self.reset_robot()
            if self.task is not None:
                self.task.reset_scene(self, self._rng)
            else:
                self.set_object_poses(self.random_layout(self._rng))
            self.settle()
            self._steps = 0
        if "goal" in options:
            self.set_goal(options["goal"])
        elif "state" not in options:
            if self.task is not None:
                goal = self.task.sample_goal(self, self._rng)
                self.set_goal(goal.poses, goal.held_object)
            else:
                self.set_goal(self.random_layout(self._rng))
        self._hold = 0
        self._read_objects()
        obs = self._observe()
        return obs, self._info(self._at_goal())

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        values = np.asarray(action).tolist()
        if len(values) != ACTION_DIMS or not isinstance(values[0], (int, float)):
            raise ValueError(f"action must have shape ({ACTION_DIMS},), got {np.shape(action)}")
        if not math.isfinite(sum(values)):
            raise ValueError(f"action contains NaN or inf: {action}")
        if self._sim_error is not None:
            raise RuntimeError(f"the episode ended ({self._sim_error}); call reset()")
        self.robot.apply_action([min(max(v, -1.0), 1.0) for v in values], self._tool_position)
        self.sim.step(self.robot.move_pin)
        self._steps += 1
        self._read_objects()
        obs = self._observe()
        at_goal = self._at_goal()
        all_in = all(at_goal)
        self._hold = self._hold + 1 if all_in else 0
        success = self._hold >= self.success_hold_steps
        off_table = self._off_table_list()
        info = {
            "is_success": success,
            "objects_at_goal": np.array(at_goal, dtype=bool),
            "off_table": np.array(off_table, dtype=bool),
            "sim_error": self._sim_error,
            "steps": self._steps,
        }
        terminated = (success and self.terminate_on_success) or any(off_table) or self._sim_error is not None
        truncated = self._steps >= self.max_episode_steps and not terminated
        return obs, 0.0 if all_in else -1.0, terminated, truncated, info

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Sparse reward for (..., max_objects * 7) goal arrays: 0 if all objects are at goal, else -1."""
        shape = achieved_goal.shape[:-1]
        achieved = achieved_goal.reshape(*shape, self.max_objects, POSE_SIZE)
        desired = desired_goal.reshape(*shape, self.max_objects, POSE_SIZE)
        success = objects_at_goal(achieved, desired, self._padded_modes, rotation_tolerance=self.rotation_tolerance).all(axis=-1)
        return success.astype(np.float32) - 1.0

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.sim.render()
        return None

    # -- state API (used by self-play) ---------------------------------------------------------
    def get_state(self) -> SceneState:
        """A picklable snapshot of the scene, the goal and the episode counters.

        The snapshot is also re-applied to the live simulation, which drops PyBullet's contact
        caches (see :meth:`Simulation.forget_contacts`): continuing from here and restoring the
        snapshot later, whatever happened in between, give bit-identical trajectories.
        """
        positions, velocities = self.robot.joint_state()
        self._read_objects()
        state = SceneState(
            robot_joints=positions,
            robot_velocities=velocities,
            robot_targets=np.array(self.robot.joint_targets),
            object_poses=self._poses.copy(),
            object_velocities=self._velocities.copy(),
            controller=np.array(self.robot.target),
            steps=self._steps,
            extras={"goal": self.goal.copy(), "held": self.goal_held_object, "hold": self._hold, "objects": self._object_kinds},
        )
        self.set_state(state)
        return state

    def set_state(self, state: SceneState) -> None:
        """Restore a snapshot from :meth:`get_state` exactly (same actions -> same trajectory)."""
        if state.object_poses.shape != (self.n_objects, POSE_SIZE):
            raise ValueError(
                f"state has {len(state.object_poses)} objects but this env has {self.n_objects}"
            )
        kinds = state.extras.get("objects")
        if kinds is not None and tuple(kinds) != self._object_kinds:
            raise ValueError(f"state is of a scene with objects {list(kinds)} but this env has {list(self._object_kinds)}")
        self.sim.forget_contacts()
        self.robot.set_joint_state(state.robot_joints, state.robot_velocities, state.robot_targets)
        self.robot.reset_target(state.controller)
        c = self.sim.client
        for body, pose, velocity in zip(self._object_ids, state.object_poses, state.object_velocities):
            pybullet.resetBasePositionAndOrientation(body, pose[:3], pose[3:], physicsClientId=c)
            pybullet.resetBaseVelocity(body, velocity[:3], velocity[3:], physicsClientId=c)
        self._steps = state.steps
        if "goal" in state.extras:  # it passed set_goal when it was set (or is the placeholder before reset)
            self._apply_goal(np.asarray(state.extras["goal"], dtype=float), state.extras.get("held"))
        self._hold = state.extras.get("hold", 0)
        self._sim_error = None
        self.refresh()

    def refresh(self) -> dict[str, np.ndarray]:
        """Re-read the simulator after teleporting bodies; returns the current observation."""
        self._read_objects()
        return self._observe()

    def object_poses(self) -> np.ndarray:
        """Current (n, 7) object poses: position (m), quaternion (x, y, z, w) with w >= 0."""
        return self._poses.copy()

    def objects_at_goal(self, goal: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: which objects are within tolerance of ``goal`` (default: the current goal)."""
        goal = self.goal if goal is None else goal
        return objects_at_goal(self._poses, goal, self.rotation_modes, rotation_tolerance=self.rotation_tolerance)

    def off_table(self) -> np.ndarray:
        """(n,) bool: objects that fell below the table surface or lie beyond its edges."""
        return np.array(self._off_table_list())

    def set_goal(self, poses: np.ndarray, held_object: int | None = None) -> None:
        """Set the goal: (n, 7) object poses. ``held_object`` marks an in-air goal (for display).
        A goal no object can reach raises ``ValueError`` saying why (see :meth:`goal_problem`)."""
        problem = self.goal_problem(poses)
        if problem:
            raise ValueError(f"goal: {problem}")
        self._apply_goal(np.asarray(poses, dtype=float), held_object)

    def goal_problem(self, poses: np.ndarray) -> str | None:
        """Why (n, 7) goal poses cannot be reached, or None: the wrong shape, NaN, a quaternion
        that is not unit length (zero, say), an object below the table surface or off the table,
        two objects overlapping (centres closer than 0.75 x their half-sizes added)."""
        poses = np.asarray(poses, dtype=float)
        if poses.shape != (self.n_objects, POSE_SIZE):
            return f"must have shape ({self.n_objects}, {POSE_SIZE}), got {poses.shape}"
        if not np.all(np.isfinite(poses)):
            return "contains NaN or inf"
        norms = np.linalg.norm(poses[:, 3:], axis=1)
        for i in np.flatnonzero(np.abs(norms - 1.0) > 1e-3):
            return f"object {i}'s quaternion {poses[i, 3:].tolist()} has length {norms[i]:.3g}, not 1"
        cx, cy = TABLE_CENTRE
        hx, hy, _ = TABLE_HALF_EXTENTS
        for i, (x, y, z) in enumerate(poses[:, :3]):
            if z < 0:
                return f"object {i} at z = {z:.3f} m is below the table surface (z = 0)"
            if abs(x - cx) > hx or abs(y - cy) > hy:
                return f"object {i} at ({x:.3f}, {y:.3f}) m is off the table"
        for i in range(self.n_objects):
            for j in range(i + 1, self.n_objects):
                distance = float(np.linalg.norm(poses[i, :3] - poses[j, :3]))
                if distance < 0.75 * (self.inner_radii[i] + self.inner_radii[j]):
                    return f"objects {i} and {j} overlap (centres {100 * distance:.1f} cm apart)"
        return None

    def _apply_goal(self, poses: np.ndarray, held_object: int | None) -> None:
        poses = canonical_poses(poses)  # one quaternion sign for every goal, whatever made it
        self.goal = poses.copy()
        self.goal_held_object = held_object
        self._goal_rows = [tuple(row) for row in poses.tolist()]
        template = self._views(self._obs_template)
        template["desired_goal"][: self.n_objects * POSE_SIZE] = poses.ravel()
        template["goal"][: self.n_objects, :POSE_SIZE] = poses
        for marker, pose in zip(self._goal_markers, poses):
            pybullet.resetBasePositionAndOrientation(marker, pose[:3], pose[3:], physicsClientId=self.sim.client)

    @property
    def goal_rotation_modes(self) -> np.ndarray | None:
        """(max_objects,) the rotation modes behind the goal features' rotation part (padding
        slots: ignored), for computing them elsewhere (relabelling); None without ``goal_rotation``."""
        return self._padded_modes if self.goal_rotation else None

    @property
    def sim_error(self) -> str | None:
        """Why the simulation was stopped (non-finite or exploded state), else None."""
        return self._sim_error

    # -- scene helpers for tasks --------------------------------------------------------------
    def reset_robot(self) -> None:
        """Home pose, jittered when ``randomise_robot``; gripper open."""
        joints = self.home_joints.copy()
        if self.randomise_robot:
            joints += self._rng.uniform(-1, 1, 7) * np.array([0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3])
        self.robot.reset(joints)

    def set_object_poses(self, poses: np.ndarray) -> None:
        """Teleport objects to (n, 7) poses with zero velocity (:meth:`object_poses` shows them at once)."""
        c = self.sim.client
        for body, pose in zip(self._object_ids, np.asarray(poses, dtype=float)):
            pybullet.resetBasePositionAndOrientation(body, pose[:3], pose[3:], physicsClientId=c)
            pybullet.resetBaseVelocity(body, (0, 0, 0), (0, 0, 0), physicsClientId=c)
        self._read_objects()

    def set_ignore_rotation(self, ignore: bool) -> None:
        """Whether an object is at its goal by position alone from now on (``ignore_rotation``;
        a curriculum switches it during training)."""
        self.rotation_modes = object_rotation_modes(self.object_specs, ignore)
        if self._task_modes is not None and not ignore:
            self.rotation_modes = np.asarray(self._task_modes)
        self._modes_list = self.rotation_modes.tolist()
        self._padded_modes = np.concatenate([self.rotation_modes, np.full(self.max_objects - self.n_objects, 3)])

    def set_rotation_tolerance(self, tolerance: float) -> None:
        """How far (rad) an object's orientation may be from its goal's and count as at the goal,
        from now on (the holdouts' rule: :data:`ROTATION_TOLERANCE`; a curriculum narrows a
        wider one to it during training)."""
        if not 0.0 < tolerance <= math.pi:
            raise ValueError(f"rotation tolerance must be in (0, pi] rad, got {tolerance}")
        self.rotation_tolerance = float(tolerance)

    def random_layout(self, rng: np.random.Generator, indices: Sequence[int] | None = None) -> np.ndarray:
        """(n, 7) resting poses, non-overlapping, random yaw, in the placement area.

        Only objects in ``indices`` (default: all) are placed; the others keep zero poses.
        """
        indices = range(self.n_objects) if indices is None else list(indices)
        xy = catalogue.sample_positions(rng, self.footprint_radii[list(indices)], self.placement_low, self.placement_high)
        poses = np.zeros((self.n_objects, POSE_SIZE))
        for row, i in enumerate(indices):
            yaw = rng.uniform(-np.pi, np.pi)
            poses[i, :3] = (*xy[row], self.rest_heights[i] + 0.001)
            poses[i, 3:] = (0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2))
        return poses

    def settle(self) -> None:
        """Let the objects come to rest (``settle_steps`` env steps with the arm holding still)."""
        for _ in range(self.settle_steps):
            self.sim.step()
        self._read_objects()

    # -- internals ----------------------------------------------------------------------------
    # The per-step path below works on plain floats and tuples: with 1-8 objects, numpy's
    # per-call overhead would cost more than the arithmetic (see benchmarks/env_throughput.py).
    def _read_objects(self) -> None:
        """Refresh object poses/velocities; flag a non-finite or blown-up simulation."""
        c = self.sim.client
        get_pose, get_velocity = pybullet.getBasePositionAndOrientation, pybullet.getBaseVelocity
        poses, velocities = [], []
        extent = speed = 0.0
        finite = True
        for body in self._object_ids:
            position, orientation = get_pose(body, physicsClientId=c)
            if orientation[3] < 0:  # quaternions with w >= 0 everywhere (state.canonical_poses)
                orientation = (-orientation[0], -orientation[1], -orientation[2], -orientation[3])
            linear, angular = get_velocity(body, physicsClientId=c)
            pose, velocity = position + orientation, linear + angular
            poses.append(pose)
            velocities.append(velocity)
            finite = finite and math.isfinite(sum(pose) + sum(velocity))
            extent = max(extent, abs(position[0]), abs(position[1]), abs(position[2]))
            speed = max(speed, abs(linear[0]), abs(linear[1]), abs(linear[2]),
                        _ANGULAR_SPEED_SCALE * max(abs(angular[0]), abs(angular[1]), abs(angular[2])))
        self._pose_rows, self._velocity_rows = poses, velocities
        if not finite:
            self._sim_error = "non-finite object state"
        elif extent > EXPLOSION_DISTANCE or speed > EXPLOSION_SPEED:
            self._sim_error = "simulation exploded (object too far or too fast)"

    @property
    def _poses(self) -> np.ndarray:
        return np.array(self._pose_rows)

    @property
    def _velocities(self) -> np.ndarray:
        return np.array(self._velocity_rows)

    def _off_table_list(self) -> list[bool]:
        cx, cy = TABLE_CENTRE
        hx, hy, _ = TABLE_HALF_EXTENTS
        return [p[2] < -FALL_DEPTH or abs(p[0] - cx) > hx or abs(p[1] - cy) > hy for p in self._pose_rows]

    def _at_goal(self) -> list[bool]:
        tolerance = self.rotation_tolerance
        return [pose_at_goal(p, g, m, rotation_tolerance=tolerance) for p, g, m in zip(self._pose_rows, self._goal_rows, self._modes_list)]

    def _observe(self) -> dict[str, np.ndarray]:
        """The observation dict: views into one fresh float32 buffer laid out as
        [robot | objects | mask | achieved_goal | desired_goal | goal], filled from a template
        that already holds the mask, the padding poses and the goal poses (see :meth:`set_goal`)."""
        c = self.sim.client
        robot, n = self.robot, self.n_objects
        tool, orientation, velocity = robot.tool_state(velocity=True)
        joints = pybullet.getJointStates(robot.body, Panda.MOVABLE_JOINTS, physicsClientId=c)
        if not math.isfinite(sum(tool)):
            self._sim_error = "non-finite robot state"
            tool = (0.0, 0.0, 0.0)
        self._tool_position = tool
        r = pybullet.getMatrixFromQuaternion(orientation)
        # Finger contact per object: one query per object, which skips the (many) contact
        # points between the gripper and the table.
        contacts, fingers, body = pybullet.getContactPoints, Panda.FINGER_LINKS, robot.body
        contact = [
            1.0 if any(point[4] in fingers for point in contacts(bodyA=obj, bodyB=body, physicsClientId=c)) else 0.0
            for obj in self._object_ids
        ]
        tx, ty, tz = tool
        rows, differences = [], []
        for p, v, g, touching in zip(self._pose_rows, self._velocity_rows, self._goal_rows, contact):
            rows.append((*p, *v, p[0] - tx, p[1] - ty, p[2] - tz, touching))
            differences.append((g[0] - p[0], g[1] - p[1], g[2] - p[2]))
        buffer = self._obs_template.copy()
        views = self._views(buffer)
        views["robot"][:] = (*tool, *velocity, r[0], r[3], r[6], r[1], r[4], r[7], joints[7][0] + joints[8][0],
                             robot.target[5], joints[0][0], joints[1][0], joints[2][0], joints[3][0], joints[4][0],
                             joints[5][0], joints[6][0])
        views["objects"][:n] = rows
        views["achieved_goal"][: n * POSE_SIZE].reshape(n, POSE_SIZE)[:] = self._pose_rows
        views["goal"][:n, POSE_SIZE:GOAL_FEATURES] = differences
        if self.goal_rotation:
            views["goal"][:n, GOAL_FEATURES:] = [pose_rotation_to_goal(p[3:], g[3:], mode) for p, g, mode
                                                 in zip(self._pose_rows, self._goal_rows, self._modes_list)]
        return views if self.structured_keys else {k: views[k] for k in GOAL_ENV_KEYS}

    def _views(self, buffer: np.ndarray) -> dict[str, np.ndarray]:
        """Named views into an observation buffer (see :meth:`_observe`)."""
        m = self.max_objects
        s = self._obs_slices
        return {
            "observation": buffer[s["observation"]],
            "achieved_goal": buffer[s["achieved_goal"]],
            "desired_goal": buffer[s["desired_goal"]],
            "robot": buffer[s["robot"]],
            "objects": buffer[s["objects"]].reshape(m, OBJECT_FEATURES),
            "goal": buffer[s["goal"]].reshape(m, self.goal_feature_size),
            "mask": buffer[s["mask"]],
        }

    def _info(self, at_goal) -> dict[str, Any]:
        return {
            "is_success": bool(all(at_goal)),
            "objects_at_goal": np.array(at_goal),
            "off_table": self.off_table(),
            "sim_error": self._sim_error,
            "steps": self._steps,
        }


__all__ = ["TabletopEnv", "POSITION_TOLERANCE", "ROTATION_TOLERANCE"]
