"""The off-policy Bob (bob.algo=sac): continuous actions in the game, whole turns in a replay
buffer whose hindsight goals and rewards agree with the simulator, a real SAC checkpoint."""

import csv
import shutil

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC

from selfplay.config import ConfigError
from selfplay.evaluation import BobPolicy, evaluate_task
from selfplay.events import BobTurnEnded, GoalFinished, event_of
from selfplay.game import BOB, SelfPlayGame
from selfplay.learning.sac import DemonstrationCloning, OffPolicyBob, TurnReplayBuffer, goal_features, rotation_modes_for
from selfplay.learning.sac_step import critic_pairs, sac_gradient_step, update_input_statistics
from selfplay.training import Trainer
from tabletop_env.scripted import move_action
from tabletop_env.state import ROTATION_IGNORE, objects_at_goal
from tests.helpers import game_rules, tiny_config


def uniform_game(goal_rotation: bool = False, **rules) -> SelfPlayGame:
    config = game_rules(teacher="uniform", uniform_tasks=("push",), goal_distance=(0.04, 0.08), bob_steps_per_object=30,
                        bob_actions="continuous", **rules)
    game = SelfPlayGame(n_objects=1, config=config, max_objects=2,
                        env_kwargs={"placement_low": (-0.15, -0.1), "placement_high": (0.05, 0.1), "home_tool_position": (-0.05, 0.0, 0.05),
                                    "goal_rotation": goal_rotation})
    game.reset(seed=3)
    return game


def play_turn(game: SelfPlayGame, rng: np.random.Generator) -> tuple[list[dict], np.ndarray, dict]:
    """One Bob turn of random continuous actions: (T + 1 observations, actions (T, 6), last info)."""
    keys = ("robot", "objects", "goal", "mask")
    obs = game.sim.refresh()
    observations, actions = [{k: obs[k] for k in keys}], []
    while True:
        action = rng.uniform(-1, 1, 6)
        obs, _, _, _, info = game.step(action)
        actions.append(action)
        if event_of(info, BobTurnEnded):
            observations.append(event_of(info, BobTurnEnded).last_observation)
            return observations, np.array(actions, dtype=np.float32), info
        observations.append({k: obs[k] for k in keys})


def test_continuous_bob_actions_move_the_tool_by_exactly_what_they_say():
    game = uniform_game()
    assert game.phase == BOB
    before = np.array(game.sim.robot.target[:3])
    game.step(np.array([0.3, -0.2, 0.1, 0.0, 0.0, 1.0]))  # not a bin value: 0.3 would round to 0.2 or 0.4
    after = np.array(game.sim.robot.target[:3])
    step = game.sim.robot.control.max_translation
    # x and y exactly (z is also kept within one step of the measured tool height)
    np.testing.assert_allclose((after - before)[:2], np.array([0.3, -0.2]) * step, atol=1e-9)


def test_a_turn_ends_with_its_last_observation_for_the_replay_buffer():
    game, rng = uniform_game(), np.random.default_rng(0)
    observations, actions, info = play_turn(game, rng)
    assert len(observations) == len(actions) + 1 and event_of(info, GoalFinished)
    # the last observation shows the objects where the turn left them, with the turn's goal
    np.testing.assert_allclose(observations[-1]["objects"][0, :7], game.sim.object_poses()[0], atol=1e-5)
    np.testing.assert_allclose(observations[-1]["goal"][0, :7], observations[0]["goal"][0, :7])


@pytest.fixture(scope="module")
def filled_buffer():
    game, rng = uniform_game(), np.random.default_rng(1)
    space = game.observation_space
    modes = rotation_modes_for(game.n_objects, 2, game.sim.rotation_modes)
    buffer = TurnReplayBuffer(10_000, space, modes, her_ratio=0.5, seed=0)
    turns = [play_turn(game, rng)[:2] for _ in range(4)]
    for observations, actions in turns:
        buffer.add_turn(observations, actions)
    return buffer, turns, modes


