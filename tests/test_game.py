"""The rules of the self-play game (docs/method.md sections 2-3), pinned with scripted players."""

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from selfplay.events import AliceTurn, BobTurnEnded, Demonstration, GameOver, GoalFinished, GoalProposed, event_of, events_of
from selfplay.game import ALICE, BOB, SelfPlayGame
from tests.helpers import HOLD, game_rules, push_actions

def make_game(n_objects=1, seed=0, placement=None, **rules) -> SelfPlayGame:
    # Alice continues from her last state (the paper's rule) unless a test says otherwise
    config = game_rules(**{"alice_steps": 40, "bob_steps_per_object": 15, "max_goals": 5, "alice_start": "continue", **rules})
    env_kwargs = {"randomise_robot": False}
    if placement is not None:
        env_kwargs.update(placement_low=(-placement, -placement), placement_high=(placement, placement))
    game = SelfPlayGame(n_objects=n_objects, config=config, env_kwargs=env_kwargs)
    game.reset(seed=seed)
    return game


def play_alice(game: SelfPlayGame, policy) -> tuple:
    """Step Alice's whole turn; returns the last step's (obs, reward, terminated, info)."""
    assert game.phase == ALICE
    for _ in range(game.config.alice_steps):
        obs, reward, terminated, _, info = game.step(next(policy))
        if terminated or game.phase != ALICE or event_of(info, GoalFinished):
            return obs, reward, terminated, info
    raise AssertionError("Alice's turn did not end after alice_steps")


def test_alice_who_does_nothing_gives_an_invalid_goal_and_the_game_ends():
    game = make_game()
    rewards = []
    for step in range(game.config.alice_steps):
        obs, reward, terminated, _, info = game.step(HOLD)
        rewards.append(reward)
        if terminated:
            break
    assert step == game.config.alice_steps - 1  # exactly T steps
    result = event_of(info, GoalFinished).result
    assert terminated and not result.valid and result.invalid_reason == "unmoved" and sum(rewards) == 0.0


def test_a_block_alice_drops_off_the_table_ends_the_game_at_once_and_says_why():
    game = make_game()
    game.step(HOLD)
    off = game.sim.object_poses()
    off[0, :3] = [0.0, 0.0, -0.5]  # below the table top
    game.sim.set_object_poses(off)
    _, reward, terminated, _, info = game.step(HOLD)
    result = event_of(info, GoalFinished).result
    assert terminated and reward == 0.0 and (result.valid, result.invalid_reason) == (False, "off_table")


def test_alice_who_pushes_a_block_gives_a_valid_goal_and_bob_plays_it():
    game = make_game()
    start = game.sim.object_poses()[0]
    obs, reward, terminated, info = play_alice(game, push_actions(game))
    assert not terminated and event_of(info, GoalProposed) and not event_of(info, GoalFinished) and reward == 0.0
    assert game.phase == BOB and obs["phase"][0] == 1.0
    # Bob starts from the initial state (his own world), with Alice's final poses as the goal
    np.testing.assert_allclose(game.sim.object_poses()[0], start, atol=1e-9)
    assert np.linalg.norm(game._goal[0, :2] - start[:2]) > 0.05
    np.testing.assert_allclose(obs["goal"][0, :7], game._goal[0], atol=1e-6)


def test_alice_never_sees_the_goal():
    game = make_game()
    obs, *_ = play_alice(game, push_actions(game))
    game.sim.set_object_poses(game._goal)  # Bob solves at once
    obs, _, _, _, _ = game.step(HOLD)
    assert game.phase == ALICE
    assert not obs["goal"].any() and not obs["desired_goal"].any() and obs["phase"][0] == 0.0


def test_bob_who_reaches_the_goal_gets_one_per_object_plus_five():
    game = make_game(n_objects=2)
    play_alice(game, push_actions(game))
    away = game.sim.object_poses()
    away[1, :2] += 0.1  # block 1 away from its goal too (Alice only pushed block 0)
    game.sim.set_object_poses(away)
    game.sim.refresh()
    _, reward, *_ = game.step(HOLD)
    assert reward == -1.0  # block 1 left its goal
    game.sim.set_object_poses(game._goal)  # a Bob who "restores" the goal state
    _, reward, terminated, _, info = game.step(HOLD)
    assert reward == 2 * 1.0 + 5.0
    finished = event_of(info, GoalFinished)
    assert finished.result.bob_success and finished.alice_reward == 1.0
    assert not terminated and game.phase == ALICE  # the next goal: Alice continues from her state


