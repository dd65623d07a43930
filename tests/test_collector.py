"""The collector: per-agent trajectories from interleaved games, GAE, deferred Alice rewards."""

import numpy as np
import pytest

from selfplay.collector import gae
from selfplay.events import GoalResult
from selfplay.training import Trainer
from tests.helpers import tiny_config


def test_gae_matches_the_definition():
    rewards, values = np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0])
    advantages = gae(rewards, values, np.array([False, False, True]), bootstrap=10.0, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(advantages, [0.25, 0.5, 1.0])  # terminal: the bootstrap is ignored
    cut = gae(rewards, values, np.array([False, False, False]), bootstrap=10.0, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(cut, [0.25 + 1.25, 0.5 + 2.5, 1.0 + 5.0])  # cut: bootstrapped
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=50), rng.normal(size=50)
    lam_half = gae(r, v, np.zeros(50, bool), 0.3, 0.9, 0.5)
    deltas = r + 0.9 * np.append(v[1:], 0.3) - v
    expected = [sum((0.9 * 0.5) ** k * deltas[t + k] for k in range(50 - t)) for t in range(50)]
    np.testing.assert_allclose(lam_half, expected)


def test_batches_hold_each_agents_own_steps_with_rewards_from_the_rules(tmp_path):
    trainer = Trainer(tiny_config(**{"pool.probability": 0.0}), tmp_path)
    collector = trainer.collector
    stats = collector.collect(512)
    pending = sum(len(s) for game in collector.streams for s in game)
    batches, demos = collector.take_batches((0.99, 0.99), (0.95, 0.95))
    flushed = sum(len(b["actions"]) for b in batches if b is not None)
    kept = sum(len(s) for game in collector.streams for s in game)
    assert flushed + kept == sum(stats.steps)  # every step lands in exactly one agent's batch
    assert kept <= 2 * collector.n_games and kept <= pending
    alice, bob = batches
    rules = trainer.rules  # docs/method.md's table, with the config's values
    table = {rules.alice_reward(GoalResult(0, valid, outside, bob_success)) for valid in (True, False)
             for outside in (True, False) for bob_success in (True, False, None)}
    assert set(np.unique(alice["rewards"])) <= table
    assert alice["observations"]["goal"].any() == False  # noqa: E712  (Alice never sees a goal)
    if bob is not None:
        assert np.all(np.abs(bob["rewards"]) <= 1 + 5)
    if demos is not None:
        assert len(demos["actions"]) == stats.demonstration_steps
        assert (demos["observations"]["phase"] == 1).all()
    paid = (alice["rewards"] != 0).sum()
    played = sum(1 for g in stats.goals if g.valid)
    assert paid <= played  # a valid goal pays Alice once; pending ones pay later
    trainer.close()


@pytest.mark.parametrize("probability", [1.0])
def test_snapshot_games_train_only_the_learning_side(tmp_path, probability):
    trainer = Trainer(tiny_config(**{"pool.probability": probability, "pool.every": 1}), tmp_path)
    trainer.pool.maybe_snapshot(1, (trainer.learners[0].policy, trainer.learners[1].policy))
    collector = trainer.collector
    past_alice = trainer.pool.policy(0, 0)
    for game in range(collector.n_games):
        collector.opponents[game] = (past_alice, None)  # a past Alice everywhere: only Bob learns
    collector._choose_opponents = lambda game: None  # keep that for the games that follow
    stats = collector.collect(256)
    batches, _ = collector.take_batches((0.99, 0.99), (0.95, 0.95))
    kept_alice = sum(len(game[0]) for game in collector.streams)
    assert batches[0] is None and kept_alice == 0
    assert stats.steps[0] > 0  # the past Alice did play
    trainer.close()


def test_games_keep_their_snapshot_after_the_pool_drops_it(tmp_path):
    trainer = Trainer(tiny_config(**{"pool.probability": 1.0, "pool.every": 1, "pool.size": 1}), tmp_path)
    policies = (trainer.learners[0].policy, trainer.learners[1].policy)
    trainer.pool.maybe_snapshot(1, policies)
    collector = trainer.collector
    for game in range(collector.n_games):
        collector._choose_opponents(game)
    assert all(any(p is not None for p in pair) for pair in collector.opponents)
    trainer.pool.maybe_snapshot(2, policies)  # evicts the snapshot those games play against
    trainer.pool.maybe_snapshot(3, policies)
    collector.collect(128)  # must not fail
    trainer.close()