def test_sampled_rotation_features_are_the_simulators_for_turn_goals_and_rebuilt_for_hindsight_goals():
    game, rng = uniform_game(goal_rotation=True), np.random.default_rng(2)
    modes = rotation_modes_for(game.n_objects, 2, game.sim.rotation_modes)
    buffer = TurnReplayBuffer(10_000, game.observation_space, modes, her_ratio=0.5, seed=0)
    turns = [play_turn(game, rng)[:2] for _ in range(3)]
    for observations, actions in turns:
        buffer.add_turn(observations, actions)
    batch = buffer.sample(256)
    obs = {k: v.numpy() for k, v in batch.observations.items()}
    assert obs["goal"].shape[-1] == 13
    np.testing.assert_allclose(obs["goal"], goal_features(obs["goal"][:, :, :7], obs["objects"], obs["mask"], modes), atol=1e-6)
    # a transition whose goal was not relabelled carries exactly what the simulator showed Bob
    seen = {tuple(np.round(o["objects"][0, :7], 6)): o["goal"] for observations, _ in turns for o in observations[:-1]}
    matched = 0
    for objects, goal in zip(obs["objects"], obs["goal"]):
        shown = seen.get(tuple(np.round(objects[0, :7], 6)))
        if shown is not None and np.allclose(shown[0, :7], goal[0, :7]):
            np.testing.assert_allclose(goal, shown, atol=1e-5)
            matched += 1
    assert matched > 50 and np.abs(obs["goal"][:, 0, 10:]).max() > 0.05


def test_sampled_goal_features_and_rewards_agree_with_the_simulator_rule(filled_buffer):
    buffer, turns, modes = filled_buffer
    batch = buffer.sample(512)
    obs, nxt = {k: v.numpy() for k, v in batch.observations.items()}, {k: v.numpy() for k, v in batch.next_observations.items()}
    goal = obs["goal"][:, :, :7]
    # goal features are rebuilt exactly as the simulator writes them, before and after the step
    np.testing.assert_allclose(obs["goal"], goal_features(goal, obs["objects"], obs["mask"]), atol=1e-6)
    np.testing.assert_allclose(nxt["goal"][:, :, :7], goal)
    reached = objects_at_goal(nxt["objects"][:, :1, :7], goal[:, :1], modes[:1])[:, 0]
    np.testing.assert_array_equal(batch.rewards.numpy()[:, 0], reached.astype(np.float32))
    np.testing.assert_array_equal(batch.dones.numpy()[:, 0], batch.rewards.numpy()[:, 0])
    # about half the goals are hindsight goals: poses that some step of a turn reached
    original = {tuple(np.round(o[0]["goal"][0, :7], 5)) for o, _ in turns}
    relabelled = [tuple(np.round(g[0], 5)) not in original for g in goal]
    assert 0.35 < np.mean(relabelled) < 0.65
    assert batch.rewards.numpy().mean() > 0.05  # hindsight goals give successes even to random turns


def test_hindsight_goals_come_from_later_in_the_same_turn(filled_buffer):
    buffer, turns, _ = filled_buffer
    buffer_all = TurnReplayBuffer(10_000, uniform_game().observation_space, buffer.modes, her_ratio=1.0, seed=1)
    observations, actions = turns[0]
    buffer_all.add_turn(observations, actions)
    batch = buffer_all.sample(256)
    objects = batch.observations["objects"].numpy()[:, 0, :7]
    goals = batch.observations["goal"].numpy()[:, 0, :7]
    poses = np.array([o["objects"][0, :7] for o in observations])
    for pose, goal in zip(objects, goals):
        now = int(np.argmin(np.abs(poses - pose).sum(axis=1)))
        later = np.abs(poses[now + 1 :] - goal).sum(axis=1)
        assert later.min() < 1e-5  # the goal is a pose reached after this step


