"""Scene snapshots and pose-error metrics.

Quaternions are (x, y, z, w), PyBullet's convention. Positions are metres, angles radians.
All metric functions are vectorised over any leading batch dimensions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

#: An object counts as at its goal when closer than this in position (metres) ...
POSITION_TOLERANCE = 0.04
#: ... and closer than this in rotation (radians), modulo its symmetry.
ROTATION_TOLERANCE = 0.2

#: Per-object rotation comparison modes (see :func:`rotation_error`).
ROTATION_FULL = 0  # marked faces: every rotation is distinct
ROTATION_CUBE = 1  # faces look alike: modulo the cube's 24 rotations
ROTATION_BOX = 2  # a box with three different side lengths: modulo its 4 half-turns
ROTATION_IGNORE = 3  # a sphere: rotation does not matter

SYMMETRY_NAMES = {"none": ROTATION_FULL, "cube": ROTATION_CUBE, "box": ROTATION_BOX, "any": ROTATION_IGNORE}


def _cube_symmetries() -> np.ndarray:
    """The 24 rotations that map an axis-aligned cube onto itself, as (24, 4) quaternions.

    Up to sign they are the unit quaternions with one non-zero component (4), with four
    components of +-1/2 (8) and with two components of +-1/sqrt(2) (12).
    """
    candidates = []
    for signs in itertools.product((1.0, -1.0, 0.0), repeat=4):
        q = np.array(signs)
        nonzero = np.count_nonzero(q)
        if nonzero in (1, 2, 4):
            candidates.append(q / np.sqrt(nonzero))
    unique: list[np.ndarray] = []
    for q in candidates:
        if all(abs(q @ u) < 0.99 for u in unique):
            unique.append(q)
    return np.asarray(unique)


CUBE_SYMMETRIES = _cube_symmetries()
BOX_SYMMETRIES = np.array([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=float)
IDENTITY_QUATERNION = np.array([0.0, 0.0, 0.0, 1.0])


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (..., 4) quaternions (x, y, z, w)."""
    ax, ay, az, aw = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bx, by, bz, bw = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def canonical_poses(poses: np.ndarray) -> np.ndarray:
    """(..., 7) poses with each quaternion's sign chosen so that w >= 0: q and -q are the same
    rotation, and every pose this package hands out (object features, achieved and desired
    goals, relabelled goals) uses this one sign."""
    poses = np.array(poses, dtype=float)
    flip = poses[..., 6] < 0
    poses[flip, 3:] *= -1.0
    return poses


def quaternion_conjugate(q: np.ndarray) -> np.ndarray:
    """Inverse of (..., 4) unit quaternions."""
    return q * np.array([-1.0, -1.0, -1.0, 1.0])


_SQRT_HALF = float(np.sqrt(0.5))


