"""The object-set network: permutation invariance, padding, and separate policy/value nets."""

import numpy as np
import torch as th

from selfplay.game import ALICE, BOB
from selfplay.learning import agent_observation_space, build_learner
from selfplay.vec_env import make_game
from tests.helpers import tiny_config


def _observation_batch(n_objects=3, seed=0):
    cfg = tiny_config(**{"env.n_objects": n_objects})
    game = make_game(cfg, seed=seed)
    obs, _ = game.reset(seed=seed)
    for _ in range(5):
        obs, *_ = game.step(game.action_space.sample())
    space = agent_observation_space(game.observation_space)
    game.close()
    obs = {k: v[None] for k, v in obs.items() if k != "phase"}
    obs["goal"] = np.random.default_rng(seed).normal(size=obs["goal"].shape).astype(np.float32) * obs["mask"][..., None]
    return cfg, space, game.action_space, obs


def _permute(obs, order):
    out = dict(obs)
    for key in ("objects", "goal", "mask"):
        out[key] = obs[key][:, order]
    return out


def test_output_is_unchanged_when_objects_are_permuted():
    cfg, space, action_space, obs = _observation_batch(n_objects=3)
    for agent in (ALICE, BOB):
        policy = build_learner(cfg, agent, space, action_space).policy
        order = [2, 0, 1, 3, 4, 5, 6, 7]
        with th.no_grad():
            a, _ = policy.obs_to_tensor(obs)
            b, _ = policy.obs_to_tensor(_permute(obs, order))
            logits_a = policy.get_distribution(a).distribution
            logits_b = policy.get_distribution(b).distribution
            for da, db in zip(logits_a, logits_b):
                th.testing.assert_close(da.logits, db.logits)
            th.testing.assert_close(policy.predict_values(a), policy.predict_values(b))


def test_padding_slots_are_ignored_and_goal_matters_only_for_bob():
    cfg, space, action_space, obs = _observation_batch(n_objects=2)
    junk = dict(obs)
    junk["objects"] = obs["objects"].copy()
    junk["objects"][:, 5] = 100.0  # garbage in a padding slot
    other_goal = dict(obs)
    other_goal["goal"] = obs["goal"] + 1.0 * obs["mask"][..., None]
    for agent in (ALICE, BOB):
        extractor = build_learner(cfg, agent, space, action_space).policy.pi_features_extractor
        with th.no_grad():
            base = extractor({k: th.as_tensor(v) for k, v in obs.items()})
            padded = extractor({k: th.as_tensor(v) for k, v in junk.items()})
            goal = extractor({k: th.as_tensor(v) for k, v in other_goal.items()})
        th.testing.assert_close(base, padded)
        assert th.allclose(base, goal) == (agent == ALICE)


def test_policy_and_value_networks_share_no_weights():
    cfg, space, action_space, _ = _observation_batch(n_objects=1)
    policy = build_learner(cfg, BOB, space, action_space).policy
    assert policy.pi_features_extractor is not policy.vf_features_extractor
    pi = {id(p) for p in policy.pi_features_extractor.parameters()}
    vf = {id(p) for p in policy.vf_features_extractor.parameters()}
    assert not pi & vf


def test_fast_sampler_draws_from_the_policys_own_distribution():
    from selfplay.policies import sample_actions

    cfg, space, action_space, obs = _observation_batch(n_objects=2)
    batch = {k: np.repeat(v, 4000, axis=0) for k, v in obs.items()}
    policy = build_learner(cfg, BOB, space, action_space).policy
    th.manual_seed(0)
    actions, values, log_probs = sample_actions(policy, batch)
    with th.no_grad():
        tensors, _ = policy.obs_to_tensor(batch)
        sb3_values, sb3_log_probs, _ = policy.evaluate_actions(tensors, th.as_tensor(actions))
        probs = [d.probs[0].numpy() for d in policy.get_distribution({k: v[:1] for k, v in tensors.items()}).distribution]
    np.testing.assert_allclose(values, sb3_values.numpy().ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_probs, sb3_log_probs.numpy(), rtol=1e-5, atol=1e-5)
    # sampled frequencies match the policy's categorical probabilities
    for dim, p in enumerate(probs):
        frequency = np.bincount(actions[:, dim], minlength=len(p)) / len(actions)
        assert np.abs(frequency - p).max() < 0.03
    greedy, _, _ = sample_actions(policy, obs, deterministic=True)
    expected, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_array_equal(greedy, expected)


def test_running_norm_merges_batches_into_the_mean_and_variance_of_all_data():
    from selfplay.policies import RunningNorm

    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 0.05, size=(n, 4)) for n in (7, 50, 1, 300)]
    norm = RunningNorm(4)
    for batch in batches:
        norm.update(th.as_tensor(batch))
    data = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(axis=0), rtol=1e-8)
    z = norm(th.as_tensor(data[:3], dtype=th.float32))
    np.testing.assert_allclose(z.numpy(), (data[:3] - data.mean(0)) / data.std(0), atol=1e-3)
    assert norm(th.full((1, 4), 1e6)).max() == 5.0  # clipped


def test_normalised_bob_saves_its_statistics_in_the_sb3_zip(tmp_path):
    from stable_baselines3 import PPO

    from selfplay.policies import update_input_stats

    cfg, space, action_space, obs = _observation_batch(n_objects=2)
    cfg.bob.normalize_inputs = True
    model = build_learner(cfg, BOB, space, action_space)
    before = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).item()
    batch = {k: np.repeat(v, 4, axis=0) * np.linspace(0.5, 2.0, 4).reshape(4, *[1] * (v.ndim - 1)) for k, v in obs.items()}
    batch["mask"] = np.repeat(obs["mask"], 4, axis=0)
    update_input_stats(model.policy, batch)
    extractor = model.policy.pi_features_extractor
    assert extractor.object_norm.count.item() == 4 * 2  # real objects only: 2 per observation
    assert model.policy.vf_features_extractor.robot_norm.count.item() == 4
    after = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).item()
    assert after != before  # the statistics change what the network sees
    model.save(tmp_path / "bob.zip")
    loaded = PPO.load(tmp_path / "bob.zip")
    np.testing.assert_array_equal(loaded.policy.pi_features_extractor.object_norm.mean.numpy(), extractor.object_norm.mean.numpy())
    assert loaded.policy.predict_values(loaded.policy.obs_to_tensor(obs)[0]).item() == after