def pushing_turn(game: SelfPlayGame) -> tuple[list[dict], np.ndarray]:
    """A Bob turn that drives the tool through the block (it moves > 4 cm), then waits."""
    keys = ("robot", "objects", "goal", "mask")
    block = game.sim.object_poses()[0, :3]
    waypoints = [block + [-0.08, 0, 0.06], block + [-0.08, 0, 0.0], block + [0.10, 0, 0.0]] + [block + [0.10, 0, 0.1]] * 30
    obs = game.sim.refresh()
    observations, actions = [{k: obs[k] for k in keys}], []
    for target in waypoints:
        for _ in range(4):
            action = move_action(game.sim, target, yaw=0.0, opening=-1.0)  # closed: the block cannot pass between the fingers
            obs, _, _, _, info = game.step(action)
            actions.append(action)
            if event_of(info, BobTurnEnded):
                observations.append(event_of(info, BobTurnEnded).last_observation)
                return observations, np.array(actions, dtype=np.float32)
            observations.append({k: obs[k] for k in keys})
    raise AssertionError("the turn did not end")


def test_informative_hindsight_goals_are_never_already_reached_before_the_step(filled_buffer):
    _, _, modes = filled_buffer
    game = uniform_game()
    turns = [pushing_turn(game)]
    moved = np.linalg.norm(turns[0][0][-1]["objects"][0, :3] - turns[0][0][0]["objects"][0, :3])
    assert moved > 0.05
    informative = TurnReplayBuffer(10_000, game.observation_space, modes, her_ratio=1.0, seed=2, informative_only=True)
    informative.add_turn(*turns[0])
    batch = informative.sample(512)
    objects, goal = batch.observations["objects"].numpy(), batch.observations["goal"].numpy()[:, :, :7]
    original = np.array([o[0]["goal"][0, :7] for o, _ in turns])
    relabelled = np.abs(goal[:, None, 0] - original[None]).sum(axis=-1).min(axis=1) > 1e-5
    already = objects_at_goal(objects[:, :1, :7], goal[:, :1], modes[:1])[:, 0]
    assert relabelled.any() and not (relabelled & already).any()  # a hindsight goal always asks for a change


def test_off_policy_bob_trains_saves_a_sac_zip_and_is_evaluated(tmp_path):
    overrides = {"bob.algo": "sac", "bob.learning_starts": 64, "bob.buffer_size": 5000, "teacher.name": "uniform",
                 "teacher.uniform_tasks": "[push]"}
    cfg = tiny_config(**{**overrides, "trainer.total_steps": 512})
    trainer = Trainer(cfg, tmp_path)
    row = trainer.train()
    assert row["bob/n_updates"] > 0 and np.isfinite(row["bob/critic_loss"])
    bob = SAC.load(tmp_path / "checkpoints" / f"step-{trainer.counters['env_steps']:09d}" / "bob.zip", device="cpu")
    result, _ = evaluate_task(BobPolicy(bob), "Tabletop/Push1-v0", trials=1, seed=0, max_objects=cfg.env.max_objects)
    assert result.goals >= 1
    # a resume loads the SAC Bob and his replay buffer from the run's last checkpoint, and goes on training
    saved = trainer.learners[BOB].model.replay_buffer
    resumed = Trainer(tiny_config(**{**overrides, "trainer.total_steps": 1024, "resume": str(tmp_path)}), tmp_path)
    for key, value in bob.policy.state_dict().items():
        np.testing.assert_array_equal(resumed.learners[BOB].policy.state_dict()[key].numpy(), value.numpy())
    replay = resumed.learners[BOB].model.replay_buffer
    assert len(replay) == len(saved) > 0 and (replay.pos, replay._turns) == (saved.pos, saved._turns)
    for key in TurnReplayBuffer.ARRAYS:
        np.testing.assert_array_equal(getattr(replay, key), getattr(saved, key), err_msg=key)
    drawn, expected = replay.sample(32), saved.sample(32)  # the same draws: the sampler's state came along
    for a, b in ((drawn.actions, expected.actions), (drawn.rewards, expected.rewards), (drawn.observations["goal"], expected.observations["goal"])):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert resumed.train()["bob/n_updates"] > 0 and resumed.counters["env_steps"] == 1024


