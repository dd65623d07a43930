"""The PPO learner: with ABC off, one update equals SB3's own ``PPO.train`` on the same batch
(weights, optimiser state, statistics); its checkpoint is an SB3 zip that ``PPO.load`` opens."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

from selfplay.learning import PPOLearner
from tests.helpers import bob_and_batch, fill_rollout_buffer, sb3_ppo_twin


@pytest.mark.parametrize("size, overrides", [
    (30, {}),  # one minibatch smaller than batch_size
    (192, {}),  # three minibatches of 64 per epoch, three epochs
    (192, {"bob.clip_range_vf": 0.1}),  # value clipping
    (192, {"bob.target_kl": 1e-4}),  # SB3's early stop on the approximate KL
])
def test_with_abc_off_the_update_equals_sb3s_ppo_train(size, overrides):
    bob, batch, _ = bob_and_batch(size=size, **{"abc.enabled": False, **overrides})
    assert isinstance(bob, PPOLearner) and bob.extra_losses == []
    sb3 = sb3_ppo_twin(bob)
    fill_rollout_buffer(sb3, batch)
    np.random.seed(123)  # both shuffle minibatches with numpy's global generator
    stats = bob.update(batch)
    np.random.seed(123)
    sb3.train()
    for (name, a), (_, b) in zip(bob.policy.state_dict().items(), sb3.policy.state_dict().items()):
        assert th.equal(a, b), name
    ours, theirs = bob.optimizer.state_dict()["state"], sb3.policy.optimizer.state_dict()["state"]
    assert ours.keys() == theirs.keys() and all(th.equal(ours[k]["exp_avg"], theirs[k]["exp_avg"]) for k in ours)
    logged = sb3.logger.name_to_value
    for key in ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction", "loss", "explained_variance", "n_updates"):
        assert stats[key] == pytest.approx(float(logged[f"train/{key}"]), rel=1e-6, abs=1e-9), key
    if "bob.target_kl" in overrides:
        assert stats["n_updates"] < bob.settings.n_epochs  # it did stop early


def test_the_checkpoint_is_an_sb3_zip_that_ppo_load_opens_and_the_learner_reloads(tmp_path):
    bob, batch, _ = bob_and_batch()
    bob.update(batch)
    bob.save(tmp_path / "bob.zip")
    loaded = PPO.load(tmp_path / "bob.zip", device="cpu")
    for (name, a), (_, b) in zip(bob.policy.state_dict().items(), loaded.policy.state_dict().items()):
        assert th.equal(a, b), name
    assert loaded.gamma == bob.gamma and loaded.clip_range(1.0) == bob.settings.clip_range
    obs = {k: v[:1] for k, v in batch["observations"].items()}
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], bob.act(obs, deterministic=True))
    fresh, _, _ = bob_and_batch(seed=1)
    fresh.load(tmp_path / "bob.zip")
    assert all(th.equal(a, b) for a, b in zip(fresh.policy.state_dict().values(), bob.policy.state_dict().values()))
    ours, theirs = fresh.optimizer.state_dict()["state"], bob.optimizer.state_dict()["state"]
    assert all(th.equal(ours[k]["exp_avg_sq"], theirs[k]["exp_avg_sq"]) for k in ours)
