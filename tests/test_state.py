"""Pose metrics: the closed-form cube symmetry must agree with brute force over the 24 rotations."""

import numpy as np
import pytest

from tabletop_env.state import (
    BOX_SYMMETRIES,
    CUBE_SYMMETRIES,
    ROTATION_BOX,
    ROTATION_CUBE,
    ROTATION_FULL,
    ROTATION_IGNORE,
    objects_at_goal,
    pose_at_goal,
    quaternion_conjugate,
    quaternion_multiply,
    rotation_error,
)


def random_quaternions(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def brute_force_angle(a, b, symmetries):
    rel = quaternion_multiply(quaternion_conjugate(a), b)
    return 2 * np.arccos(np.clip(np.abs(symmetries @ rel).max(), 0, 1))


def test_cube_group_has_24_distinct_rotations():
    assert CUBE_SYMMETRIES.shape == (24, 4)
    # distinct up to sign: |<q_i, q_j>| < 1 for i != j
    gram = np.abs(CUBE_SYMMETRIES @ CUBE_SYMMETRIES.T)
    assert np.allclose(np.diag(gram), 1)
    assert (gram[~np.eye(24, dtype=bool)] < 0.99).all()


@pytest.mark.parametrize("mode, group", [(ROTATION_CUBE, CUBE_SYMMETRIES), (ROTATION_BOX, BOX_SYMMETRIES)])
def test_closed_form_symmetry_matches_brute_force(mode, group):
    rng = np.random.default_rng(0)
    a, b = random_quaternions(rng, 500), random_quaternions(rng, 500)
    fast = rotation_error(a, b, np.array(mode))
    slow = np.array([brute_force_angle(x, y, group) for x, y in zip(a, b)])
    np.testing.assert_allclose(fast, slow, atol=1e-9)


def test_cube_rotations_are_invisible_only_for_alike_faces():
    rng = np.random.default_rng(1)
    q = random_quaternions(rng, 24)
    turned = quaternion_multiply(q, CUBE_SYMMETRIES)
    assert np.allclose(rotation_error(q, turned, np.array(ROTATION_CUBE)), 0, atol=1e-6)
    full = rotation_error(q, turned, np.array(ROTATION_FULL))
    identity = np.isclose(np.abs(CUBE_SYMMETRIES[:, 3]), 1.0)
    assert identity.sum() == 1
    assert (full[~identity] > 1.0).all()  # every other symmetry is a real turn for marked faces
    assert np.allclose(rotation_error(q, turned, np.array(ROTATION_IGNORE)), 0)


def test_scalar_and_vectorised_rules_agree():
    rng = np.random.default_rng(2)
    n = 2000
    a = np.concatenate([rng.normal(0, 0.03, (n, 3)), random_quaternions(rng, n)], axis=1)
    # goals near a in rotation, so both outcomes occur
    small = np.concatenate([rng.normal(0, 0.08, (n, 3)), np.ones((n, 1))], axis=1)
    small /= np.linalg.norm(small, axis=1, keepdims=True)
    b = np.concatenate([rng.normal(0, 0.03, (n, 3)), quaternion_multiply(a[:, 3:], small)], axis=1)
    for mode in (ROTATION_FULL, ROTATION_CUBE, ROTATION_BOX, ROTATION_IGNORE):
        vector = objects_at_goal(a[:, None], b[:, None], np.array([mode]))[:, 0]
        scalar = np.array([pose_at_goal(x, y, mode) for x, y in zip(a.tolist(), b.tolist())])
        assert (vector == scalar).all()
        assert 0 < vector.sum() < n  # both outcomes are exercised


def test_tolerances_are_the_papers():
    goal = np.array([[0.0, 0.0, 0.025, 0, 0, 0, 1]])
    near = goal + np.array([[0.039, 0, 0, 0, 0, 0, 0]])
    far = goal + np.array([[0.041, 0, 0, 0, 0, 0, 0]])
    modes = np.array([ROTATION_FULL])
    assert objects_at_goal(near, goal, modes).all() and not objects_at_goal(far, goal, modes).any()
    turned = goal.copy()
    for angle, expected in ((0.19, True), (0.21, False)):
        turned[0, 3:] = (0, 0, np.sin(angle / 2), np.cos(angle / 2))
        assert objects_at_goal(turned, goal, modes)[0] == expected