def test_learning_during_collection_is_the_same_run_on_every_backend_and_takes_every_gradient_step(tmp_path):
    """trainer.learn_during_collection: Bob's gradient steps between the games' steps, while games
    in other processes simulate. The schedule is fixed by the steps, not by timing: games in this
    process and in one process each give the same Bob, bit for bit, with bob.updates_per_step
    gradient steps per Bob step, as the after-the-rollout schedule takes."""
    overrides = {"bob.algo": "sac", "bob.learning_starts": 64, "bob.buffer_size": 5000, "teacher.name": "uniform",
                 "teacher.uniform_tasks": "[push]", "trainer.total_steps": 768, "trainer.n_games": 4}
    bobs, steps = {}, {}
    for name, extra in (("dummy", {"trainer.learn_during_collection": True}),
                        ("subproc", {"trainer.learn_during_collection": True, "trainer.vec_env": "subproc"}),
                        ("after", {})):
        trainer = Trainer(tiny_config(**overrides, **extra), tmp_path / name)
        row = trainer.train()
        bobs[name] = {k: v.clone() for k, v in trainer.learners[BOB].policy.state_dict().items()}
        steps[name] = (trainer.counters["bob_steps"], trainer.learners[BOB].model._n_updates)
        if name != "after":
            assert row["time/learning_s"] > 0 and np.isfinite(row["bob/critic_loss"])
    for key, value in bobs["dummy"].items():
        np.testing.assert_array_equal(bobs["subproc"][key].numpy(), value.numpy(), err_msg=key)
    assert steps["dummy"] == steps["subproc"]
    bob_steps, gradient_steps = steps["dummy"]
    assert steps["after"][0] == bob_steps  # the same games: Bob's actions do not change who plays when
    # bob.updates_per_step 0.5 per Bob step, but none before the replay holds learning_starts
    # transitions (whole turns: up to 4 games x 30 steps more)
    assert steps["after"][1] <= 0.5 * bob_steps and 0.5 * (bob_steps - 64 - 4 * 30) <= gradient_steps <= 0.5 * bob_steps
    assert any(not th.equal(bobs["after"][k], v) for k, v in bobs["dummy"].items())  # a different schedule


def test_a_saved_replay_buffer_loads_only_into_one_of_the_same_capacity(filled_buffer, tmp_path):
    buffer, _, modes = filled_buffer
    buffer.save(tmp_path / "replay.npz")
    assert (tmp_path / "replay.npz").stat().st_size < 405 * 2 * len(buffer) + 10_000  # the filled slots only
    other = TurnReplayBuffer(20_000, uniform_game().observation_space, modes)
    with pytest.raises(ValueError, match="holds 10000 transitions, bob.buffer_size is 20000"):
        other.load(tmp_path / "replay.npz")


def test_a_resume_from_a_checkpoint_without_bobs_replay_starts_it_empty_and_says_so(tmp_path, caplog):
    overrides = {"bob.algo": "sac", "bob.learning_starts": 64, "bob.buffer_size": 5000, "trainer.checkpoint_every": 1}
    first = Trainer(tiny_config(**{**overrides, "trainer.total_steps": 512}), tmp_path)
    first.train()
    checkpoints = sorted((tmp_path / "checkpoints").glob("step-*"))
    assert [(c / "bob_replay.npz").exists() for c in checkpoints] == [False, True]  # only the run's last
    shutil.rmtree(checkpoints[-1])  # as after a hard kill: the newest checkpoint is one written during the run
    resumed = Trainer(tiny_config(**{**overrides, "trainer.total_steps": 768, "resume": str(tmp_path)}), tmp_path)
    assert len(resumed.learners[BOB].model.replay_buffer) == 0 and resumed.counters["env_steps"] == 256
    assert "holds no replay buffer" in caplog.text


def test_cloning_pulls_the_actor_towards_the_demonstrated_actions(filled_buffer):
    buffer, turns, _ = filled_buffer
    cfg = tiny_config(**{"bob.algo": "sac", "env.max_objects": 2})
    model = OffPolicyBob(cfg, uniform_game().observation_space, replay=False).model
    observations, _ = turns[0]
    demo = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    target = np.tile(np.array([0.5, -0.5, 0.0, 0.0, 0.0, 0.9], dtype=np.float32), (len(observations), 1))
    cloning = DemonstrationCloning(coef=1.0, seed=0)
    cloning.add(demo, target)
    first = cloning.step(model, 64)
    for _ in range(100):
        last = cloning.step(model, 64)
    assert last < 0.2 * first


