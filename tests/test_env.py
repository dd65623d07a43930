"""TabletopEnv: API conformance, the state API, failure detection and bad input."""

import pickle
import resource

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import tabletop_env
from tabletop_env import DiscreteActions, TabletopEnv
from tabletop_env.objects import blocks


@pytest.fixture
def env():
    env = TabletopEnv(task="Tabletop/Push2-v0")
    yield env
    env.close()


def rollout(env, actions):
    """Observation vectors (len(actions), d) of stepping ``actions``."""
    return np.array([env.step(a)[0]["observation"] for a in actions])


@pytest.mark.parametrize("task_id", tabletop_env.list_tasks())
def test_every_task_passes_gymnasium_and_sb3_checkers(task_id):
    env = gym.make(task_id)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)  # SB3 calls compute_reward, which gymnasium 1.x wrappers hide
    env.close()


def test_required_tasks_are_registered():
    ids = set(tabletop_env.list_tasks())
    for name in ["Push1", "Push2", "Push4", "Push8", "PickAndPlace1", "PickAndPlace2", "Stack2", "Stack3",
                 "Flip1", "PushUnseen3", "Row3", "Pyramid3"]:
        assert f"Tabletop/{name}-v0" in ids


def test_observation_layout_and_padding(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["mask"], [1, 1, 0, 0, 0, 0, 0, 0])
    assert not obs["objects"][2:].any() and not obs["goal"][2:].any()
    poses = env.object_poses()
    np.testing.assert_allclose(obs["achieved_goal"][:14], poses.ravel(), atol=1e-6)
    np.testing.assert_allclose(obs["objects"][:2, :3], poses[:, :3], atol=1e-6)
    np.testing.assert_allclose(obs["goal"][:2, :7], env.goal, atol=1e-6)
    # padding slots hold identical identity poses, so they never block success
    np.testing.assert_array_equal(obs["achieved_goal"][14:], obs["desired_goal"][14:])
    assert set(info) >= {"is_success", "objects_at_goal", "off_table", "sim_error"}


def test_compute_reward_is_vectorised_and_matches_the_env(env):
    obs, _ = env.reset(seed=1)
    achieved, desired = obs["achieved_goal"], obs["desired_goal"]
    assert env.compute_reward(achieved, desired, {}) == -1.0
    assert env.compute_reward(achieved, achieved, {}) == 0.0
    batch_a = np.stack([achieved, achieved, desired])
    batch_d = np.stack([desired, achieved, desired])
    np.testing.assert_array_equal(env.compute_reward(batch_a, batch_d, [{}] * 3), [-1.0, 0.0, 0.0])
    # a 90-degree turn of a block is invisible (faces alike), a 45-degree one is not
    turned = desired.copy().reshape(8, 7)
    for angle, reward in ((np.pi / 2, 0.0), (np.pi / 4, -1.0)):
        rotated = turned.copy()
        from tabletop_env.state import quaternion_multiply

        rotated[0, 3:] = quaternion_multiply(turned[0, 3:], np.array([0, 0, np.sin(angle / 2), np.cos(angle / 2)]))
        assert env.compute_reward(rotated.ravel(), desired, {}) == reward


def test_reaching_the_goal_is_success_and_terminates(env):
    env.reset(seed=2)
    env.set_goal(env.object_poses())
    _, reward, terminated, truncated, info = env.step(np.zeros(6))
    assert info["is_success"] and reward == 0.0 and terminated and not truncated


def test_seeded_resets_are_reproducible(env):
    first, _ = env.reset(seed=7)
    env.step(np.ones(6))
    second, _ = env.reset(seed=7)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_restored_state_replays_bit_identically(env):
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    rollout(env, rng.uniform(-1, 1, (20, 6)))
    state = pickle.loads(pickle.dumps(env.get_state()))
    actions = rng.uniform(-1, 1, (60, 6))
    actions[:, 2] = -1.0  # press into the table: contacts are where restores usually drift
    continued = rollout(env, actions)
    env.set_state(state)
    replay = rollout(env, actions)
    env.reset(seed=5)  # somewhere else entirely
    env.set_state(state)
    replay_again = rollout(env, actions)
    np.testing.assert_array_equal(continued, replay)
    np.testing.assert_array_equal(replay, replay_again)