@pytest.mark.parametrize("paid_for_time", [False, True])
def test_a_goal_bob_solves_pays_alice_for_his_time_only_when_asked(paid_for_time):
    """``alice_paid_for_bob_time``: a goal Bob solves in 3 steps of 60 pays 1 + 5 x 3/60."""
    game = make_game(alice_paid_for_bob_time=paid_for_time, bob_steps_per_object=60)
    play_alice(game, push_actions(game))
    game.step(HOLD)
    game.step(HOLD)
    game.sim.set_object_poses(game._goal)
    _, _, _, _, info = game.step(HOLD)
    finished = event_of(info, GoalFinished)
    assert finished.result.bob_success and finished.result.bob_steps == 3
    assert finished.alice_reward == pytest.approx(1.0 + (5.0 * 3 / 60 if paid_for_time else 0.0))


def test_object_leaving_its_goal_costs_bob_one():
    game = make_game(n_objects=2, success_hold_steps=3)
    play_alice(game, push_actions(game))
    goal = game._goal.copy()
    game.sim.set_object_poses(goal)
    _, reward, *_ = game.step(HOLD)
    assert reward == 1.0  # block 0 entered (block 1 was already there); success needs 3 steps
    moved = goal.copy()
    moved[0, :3] += [0.0, 0.0, 0.3]  # lift block 0 out of its goal
    game.sim.set_object_poses(moved)
    game.sim.refresh()
    _, reward, *_ = game.step(HOLD)
    assert reward == -1.0


def test_timeout_is_a_failure_and_bob_sits_out_the_rest():
    game = make_game(max_goals=3)
    play_alice(game, push_actions(game))
    info = {}
    for step in range(game.bob_timeout):
        _, reward, terminated, _, info = game.step(HOLD)
        if event_of(info, GoalFinished):
            break
    assert step == game.bob_timeout - 1
    assert event_of(info, BobTurnEnded).sits_out and event_of(info, GoalFinished).result.bob_success is False
    assert event_of(info, GoalFinished).alice_reward == 1.0 + 5.0
    assert len(event_of(info, Demonstration).actions) == game.config.alice_steps
    # Alice proposes the remaining goals alone; each is paid at once and becomes a demonstration
    assert game.phase == ALICE
    obs, reward, terminated, info = play_alice(game, push_actions(game))
    assert game.phase == ALICE and reward == 6.0 and event_of(info, Demonstration) and not terminated
    assert event_of(info, GoalFinished).alice_reward is None  # paid at once, as the step's reward
    obs, reward, terminated, info = play_alice(game, push_actions(game))
    assert terminated and len(event_of(info, GameOver).results) == 3  # max_goals reached


@pytest.mark.parametrize("bob_succeeds, expected", [(True, 1.0 - 3.0), (False, 1.0 - 3.0 + 5.0)])
def test_goal_outside_the_placement_area_is_valid_but_penalised(bob_succeeds, expected):
    game = make_game(placement=0.03, bob_steps_per_object=3)
    play_alice(game, push_actions(game, distance=0.15, direction=1.0))
    assert game._pending_result.outside
    if bob_succeeds:
        game.sim.set_object_poses(game._goal)
    for _ in range(game.bob_timeout):
        _, _, _, _, info = game.step(HOLD)
        if event_of(info, GoalFinished):
            break
    assert event_of(info, GoalFinished).alice_reward == expected


