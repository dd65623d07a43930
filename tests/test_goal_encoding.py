"""One goal encoding: a goal reaches Bob the same way from the simulator, from relabelling
Alice's trajectory and from a holdout task, quaternion sign included (w >= 0)."""

import numpy as np

from selfplay.learning.cloning import relabel
from tabletop_env import TabletopEnv
from tabletop_env.env import POSE_SIZE
from tabletop_env.state import canonical_poses

YAW = 3.5  # rad: (0, 0, sin(yaw/2), cos(yaw/2)) has w < 0


def turned_block_pose(env):
    pose = env.object_poses()[0].copy()
    pose[3:] = (0.0, 0.0, np.sin(YAW / 2), np.cos(YAW / 2))
    assert pose[6] < 0
    return pose


def test_object_features_and_achieved_goals_have_w_non_negative():
    env = TabletopEnv(task="Tabletop/Push1-v0")
    env.reset(seed=0)
    env.set_object_poses(turned_block_pose(env)[None])
    obs = env.refresh()
    assert obs["objects"][0, 6] >= 0
    assert obs["achieved_goal"][6] >= 0
    assert env.object_poses()[0, 6] >= 0
    np.testing.assert_allclose(obs["objects"][0, 3:7], obs["achieved_goal"][3:7])


def test_a_goal_given_with_either_sign_reaches_bob_identically():
    env = TabletopEnv(task="Tabletop/Push1-v0")
    env.reset(seed=0)
    raw = turned_block_pose(env)[None]
    env.set_goal(raw)
    from_raw = env.refresh()
    env.set_goal(-raw * np.array([-1, -1, -1, 1, 1, 1, 1]))  # same rotation, w > 0
    from_canonical = env.refresh()
    for key in ("desired_goal", "goal"):
        np.testing.assert_array_equal(from_raw[key], from_canonical[key])
    assert from_raw["goal"][0, 6] > 0
    assert env.compute_reward(from_raw["achieved_goal"], from_raw["desired_goal"], None) == -1.0


def relabelled_and_seen(env):
    """Three steps of a trajectory relabelled with a goal that has the block turned by 3.5 rad
    (what the game takes as Alice's goal), and the observation Bob has at the trajectory's start
    when the simulator holds that goal: (relabelled arrays, that observation)."""
    env.reset(seed=0)
    start = env.get_state()
    observations = [env.refresh()]
    for _ in range(3):
        observations.append(env.step(np.array([0.3, 0, 0, 0.5, 0, 1.0]))[0])
    trace = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    env.set_object_poses(turned_block_pose(env)[None])
    goal = env.object_poses()
    relabelled = relabel(trace, goal, env.goal_rotation_modes)
    env.set_state(start)
    env.set_goal(goal)
    return relabelled, env.refresh()


def test_relabelled_goals_equal_simulator_goals_for_a_turned_block():
    """Alice leaves the block turned by 3.5 rad; relabelling her trajectory with that goal gives
    exactly the goal features Bob's own observation has when the simulator holds that goal."""
    relabelled, seen = relabelled_and_seen(TabletopEnv(task="Tabletop/Push1-v0"))
    for key in ("goal", "desired_goal"):
        np.testing.assert_allclose(relabelled[key][0], seen[key], atol=1e-6)
    assert relabelled["goal"][0, 0, 6] >= 0


def test_holdout_goals_use_the_same_sign():
    for task_id in ("Tabletop/Push2-v0", "Tabletop/Flip1-v0", "Tabletop/Stack2-v0"):
        env = TabletopEnv(task=task_id)
        for seed in range(5):
            obs, _ = env.reset(seed=seed)
            n = env.n_objects
            goals = obs["desired_goal"][: n * POSE_SIZE].reshape(n, POSE_SIZE)
            assert (goals[:, 6] >= 0).all(), task_id
            np.testing.assert_allclose(canonical_poses(env.goal), env.goal)
        env.close()


# -- env.goal_rotation: the rotation to the goal as goal features ---------------------------------


def yaw_pose(position, yaw):
    return np.array([*position, 0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


def test_rotation_to_goal_is_the_symmetric_yaw_difference_for_a_resting_block():
    env = TabletopEnv(task="Tabletop/Push1-v0", goal_rotation=True)
    env.reset(seed=0)
    position = env.object_poses()[0, :3]
    env.set_object_poses(yaw_pose(position, 0.1)[None])
    for goal_yaw, expected in ((0.4, 0.3), (-0.2, -0.3), (1.5, 1.4 - np.pi / 2)):  # a cube: modulo quarter turns
        env.set_goal(yaw_pose(position + [0.05, 0, 0], goal_yaw)[None])
        features = env.refresh()["goal"][0]
        assert features.shape == (13,)
        np.testing.assert_allclose(features[10:], [0.0, 0.0, expected], atol=1e-5)
    env.set_ignore_rotation(True)  # rotation does not count: nothing to turn
    np.testing.assert_array_equal(env.refresh()["goal"][0, 10:], 0.0)


def random_quaternions(n: int, seed: int) -> np.ndarray:
    """(n, 4) uniformly random unit quaternions (normalised Gaussian 4-vectors)."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_rotation_to_goal_turns_any_orientation_onto_its_goal_modulo_symmetry():
    from tabletop_env.state import ROTATION_BOX, ROTATION_CUBE, ROTATION_FULL, quaternion_multiply, rotation_error, rotation_to_goal

    current, goal = random_quaternions(200, 1), random_quaternions(200, 2)
    for mode in (ROTATION_FULL, ROTATION_CUBE, ROTATION_BOX):
        modes = np.array([mode])
        vector = rotation_to_goal(current[:, None], goal[:, None], modes)[:, 0]
        angle = np.linalg.norm(vector, axis=1)
        np.testing.assert_allclose(angle, rotation_error(current[:, None], goal[:, None], modes)[:, 0], atol=1e-9)
        # the rotation vector as a quaternion, applied in the world frame
        turn = np.concatenate([vector / angle[:, None] * np.sin(angle / 2)[:, None], np.cos(angle / 2)[:, None]], axis=1)
        turned = quaternion_multiply(turn, current)
        assert rotation_error(turned[:, None], goal[:, None], modes).max() < 1e-6


def test_relabelled_rotation_features_equal_the_simulators():
    relabelled, seen = relabelled_and_seen(TabletopEnv(task="Tabletop/Push1-v0", goal_rotation=True, max_objects=2))
    np.testing.assert_allclose(relabelled["goal"][0], seen["goal"], atol=1e-5)
    assert np.abs(seen["goal"][0, 10:]).max() > 0.1  # the block must turn to reach it