def _symmetric_cos_half(abs_q: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """cos(angle / 2) of a relative rotation after its best symmetry, from |q_rel| (..., n, 4).

    The 24 cube rotations as unit quaternions are the 8 with one non-zero component, the 16 with
    four components of 1/2 and the 24 with two components of 1/sqrt(2) (up to sign), so
    max_s |<q, s>| = max(largest |q_i|, sum |q_i| / 2, (two largest |q_i|) / sqrt(2)). The box
    group {1, i, j, k} gives the largest |q_i|; no symmetry gives |w|.
    """
    ordered = np.sort(abs_q, axis=-1)
    largest = ordered[..., 3]
    cube = np.maximum(np.maximum(largest, abs_q.sum(axis=-1) * 0.5), (ordered[..., 3] + ordered[..., 2]) * _SQRT_HALF)
    cos_half = np.where(modes == ROTATION_CUBE, cube, np.where(modes == ROTATION_BOX, largest, abs_q[..., 3]))
    return np.where(modes == ROTATION_IGNORE, 1.0, cos_half)


def rotation_error(q_achieved: np.ndarray, q_desired: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Smallest rotation angle (radians) between two orientations, modulo each object's symmetry.

    q_achieved, q_desired: (..., n, 4) unit quaternions; modes: (n,) ROTATION_* codes.
    Returns (..., n) angles in [0, pi] (0 where rotation is ignored).
    """
    q_rel = quaternion_multiply(quaternion_conjugate(q_achieved), q_desired)
    cos_half = _symmetric_cos_half(np.abs(q_rel), np.asarray(modes))
    return 2.0 * np.arccos(np.minimum(cos_half, 1.0))


def _allowed_symmetries() -> np.ndarray:
    """(4, 24) bool: which of :data:`CUBE_SYMMETRIES` each ROTATION_* mode may use."""
    one_axis = np.count_nonzero(np.abs(CUBE_SYMMETRIES) > 1e-9, axis=1) == 1  # identity and the 3 half-turns
    identity = np.abs(CUBE_SYMMETRIES[:, 3]) > 1 - 1e-9
    allowed = np.zeros((4, len(CUBE_SYMMETRIES)), dtype=bool)
    allowed[ROTATION_FULL], allowed[ROTATION_CUBE], allowed[ROTATION_BOX] = identity, True, one_axis
    allowed[ROTATION_IGNORE] = identity
    return allowed


_ALLOWED_SYMMETRIES = _allowed_symmetries()


def rotate_vectors(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(..., 3) vectors ``v`` rotated by (..., 4) unit quaternions ``q``."""
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def rotation_to_goal(q_current: np.ndarray, q_goal: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """The smallest rotation that turns each object's orientation into its goal's, modulo its
    symmetry, as a rotation vector in the world frame (axis x angle, rad): (..., n, 3), zeros
    where rotation is ignored. Its norm is :func:`rotation_error`; a block resting 0.3 rad short
    of its goal's yaw gives (0, 0, 0.3). ``q_current``, ``q_goal``: (..., n, 4); ``modes``: (n,)."""
    q_current, q_goal, modes = np.asarray(q_current, dtype=float), np.asarray(q_goal, dtype=float), np.asarray(modes)
    in_body = quaternion_multiply(quaternion_conjugate(q_current), q_goal)  # q_current * in_body = q_goal
    candidates = quaternion_multiply(in_body[..., None, :], CUBE_SYMMETRIES)  # equivalent goals q_goal * s
    score = np.where(_ALLOWED_SYMMETRIES[modes], np.abs(candidates[..., 3]), -1.0)
    best = np.take_along_axis(candidates, score.argmax(axis=-1)[..., None, None], axis=-2)[..., 0, :]
    best = np.where(best[..., 3:] < 0, -best, best)
    sin_half = np.linalg.norm(best[..., :3], axis=-1)
    angle = 2.0 * np.arctan2(sin_half, best[..., 3])
    scale = np.where(sin_half > 1e-12, angle / np.maximum(sin_half, 1e-12), 2.0)
    vector = rotate_vectors(q_current, best[..., :3] * scale[..., None])
    return np.where((modes == ROTATION_IGNORE)[..., None], 0.0, vector)


def _quaternion_product(a, b) -> tuple[float, float, float, float]:
    """Hamilton product of two (x, y, z, w) 4-sequences of floats."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def pose_rotation_to_goal(q_current, q_goal, mode: int) -> tuple[float, float, float]:
    """Scalar :func:`rotation_to_goal` for one object ((x, y, z, w) 4-sequences of floats): the
    simulator's per-step path. The best symmetry comes in closed form (see
    :func:`_symmetric_cos_half`): the group element t maximising |<q, t>| is a unit axis, the
    signs of q over 2, or the signs of its two largest components over sqrt(2)."""
    if mode == ROTATION_IGNORE:
        return (0.0, 0.0, 0.0)
    cx, cy, cz, cw = q_current
    q = _quaternion_product((-cx, -cy, -cz, cw), q_goal)  # in the body frame: q_current * q = q_goal
    if mode != ROTATION_FULL:
        size = [abs(v) for v in q]
        order = sorted(range(4), key=size.__getitem__)
        first, second = order[3], order[2]
        t = [0.0, 0.0, 0.0, 0.0]
        t[first] = math.copysign(1.0, q[first])
        if mode == ROTATION_CUBE:
            halves, pair = sum(size) * 0.5, (size[first] + size[second]) * _SQRT_HALF
            if halves > max(size[first], pair):
                t = [math.copysign(0.5, v) for v in q]
            elif pair > size[first]:
                t[first], t[second] = math.copysign(_SQRT_HALF, q[first]), math.copysign(_SQRT_HALF, q[second])
        q = _quaternion_product(q, (-t[0], -t[1], -t[2], t[3]))  # q_goal * conj(t) is the same goal
    x, y, z, w = q if q[3] >= 0 else (-q[0], -q[1], -q[2], -q[3])
    sin_half = math.sqrt(x * x + y * y + z * z)
    scale = 2.0 * math.atan2(sin_half, w) / sin_half if sin_half > 1e-12 else 2.0
    x, y, z, w = _quaternion_product(_quaternion_product(q_current, (x * scale, y * scale, z * scale, 0.0)),
                                     (-cx, -cy, -cz, cw))  # into the world frame
    return (x, y, z)


def objects_at_goal(
    achieved: np.ndarray,
    desired: np.ndarray,
    modes: np.ndarray,
    position_tolerance: float = POSITION_TOLERANCE,
    rotation_tolerance: float = ROTATION_TOLERANCE,
) -> np.ndarray:
    """Which objects are at their goal pose.

    achieved, desired: (..., n, 7) poses (position xyz, quaternion xyzw). Returns (..., n) bool.
    """
    position_error = np.linalg.norm(achieved[..., :3] - desired[..., :3], axis=-1)
    angle = rotation_error(achieved[..., 3:], desired[..., 3:], modes)
    return (position_error < position_tolerance) & (angle < rotation_tolerance)


def pose_at_goal(pose, goal, mode: int, position_tolerance: float = POSITION_TOLERANCE,
                 rotation_tolerance: float = ROTATION_TOLERANCE) -> bool:
    """Scalar :func:`objects_at_goal` for one object (7-sequences of floats); the simulator's
    per-step path, where plain floats beat small numpy arrays several times over."""
    dx, dy, dz = pose[0] - goal[0], pose[1] - goal[1], pose[2] - goal[2]
    if dx * dx + dy * dy + dz * dz >= position_tolerance * position_tolerance:
        return False
    if mode == ROTATION_IGNORE:
        return True
    ax, ay, az, aw = pose[3], pose[4], pose[5], pose[6]
    bx, by, bz, bw = goal[3], goal[4], goal[5], goal[6]
    # conj(a) * b
    q = (
        abs(aw * bx - ax * bw - ay * bz + az * by),
        abs(aw * by + ax * bz - ay * bw - az * bx),
        abs(aw * bz - ax * by + ay * bx - az * bw),
        abs(aw * bw + ax * bx + ay * by + az * bz),
    )
    if mode == ROTATION_FULL:
        cos_half = q[3]
    else:
        ordered = sorted(q)
        cos_half = ordered[3]
        if mode == ROTATION_CUBE:
            cos_half = max(cos_half, sum(q) * 0.5, (ordered[3] + ordered[2]) * _SQRT_HALF)
    return cos_half > math.cos(rotation_tolerance / 2)


@dataclass
class SceneState:
    """A picklable snapshot of everything that evolves in a scene.

    Arrays are float64. ``robot_joints``/``robot_velocities``: (j,) positions (rad or m) and
    velocities of the robot's movable joints; ``robot_targets``: (j,) motor targets;
    ``object_poses``: (n, 7) position + quaternion; ``object_velocities``: (n, 6) linear (m/s) and
    angular (rad/s); ``controller``: the controller's own state (target gripper pose, see
    :class:`tabletop_env.robot.Panda`); ``steps``: env steps since reset.
    """

    robot_joints: np.ndarray
    robot_velocities: np.ndarray
    robot_targets: np.ndarray
    object_poses: np.ndarray
    object_velocities: np.ndarray
    controller: np.ndarray
    steps: int = 0
    extras: dict = field(default_factory=dict)

    def copy(self) -> "SceneState":
        return SceneState(
            self.robot_joints.copy(),
            self.robot_velocities.copy(),
            self.robot_targets.copy(),
            self.object_poses.copy(),
            self.object_velocities.copy(),
            self.controller.copy(),
            self.steps,
            dict(self.extras),
        )