@pytest.mark.parametrize("end_out_of_reach", [True, False])
def test_a_goal_that_leaves_the_block_beyond_reach_ends_the_game_after_bob_plays_it(end_out_of_reach):
    """No later turn could move a block the tool cannot touch (game.end_out_of_reach); off, the
    game plays on (the paper) and the next goal is invalid, since nothing can move."""
    game = make_game(max_goals=3, end_out_of_reach=end_out_of_reach, alice_start="near_object")
    for _ in range(game.config.alice_steps - 1):
        game.step(HOLD)
    beyond = game.sim.object_poses()
    beyond[0, :2] = [0.0, 0.44]  # on the table (|y| < 0.5), past the tool's reach (|y| <= 0.38)
    game.sim.set_object_poses(beyond)
    _, _, terminated, _, info = game.step(HOLD)
    assert not terminated and event_of(info, GoalProposed) and game._pending_result.outside
    for _ in range(game.bob_timeout):
        _, _, terminated, _, info = game.step(HOLD)
        if event_of(info, GoalFinished):
            break
    result = event_of(info, GoalFinished).result
    assert result.valid and result.bob_success is False and event_of(info, GoalFinished).alice_reward == 1.0 - 3.0 + 5.0
    if end_out_of_reach:
        assert terminated and event_of(info, GameOver).out_of_reach and len(event_of(info, GameOver).results) == 1
        return
    assert not terminated and game.phase == ALICE  # plays on, and nothing can move the block
    obs, reward, terminated, info = play_alice(game, push_actions(game))
    assert terminated and event_of(info, GoalFinished).result.invalid_reason == "unmoved"
    assert not event_of(info, GameOver).out_of_reach


@pytest.mark.parametrize("position_only", [False, True])
def test_a_goal_reports_how_far_each_object_turned_modulo_its_symmetry(position_only):
    """goals.csv's ``turn``: what the full success rule would have to undo, so a quarter turn of a
    cube is no turn at all; recorded also while success is by position alone."""
    game = make_game(max_goals=2, position_only=position_only)
    for _ in range(game.config.alice_steps - 1):
        game.step(HOLD)
    turned = game.sim.object_poses()
    turned[0, :2] += 0.06  # moved, so the goal is valid
    turned[0, 3:7] = [0, 0, np.sin(0.25), np.cos(0.25)]  # 0.5 rad about z from the start's identity
    game._turn_start_poses[0, 3:7] = [0, 0, 0, 1]
    game.sim.set_object_poses(turned)
    game.step(HOLD)
    assert np.isclose(game._pending_result.turns[0], 0.5, atol=0.02)
    game._turn_start_poses[0, 3:7] = [0, 0, np.sin(0.25 + np.pi / 4), np.cos(0.25 + np.pi / 4)]  # a quarter turn from the goal
    assert np.isclose(game._describe_goal(turned, np.array([True])).turns[0], 0.0, atol=1e-6)


def test_single_goal_games_end_after_one_goal():
    game = make_game(max_goals=1)
    play_alice(game, push_actions(game))
    game.sim.set_object_poses(game._goal)
    _, _, terminated, _, info = game.step(HOLD)
    assert terminated and event_of(info, GoalFinished).result.bob_success


def test_uniform_teacher_gives_bob_hand_designed_goals():
    game = make_game(n_objects=2, teacher="uniform")
    assert game.phase == BOB
    obs, _ = game.reset(seed=3)
    assert obs["phase"][0] == 1.0 and obs["mask"][:2].all()
    goal = game._goal
    assert not np.allclose(goal[:, :2], game.sim.object_poses()[:, :2], atol=0.01)


@pytest.mark.parametrize("vec_env_class", [DummyVecEnv, SubprocVecEnv])
def test_games_run_in_sb3_vec_envs(vec_env_class):
    venv = vec_env_class([lambda i=i: make_game(seed=i) for i in range(2)])
    obs = venv.reset()
    assert obs["phase"].shape == (2, 1)
    for _ in range(50):
        obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    assert all(isinstance(info["events"], list) for info in infos)  # typed events cross process boundaries
    venv.close()


# -- options for curricula and the learning ladder (off by default) ------------------------------
def test_near_push_goals_lie_at_the_goal_distance_inside_the_area():
    game = make_game(placement=0.25, teacher="uniform", uniform_tasks=("push",), goal_distance=(0.04, 0.08))
    for seed in range(20):
        obs, _ = game.reset(seed=seed)
        assert game.phase == BOB
        block, goal = game.sim.object_poses()[0], obs["desired_goal"][:7]
        assert 0.04 - 1e-6 <= np.linalg.norm(goal[:2] - block[:2]) <= 0.08 + 1e-6
        assert np.all(np.abs(goal[:2]) <= 0.25)
        assert abs(goal[2] - block[2]) < 0.002  # resting on the table