def test_state_restores_goal_and_counters(env):
    env.reset(seed=3)
    state = env.get_state()
    goal = env.goal.copy()
    env.reset(seed=4)
    env.step(np.zeros(6))
    env.set_state(state)
    np.testing.assert_array_equal(env.goal, goal)
    assert env.get_state().steps == state.steps


def test_state_from_another_env_is_rejected(env):
    other = TabletopEnv(task="Tabletop/Push1-v0")
    other.reset(seed=0)
    with pytest.raises(ValueError, match="objects"):
        env.set_state(other.get_state())
    other.close()


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_ten_thousand_save_restore_cycles_do_not_grow_memory(env):
    env.reset(seed=0)
    for _ in range(1000):  # warm up allocator pools
        env.set_state(env.get_state())
    before = _rss_kib()
    for _ in range(10_000):
        env.set_state(env.get_state())
    grown = _rss_kib() - before
    assert grown < 2048, f"resident memory grew by {grown} KiB over 10,000 cycles"


def test_object_off_the_table_ends_the_episode(env):
    env.reset(seed=0)
    poses = env.object_poses()
    poses[1, :3] = (0.0, 0.7, 0.3)  # beyond the table's edge, falling
    env.set_object_poses(poses)
    terminated = False
    for _ in range(30):
        _, _, terminated, _, info = env.step(np.zeros(6))
        if terminated:
            break
    assert terminated and info["off_table"].tolist() == [False, True] and not info["is_success"]


def test_exploded_simulation_is_reported_and_recovered(env):
    env.reset(seed=0)
    import pybullet

    pybullet.resetBaseVelocity(env.sim.bodies["object0"], (1e4, 0, 0), (0, 0, 0), physicsClientId=env.sim.client)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert terminated and "exploded" in info["sim_error"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6))
    obs, info = env.reset(seed=1)
    assert info["sim_error"] is None and np.isfinite(obs["observation"]).all()
    _, _, terminated, _, _ = env.step(np.zeros(6))
    assert not terminated


def test_nan_in_the_simulator_is_reported(env):
    env.reset(seed=0)
    import pybullet

    nan = float("nan")
    pybullet.resetBasePositionAndOrientation(env.sim.bodies["object1"], (nan, 0, 0.1), (0, 0, 0, 1), physicsClientId=env.sim.client)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert terminated and info["sim_error"] is not None


def test_bad_input_gets_clear_errors(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(4))
    with pytest.raises(ValueError, match="valid ids"):
        TabletopEnv(task="Tabletop/Juggle5-v0")
    with pytest.raises(ValueError, match="max_objects"):
        TabletopEnv(objects=blocks(3), max_objects=2)
    with pytest.raises(ValueError, match="blocks"):
        blocks(9)
    crowded = TabletopEnv(objects=blocks(8), placement_low=(-0.05, -0.05), placement_high=(0.05, 0.05))
    with pytest.raises(ValueError, match="placement area"):
        crowded.reset(seed=0)
    crowded.close()


def test_discrete_action_wrapper():
    env = DiscreteActions(TabletopEnv(task="Tabletop/Push1-v0"), bins=11)
    assert env.action_space == gym.spaces.MultiDiscrete([11] * 6)
    np.testing.assert_allclose(env.action([0, 5, 10, 5, 5, 10]), [-1, 0, 1, 0, 0, 1])
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()


def test_rgb_array_rendering():
    env = TabletopEnv(task="Tabletop/Push1-v0", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8 and image.std() > 5
    env.close()
