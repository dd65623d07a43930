"""Physical quality: what the speed settings (250 Hz, 10 substeps) must not trade away."""

import numpy as np

from tabletop_env import TabletopEnv, make_task
from tabletop_env.scripted import grasp_and_lift, hold_still, realize_goal

SECOND = 25  # env steps (0.04 s each)


def test_untouched_block_stays_put_for_5_seconds():
    env = TabletopEnv(task="Tabletop/Push1-v0", max_episode_steps=10_000)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert obs["objects"][0, -1] == 0.0  # untouched: no finger contact
        start = env.object_poses()[0]
        hold_still(env, 5 * SECOND)
        moved = np.linalg.norm(env.object_poses()[0, :3] - start[:3])
        assert moved < 0.001, f"seed {seed}: block drifted {moved * 1000:.2f} mm"


def test_scripted_grasp_lifts_and_holds_a_block_for_2_seconds():
    env = TabletopEnv(task="Tabletop/Push1-v0", max_episode_steps=10_000, randomise_robot=False)
    for seed in range(3):
        env.reset(seed=seed)
        start = env.object_poses()[0]
        grasp_and_lift(env, 0, lift_to=0.2, hold_steps=1)
        lifted = env.object_poses()[0]
        hold_still(env, 2 * SECOND, opening=-1.0)
        held = env.object_poses()[0]
        assert lifted[2] > start[2] + 0.15, f"seed {seed}: block not lifted ({lifted[2]:.3f} m)"
        assert env.refresh()["objects"][0, -1] == 1.0  # the finger-contact feature sees the grasp
        assert np.linalg.norm(held[:3] - lifted[:3]) < 0.01, f"seed {seed}: block slipped"


def test_three_block_stack_stands_for_10_seconds():
    task = make_task("Tabletop/Stack3-v0")
    env = TabletopEnv(task=task, max_episode_steps=10_000, terminate_on_success=False)
    for seed in range(3):
        env.reset(seed=seed)
        goal = task.sample_goal(env, env._rng)
        env.set_goal(goal.poses)
        realize_goal(env, goal)
        info = hold_still(env, 10 * SECOND)
        assert info["is_success"], f"seed {seed}: stack fell ({env.object_poses()[:, :3].round(3)})"
        top_drift = np.linalg.norm(env.object_poses()[2, :3] - goal.poses[2, :3])
        assert top_drift < 0.005


def test_pressing_down_on_a_block_does_not_push_it_into_the_table():
    """The tool pin is strong enough to move the arm within a step, not to crush a block."""
    from tabletop_env.scripted import move_action

    env = TabletopEnv(task="Tabletop/Push1-v0", max_episode_steps=10_000, randomise_robot=False)
    for opening in (-1.0, 1.0):
        env.reset(seed=0)
        block = env.object_poses()[0, :3].copy()
        for _ in range(20):
            env.step(move_action(env, block + [0.01, 0.0, 0.10], 0.0, opening))
        lowest = block[2]
        for _ in range(10):
            env.step(np.array([0, 0, -1.0, 0, 0, opening]))
            lowest = min(lowest, env.object_poses()[0, 2])
        assert lowest > block[2] - 0.01, f"block pressed {1000 * (block[2] - lowest):.0f} mm into the table"


def test_a_full_speed_push_moves_the_block_no_faster_than_the_tool():
    """The tool moves at a steady speed through each step (Panda.move_pin), so a block it hits
    leaves at about the tool's speed (5 cm / 0.04 s = 1.25 m/s) and stops within a hand's width;
    a pin that jumped to each new target hit blocks at 2.3 m/s and slid them off the table."""
    from tabletop_env.fidelity import push_block

    outcome = push_block(push_steps=3)
    assert outcome.peak_block_speed < 1.5  # m/s
    assert outcome.total_move < 0.3  # m: still on the table