def test_position_only_success_ignores_rotation():
    for position_only, expected in ((True, True), (False, False)):
        game = make_game(teacher="uniform", uniform_tasks=("push",), position_only=position_only)
        goal = game.sim.goal.copy()
        turned = goal.copy()
        turned[0, 3:] = (0.0, 0.0, np.sin(0.25), np.cos(0.25))  # the goal position, 0.5 rad off
        game.sim.set_object_poses(turned)
        _, _, _, _, info = game.step(HOLD)
        assert bool(event_of(info, GoalFinished) and event_of(info, GoalFinished).result.bob_success) is expected


@pytest.mark.parametrize("rule", ["continue", "home", "near_object"])
def test_alice_start_rule_for_her_later_turns(rule):
    config = game_rules(alice_steps=40, bob_steps_per_object=1, max_goals=3, alice_start=rule)
    game = SelfPlayGame(1, config, {"randomise_robot": False, "home_tool_position": (-0.25, 0.15, 0.25),
                                    "placement_low": (-0.25, -0.25), "placement_high": (0.25, 0.25)})
    game.reset(seed=0)
    home = np.array(game.sim.home_tool_position)
    policy = push_actions(game)
    for _ in range(game.config.alice_steps - 1):
        game.step(next(policy))
    left_tool = game.sim.robot.tool_pose()[0]  # where Alice leaves the arm (it holds still by now)
    assert np.linalg.norm(left_tool - home) > 0.08
    game.step(next(policy))  # her last step: the goal is set, Bob's turn starts
    goal = game._goal.copy()
    game.step(HOLD)  # Bob's single step: he fails, sits out; Alice's second turn starts
    assert game.phase == ALICE
    np.testing.assert_allclose(game.sim.object_poses(), goal, atol=1e-3)  # objects stay in both rules
    tool = game.sim.robot.tool_pose()[0]
    if rule == "home":
        assert np.linalg.norm(tool - home) < 0.01
    elif rule == "near_object":
        assert 0.075 < np.linalg.norm(tool[:2] - goal[0, :2]) < 0.125 and abs(tool[2] - home[2]) < 0.01
    else:
        np.testing.assert_allclose(tool, left_tool, atol=1e-3)


def test_with_near_object_starts_bob_begins_his_first_goal_where_alice_began_hers():
    """The first turn's arm move belongs to s0 (docs/method.md 2): both players start from it."""
    game = make_game(alice_start="near_object", placement=0.25)
    alice_robot, alice_objects = game.sim.refresh()["robot"].copy(), game.sim.object_poses()
    tool = game.sim.robot.tool_pose()[0]
    assert 0.075 < np.linalg.norm(tool[:2] - alice_objects[0, :2]) < 0.125  # next to the block
    play_alice(game, push_actions(game))
    assert game.phase == BOB
    np.testing.assert_allclose(game._last_obs["robot"], alice_robot, atol=1e-6)
    np.testing.assert_allclose(game.sim.object_poses(), alice_objects, atol=1e-6)


def test_a_failed_bob_turn_that_moved_the_block_becomes_a_hindsight_demonstration():
    game = make_game(placement=0.25, teacher="uniform", uniform_tasks=("push",), goal_distance=(0.3, 0.3),
                     bob_hindsight="final", bob_steps_per_object=40)
    sent, states = [], []
    policy = push_actions(game, distance=0.08)
    info = {}
    while not event_of(info, GoalFinished):
        states.append(game.sim.get_state())
        sent.append(next(policy))
        _, _, _, _, info = game.step(sent[-1])
    assert event_of(info, GoalFinished).result.bob_success is False  # the goal was 30 cm away
    (demo,), reached = events_of(info, Demonstration), game.sim.object_poses()
    assert demo.hindsight
    np.testing.assert_array_equal(demo.actions, np.stack(sent))
    for t in (0, 10, len(sent) - 1):  # what Bob would have seen with the reached poses as his goal
        game.sim.set_state(states[t])
        game.sim.set_goal(reached)
        np.testing.assert_allclose(demo.observations["goal"][t], game.sim.refresh()["goal"], atol=2e-6)