def _critics_that_like_a_large_first_action(model) -> None:
    """Set both critics to Q(s, a) = relu(a[0]): a demonstrated action beats the actor's own
    exactly where its first entry is the larger and positive."""
    with th.no_grad():
        for q_net in model.critic.q_networks:
            layers = [m for m in q_net if isinstance(m, th.nn.Linear)]
            for i, layer in enumerate(layers):
                layer.weight.zero_()
                layer.bias.zero_()
                layer.weight[0, -6 if i == 0 else 0] = 1.0


def test_a_q_filtered_cloning_step_clones_only_what_the_critic_rates_above_the_actor(filled_buffer):
    buffer, turns, _ = filled_buffer
    cfg = tiny_config(**{"bob.algo": "sac", "env.max_objects": 2, "abc.q_filter": True})
    model = OffPolicyBob(cfg, uniform_game().observation_space, replay=False).model
    _critics_that_like_a_large_first_action(model)
    observations, _ = turns[0]
    demo = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    better = DemonstrationCloning(coef=1.0, seed=0, q_filter=True)
    better.add(demo, np.tile(np.array([0.9, 0.5, 0, 0, 0, 0], dtype=np.float32), (len(observations), 1)))
    first = better.step(model, 64)
    assert better.kept == 1.0 and first > 0
    for _ in range(100):
        last = better.step(model, 64)
    assert last < 0.2 * first
    # the actor's optimizer now has momentum; a step that clones nothing must not move the actor
    before = [p.detach().clone() for p in model.actor.parameters()]
    worse = DemonstrationCloning(coef=1.0, seed=0, q_filter=True)
    worse.add(demo, np.tile(np.array([-0.9, 0.5, 0, 0, 0, 0], dtype=np.float32), (len(observations), 1)))
    assert worse.step(model, 64) == 0.0 and worse.kept == 0.0
    assert all(th.equal(a, b) for a, b in zip(before, model.actor.parameters()))


def test_the_q_filter_needs_an_off_policy_bob():
    with pytest.raises(ConfigError, match="abc.q_filter"):
        tiny_config(**{"abc.q_filter": True})


def test_alice_cannot_be_off_policy():
    with pytest.raises(ConfigError, match="alice.algo"):
        tiny_config(**{"alice.algo": "sac"})


class _Fixed:
    """Hands SB3's ``SAC.train`` the minibatch our step gets (the comparison's only stand-in)."""

    def __init__(self, batch):
        self.batch = batch

    def sample(self, batch_size, env=None):
        return self.batch


def twin_sac_models():
    """Two SAC Bobs with the same weights and entropy weight."""
    cfg = tiny_config(**{"bob.algo": "sac", "env.max_objects": 2})
    first, second = (OffPolicyBob(cfg, uniform_game().observation_space, replay=False).model for _ in range(2))
    second.policy.load_state_dict(first.policy.state_dict())
    second.log_ent_coef.data.copy_(first.log_ent_coef.data)
    return first, second, cfg


