"""Alice Behavioural Cloning: relabelling, the clipped loss, and its pull on Bob's policy."""

import numpy as np
import pytest
import torch as th

from selfplay.learning import AliceBehaviouralCloning
from selfplay.learning.cloning import abc_loss
from tests.helpers import bob_and_batch, failed_goal_with_states


def test_relabelled_observations_equal_what_bob_sees():
    game, demo, goal, states = failed_goal_with_states()
    assert len(demo["actions"]) == len(states)
    for t in (0, 7, len(states) - 1):
        game.sim.set_state(states[t])
        game.sim.set_goal(goal)
        seen = game.sim.refresh()
        for key in seen:
            np.testing.assert_allclose(demo["observations"][key][t], seen[key], atol=2e-6, err_msg=f"{key} at step {t}")
        assert demo["observations"]["phase"][t, 0] == 1.0


def test_demonstrated_actions_are_alices():
    game, demo, _, _ = failed_goal_with_states()
    np.testing.assert_array_equal(demo["actions"], game.sent_actions)


def test_abc_loss_is_the_clipped_ratio():
    old = th.zeros(4)
    new = th.log(th.tensor([0.5, 0.9, 1.1, 2.0]))
    assert abc_loss(new, old, 0.2).item() == pytest.approx(-(0.8 + 0.9 + 1.1 + 1.2) / 4)


def _log_likelihood(learner, observations, actions):
    with th.no_grad():
        obs, _ = learner.policy.obs_to_tensor(observations)
        _, log_prob, _ = learner.policy.evaluate_actions(obs, th.as_tensor(actions))
    return log_prob.mean().item()


def test_bob_gets_abc_as_an_extra_loss_only_when_enabled():
    bob, _, _ = bob_and_batch(**{"abc.beta": 0.5})
    assert [(type(t), t.weight, t.clip) for t in bob.extra_losses] == [(AliceBehaviouralCloning, 0.5, 0.2)]
    assert bob.extra_losses[0].batch_size == bob.settings.batch_size  # abc.batch_size null: Bob's minibatch
    assert bob_and_batch(**{"abc.enabled": False})[0].extra_losses == []
    assert bob_and_batch(**{"abc.batch_size": 16})[0].extra_losses[0].batch_size == 16


def test_a_few_abc_steps_raise_bobs_likelihood_of_alices_actions():
    bob, batch, demo = bob_and_batch(**{"abc.beta": 0.5})
    batch["advantages"][:] = 0.0  # isolate the ABC term
    observations = batch["observations"]
    before = _log_likelihood(bob, observations, demo["actions"])
    bob.set_demonstrations(demo)  # behaviour log-probabilities taken now, from Bob's policy
    abc = bob.extra_losses[0]
    assert len(abc.demonstrations) == len(demo["actions"])
    np.testing.assert_allclose(abc.demonstrations.log_probs[0].mean(), before, rtol=1e-5)
    for _ in range(5):
        stats = bob.update(batch)
        assert stats["abc_loss"] < 0  # - mean clipped ratio
    after = _log_likelihood(bob, observations, demo["actions"])
    assert after > before + 0.5, (before, after)
    bob.set_demonstrations(None)  # an update without demonstrations: no ABC term
    assert len(abc.demonstrations) == 0 and bob.update(batch)["abc_loss"] == 0.0