def test_hindsight_windows_relabel_each_window_that_moved_the_block_with_its_end_poses():
    game = make_game(placement=0.25, teacher="uniform", uniform_tasks=("push",), goal_distance=(0.3, 0.3),
                     bob_hindsight="windows", hindsight_window=10, bob_steps_per_object=40)
    sent, states, poses = [], [], []
    policy = push_actions(game, distance=0.08)
    info = {}
    while not event_of(info, GoalFinished):
        states.append(game.sim.get_state())
        poses.append(game.sim.object_poses())
        sent.append(next(policy))
        _, _, _, _, info = game.step(sent[-1])
    poses.append(game.sim.object_poses())
    moved = [s for s in range(0, 40, 10) if np.linalg.norm(poses[s + 10][0, :3] - poses[s][0, :3]) >= 0.01]
    assert 0 < len(moved) < 4  # the push moves the block in some windows, not in all
    demo = event_of(info, Demonstration)
    assert demo.hindsight
    steps = [t for s in moved for t in range(s, s + 10)]
    np.testing.assert_array_equal(demo.actions, np.stack(sent)[steps])
    for row, t in enumerate(steps):  # what Bob would have seen with the window's end as his goal
        if t % 10 in (0, 9):
            game.sim.set_state(states[t])
            game.sim.set_goal(poses[t - t % 10 + 10])
            np.testing.assert_allclose(demo.observations["goal"][row], game.sim.refresh()["goal"], atol=2e-6)


def test_a_failed_bob_turn_that_moved_nothing_teaches_nothing():
    game = make_game(teacher="uniform", uniform_tasks=("push",), bob_hindsight="final", bob_steps_per_object=5)
    for _ in range(5):
        _, _, _, _, info = game.step(HOLD)
    assert event_of(info, GoalFinished).result.bob_success is False and not event_of(info, Demonstration)


def test_translation_scale_shrinks_every_step_and_demonstrations_keep_the_chosen_bins():
    game = make_game(translation_scale=0.5, alice_steps=3)
    step = game.sim.robot.control.max_translation
    before = np.array(game.sim.robot.target[:2])
    sent = HOLD.copy()
    sent[:2] = (9, 2)  # +0.8, -0.6
    game.step(sent)
    np.testing.assert_allclose(np.array(game.sim.robot.target[:2]) - before, np.array([0.8, -0.6]) * 0.5 * step, atol=1e-9)
    assert (game._alice_trace[-1][1][:2] == game.action_values[[9, 2]]).all()  # as chosen, for ABC


def test_bob_fingers_closed_ignores_his_finger_command_only():
    game = make_game(teacher="uniform", uniform_tasks=("push",), bob_fingers_closed=True)
    game.step(HOLD)  # HOLD asks for open fingers
    assert game.sim.robot.target[5] == 0.0  # closed: opening 0 m
    alice = make_game(bob_fingers_closed=True)
    alice.step(HOLD)
    assert alice.sim.robot.target[5] > 0.0  # Alice's fingers still follow her command


def test_a_new_teacher_is_one_class_that_gives_bob_its_goals():
    from selfplay.config import make_config
    from selfplay.teachers import TEACHERS, Teacher, register_teacher

    @register_teacher
    class ShiftTeacher(Teacher):
        """Every goal: block 0 moved 6 cm along +x."""

        name, alice_proposes = "shift_test", False

        def sample_goal(self, sim, rng):
            goal = sim.object_poses()
            goal[0, 0] += 0.06
            return goal

    try:
        assert make_config(**{"teacher.name": "shift_test"}).teacher.name == "shift_test"  # the config knows it
        game = make_game(placement=0.25, teacher="shift_test")
        assert game.phase == BOB  # no Alice
        np.testing.assert_allclose(game._goal[0, 0] - game.sim.object_poses()[0, 0], 0.06, atol=1e-9)
        for _ in range(game.bob_timeout):
            _, _, terminated, _, info = game.step(HOLD)
        assert terminated and event_of(info, GoalFinished).result.bob_success is False  # he sat out: no Alice to go on with
    finally:
        del TEACHERS["shift_test"]