def test_our_sac_step_matches_sb3_sac_train(filled_buffer):
    buffer, _, _ = filled_buffer
    ours, reference, cfg = twin_sac_models()
    space = uniform_game().observation_space
    targets = critic_pairs(ours)
    for step in range(3):
        batch = buffer.sample(64)
        th.manual_seed(step)
        stats = sac_gradient_step(ours, batch, targets)
        th.manual_seed(step)
        reference.replay_buffer = _Fixed(batch)
        reference.train(gradient_steps=1, batch_size=64)
    for key, value in reference.policy.state_dict().items():
        np.testing.assert_allclose(ours.policy.state_dict()[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(ours.log_ent_coef.item(), reference.log_ent_coef.item(), rtol=1e-5)
    assert ours._n_updates == reference._n_updates == 3
    np.testing.assert_allclose(float(stats["critic_loss"]), reference.logger.name_to_value["train/critic_loss"], rtol=1e-4)
    # the target critic moved towards the critic, by tau per step
    assert not np.allclose(ours.critic_target.state_dict()["qf0.0.weight"].numpy(), OffPolicyBob(cfg, space, replay=False)
                           .model.critic_target.state_dict()["qf0.0.weight"].numpy())


def test_a_normalising_sac_bob_learns_its_input_statistics(filled_buffer):
    buffer, _, _ = filled_buffer
    cfg = tiny_config(**{"bob.algo": "sac", "env.max_objects": 2, "bob.normalize_inputs": True})
    model = OffPolicyBob(cfg, uniform_game().observation_space, replay=False).model
    batch = buffer.sample(256)
    update_input_statistics(model, batch.observations)
    robot = batch.observations["robot"].double()
    for network in (model.actor, model.critic, model.critic_target):
        norm = network.features_extractor.robot_norm
        np.testing.assert_allclose(norm.mean.numpy(), robot.mean(0).numpy(), atol=1e-6)
        assert int(norm.count) == 256


def test_moved_share_draws_that_share_from_turns_that_moved_an_object():
    space = uniform_game().observation_space

    def turn(travel: float, steps: int = 10) -> tuple[list[dict], np.ndarray]:
        observations = []
        for t in range(steps + 1):
            o = {k: np.zeros(space[k].shape, dtype=np.float32) for k in ("robot", "objects", "goal", "mask")}
            o["mask"][0] = 1.0
            o["objects"][0, 0] = travel * t / steps  # x of the one real object
            o["objects"][0, 6] = 1.0  # identity quaternion (xyzw)
            o["goal"][0, 6] = 1.0
            observations.append(o)
        return observations, np.zeros((steps, 6), dtype=np.float32)

    def share_from_moved(moved_share: float) -> float:
        buffer = TurnReplayBuffer(1000, space, rotation_modes_for(1, 2, np.array([0])), her_ratio=0.0, seed=0,
                                  moved_share=moved_share)
        for travel in (0.0, 0.0, 0.05, 0.0, 0.005):  # one turn moved its object 5 cm; 5 mm does not count
            buffer.add_turn(*turn(travel))
        index = buffer._sample_index(2000)
        return float(buffer.moved[index].mean())

    assert share_from_moved(0.0) == pytest.approx(0.2, abs=0.04)  # uniform: 1 turn in 5
    assert share_from_moved(0.75) == pytest.approx(0.75 + 0.25 * 0.2, abs=0.04)
    assert share_from_moved(1.0) == 1.0


def test_alice_turns_join_the_replay_of_an_off_policy_bob_who_asks(tmp_path):
    cfg = tiny_config(**{"bob.algo": "sac", "bob.replay_alice": True, "bob.learning_starts": 10_000, "trainer.total_steps": 512})
    trainer = Trainer(cfg, tmp_path)
    row = trainer.train()
    buffer = trainer.learners[BOB].model.replay_buffer
    assert row["abc/replayed_alice_turns"] >= 1
    # the buffer holds Bob's steps and Alice's (T steps per valid goal of hers)
    assert len(buffer) > trainer.counters["bob_steps"]


def test_action_l2_makes_the_actor_prefer_small_actions(filled_buffer):
    buffer, _, _ = filled_buffer
    plain, gentle, _ = twin_sac_models()
    batch = buffer.sample(256)
    for model, weight in ((plain, 0.0), (gentle, 10.0)):
        targets = critic_pairs(model)
        th.manual_seed(0)
        for _ in range(100):
            sac_gradient_step(model, batch, targets, action_l2=weight)
    th.manual_seed(1)
    size = lambda model: model.actor(batch.observations).square().mean().item()  # noqa: E731  (sampled actions)
    assert size(gentle) < 0.7 * size(plain)


def test_a_position_first_curriculum_switches_bobs_replay_to_the_full_rule(tmp_path):
    cfg = tiny_config(**{"bob.algo": "sac", "bob.learning_starts": 10_000, "trainer.total_steps": 1024,
                         "game.position_first_steps": 512})
    trainer = Trainer(cfg, tmp_path)
    buffer = trainer.learners[BOB].model.replay_buffer
    assert (buffer.modes[:cfg.env.n_objects] == ROTATION_IGNORE).all()
    trainer.train()  # four updates of 256 steps: the last two under the full rule
    assert (buffer.modes[:cfg.env.n_objects] != ROTATION_IGNORE).all()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [float(r["game/position_only"]) for r in rows] == [1.0, 1.0, 0.0, 0.0]


def test_a_rotation_tolerance_curriculum_narrows_bobs_success_rule_after_the_position_phase(tmp_path):
    """game.rotation_tolerance_from: after position_first_steps, the games' and the replay's
    rotation tolerance starts wide and narrows linearly to the holdouts' 0.2 rad."""
    cfg = tiny_config(**{"bob.algo": "sac", "bob.learning_starts": 10_000, "trainer.total_steps": 768,
                         "game.position_first_steps": 256, "game.rotation_tolerance_from": 1.0,
                         "game.rotation_tolerance_steps": 512})
    assert [cfg.game.rotation_tolerance_at(s) for s in (0, 256, 512, 768, 5000)] == pytest.approx([1.0, 1.0, 0.6, 0.2, 0.2])
    trainer = Trainer(cfg, tmp_path)
    buffer, games = trainer.learners[BOB].model.replay_buffer, trainer.venv.envs
    trainer.train()  # three updates of 256 steps, from 0, 256 and 512 env steps
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [float(r["game/rotation_tolerance"]) for r in rows] == pytest.approx([1.0, 1.0, 0.6])
    assert buffer.rotation_tolerance == pytest.approx(0.6)
    assert [game.sim.rotation_tolerance for game in games] == pytest.approx([0.6] * len(games))


def test_a_learning_rate_schedule_shrinks_every_optimisers_step_linearly_over_the_budget(tmp_path):
    cfg = tiny_config(**{"bob.algo": "sac", "bob.learning_starts": 64, "trainer.total_steps": 1024,
                         "bob.learning_rate_end": 0.0, "alice.learning_rate_end": 2e-3})
    trainer = Trainer(cfg, tmp_path)
    trainer.train()  # four updates of 256 steps, at 0, 1/4, 1/2 and 3/4 of the budget
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    np.testing.assert_allclose([float(r["alice/learning_rate"]) for r in rows], [1e-3, 1.25e-3, 1.5e-3, 1.75e-3])
    assert float(rows[-1]["bob/learning_rate"]) == pytest.approx(2.5e-4)
    sac = trainer.learners[BOB].model
    for optimizer in (sac.actor.optimizer, sac.critic.optimizer, sac.ent_coef_optimizer):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert trainer.learners[0].optimizer.param_groups[0]["lr"] == pytest.approx(1.75e-3)
    with pytest.raises(ConfigError, match="agent.learning_rate_end"):
        tiny_config(**{"bob.learning_rate_end": -1e-4})


def test_a_game_switched_to_position_only_ignores_rotation_for_success_and_moves():
    game = SelfPlayGame(1, game_rules(), {"randomise_robot": False})
    game.reset(seed=0)
    pose = game.sim.object_poses()
    turned = pose.copy()
    yaw = 2 * np.arctan2(pose[0, 5], pose[0, 6]) + 0.6  # the same place, yaw + 0.6 rad
    turned[0, 3:] = (0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2))
    assert not objects_at_goal(turned, pose, game.sim.rotation_modes).all()
    game.set_position_only(True)
    assert game.config.position_only and objects_at_goal(turned, pose, game.sim.rotation_modes).all()
    game.set_position_only(False)
    assert not objects_at_goal(turned, pose, game.sim.rotation_modes).all()
    padding = np.tile([0, 0, 0, 0, 0, 0, 1.0], game.sim.max_objects - 1)  # compute_reward takes every object slot
    achieved, desired = np.concatenate([pose.ravel(), padding]), np.concatenate([turned.ravel(), padding])
    assert not game.sim.objects_at_goal(turned).all() and game.sim.compute_reward(achieved, desired, {}) == -1
    game.set_rotation_tolerance(0.7)  # the rotation curriculum: 0.6 rad off counts now, for success and HER rewards
    assert game.sim.objects_at_goal(turned).all() and game.sim.compute_reward(achieved, desired, {}) == 0
    with pytest.raises(ValueError, match="rotation tolerance"):
        game.set_rotation_tolerance(0.0)