def test_the_game_discretises_actions_exactly_as_discrete_actions_does():
    from tabletop_env import DiscreteActions, TabletopEnv
    from tabletop_env.wrappers import nearest_bins

    game = make_game()
    wrapper = DiscreteActions(TabletopEnv(), bins=game.action_space.nvec[0])
    assert game.action_space == wrapper.action_space
    bins = np.arange(wrapper.bins)
    np.testing.assert_array_equal(game.action_values[bins], wrapper.values[bins])
    np.testing.assert_array_equal(nearest_bins(wrapper.values, wrapper.bins), bins)  # demonstrations keep the chosen bins
    wrapper.close()


def test_alice_starts_next_to_a_block_outside_the_placement_area_while_the_arm_reaches_it():
    """Alice's pushes often end outside the 20 x 20 cm area; her next turn must still start next
    to the block (within the arm's reach), or nothing moves and the game ends on an invalid goal."""
    game = SelfPlayGame(1, game_rules(alice_start="near_object"), {"randomise_robot": False, "home_tool_position": (-0.05, 0.0, 0.05),
                                                                   "placement_low": (-0.15, -0.1), "placement_high": (0.05, 0.1)})
    game.reset(seed=0)
    for xy in [(0.2, 0.2), (-0.3, -0.25), (0.15, -0.3)]:  # 10-20 cm outside the area, within reach
        pose = game.sim.object_poses()
        pose[0, :2] = xy
        game.sim.set_object_poses(pose)
        game.sim.refresh()
        game._move_arm_for_alice()
        tool = game.sim.robot.tool_pose()[0]
        assert 0.075 < np.linalg.norm(tool[:2] - np.array(xy)) < 0.125


def test_alice_start_distance_sets_how_far_from_the_block_her_turns_start():
    """The rung-2 lever (game.alice_start_distance): closer starts, every turn, on every side."""
    game = SelfPlayGame(1, game_rules(alice_start="near_object", alice_start_distance=(0.05, 0.06)),
                        {"randomise_robot": False, "home_tool_position": (-0.05, 0.0, 0.05),
                         "placement_low": (-0.15, -0.1), "placement_high": (0.05, 0.1)})
    game.reset(seed=0)
    block = game.sim.object_poses()[0, :2]
    offsets = []
    for _ in range(8):
        game._move_arm_for_alice()
        offsets.append(game.sim.robot.tool_pose()[0][:2] - block)
    distances = np.linalg.norm(offsets, axis=1)
    assert np.all((distances > 0.045) & (distances < 0.065)), distances
    assert np.ptp(np.arctan2(*np.array(offsets).T)) > 1.0  # not always the same side
    with pytest.raises(ValueError, match="alice_start_distance"):
        SelfPlayGame(1, game_rules(alice_start_distance=(0.12, 0.08)))


def test_alice_turn_for_an_off_policy_bob_is_her_whole_turn_towards_her_goal():
    game = make_game(bob_actions="continuous", alice_turns_for_replay=True)
    played = []

    def recording(policy):
        for action in policy:
            played.append(action)  # bin indices
            yield action

    obs, _, _, info = play_alice(game, recording(push_actions(game)))
    turn = event_of(info, AliceTurn)
    goal = event_of(info, GoalProposed).goal
    assert len(turn.observations) == len(turn.actions) + 1 == game.config.alice_steps + 1
    np.testing.assert_allclose(turn.actions, game.action_values[np.stack(played)], atol=1e-6)  # as values
    # every observation asks for her final poses, and the last one shows the objects there
    for o in turn.observations:
        np.testing.assert_allclose(o["goal"][0, :7], goal[0], atol=1e-6)
        np.testing.assert_allclose(o["goal"][0, 7:], goal[0, :3] - o["objects"][0, :3], atol=1e-5)
    np.testing.assert_allclose(turn.observations[-1]["objects"][0, :7], goal[0], atol=1e-5)
    assert np.linalg.norm(turn.observations[0]["objects"][0, :3] - goal[0, :3]) > 0.05
    # off by default
    default = make_game(bob_actions="continuous")
    assert not event_of(play_alice(default, push_actions(default))[3], AliceTurn)
