"""One agent's PPO learner: its policy, its optimiser, its update.

The policy is SB3's ``MultiInputActorCriticPolicy`` with our object-set extractor
(:mod:`selfplay.policies`), so checkpoints stay SB3 zips that ``PPO.load`` opens. The update is
ours and reads like the paper (Schulman et al., 2017): clipped surrogate, value loss, entropy
bonus, plus any extra losses (:mod:`selfplay.learning.losses`; ABC for Bob). With no extra loss it
performs exactly SB3's ``PPO.train`` on the same batch (tests/test_learner.py checks this).

The collector computes advantages itself (each agent's turns in one game are one trajectory,
:mod:`selfplay.collector`) with this learner's ``gamma`` and ``gae_lambda``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.utils import explained_variance, get_device, set_random_seed, update_learning_rate
from torch.nn import functional as F

from selfplay.config import AgentConfig
from selfplay.learning.losses import ExtraLoss, Minibatch
from selfplay.policies import policy_kwargs, sample_actions, update_input_stats

#: The statistics :meth:`PPOLearner.update` returns (SB3's ``train/...`` names), before the extra losses'.
PPO_STATS = ("learning_rate", "entropy_loss", "policy_gradient_loss", "value_loss", "approx_kl", "clip_fraction",
             "loss", "explained_variance", "n_updates", "clip_range")


def minibatch_size(n: int, batch_size: int) -> int:
    """The size that splits ``n`` samples into ``round(n / batch_size)`` near-equal minibatches.
    SB3 takes fixed-size ones plus the remainder, and our batch sizes vary (held-back steps, the
    Alice/Bob split): a remainder of 1 sample gets no advantage normalisation and a full Adam step
    (benchmarks/ladder_pipeline.py: on CartPole every such update blew up). ``n`` a multiple of
    ``batch_size``: ``batch_size``, as in SB3."""
    return math.ceil(n / max(1, round(n / batch_size)))


class PPOLearner:
    """PPO for one agent.

    Args:
        observation_space: the agent's observation space (a :class:`TabletopEnv` observation).
        action_space: ``MultiDiscrete`` (6 x bins in the game; any MultiDiscrete works).
        settings: the agent's config (``alice.*`` / ``bob.*``): PPO and network settings.
        use_goal: the network reads the goal features (Bob) or not (Alice).
        seed: seeds the global generators before the weights are drawn, as SB3's ``PPO`` does,
            so the same seed gives the same initial weights as SB3.
        device: torch device of the policy ("cpu", "cuda", "auto").
        extra_losses: terms added to PPO's loss on every minibatch (ABC for Bob).
    """

    on_policy = True  # learns from the collector's PPO batches (:meth:`update`)
    stat_names = PPO_STATS

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.spaces.MultiDiscrete, settings: AgentConfig,
                 use_goal: bool, seed: int, device: str = "cpu", extra_losses: Sequence[ExtraLoss] = ()) -> None:
        self.settings, self.seed = settings, seed
        self.gamma, self.gae_lambda = settings.gamma, settings.gae_lambda
        self.device = get_device(device)
        self.policy_kwargs = policy_kwargs(use_goal=use_goal, width=settings.width, depth=settings.depth,
                                           head=tuple(settings.head), normalize=settings.normalize_inputs)
        set_random_seed(seed, using_cuda=self.device.type == "cuda")
        learning_rate = settings.learning_rate
        self.policy = MultiInputActorCriticPolicy(observation_space, action_space, lambda _: learning_rate,
                                                  **self.policy_kwargs).to(self.device)
        self.optimizer = self.policy.optimizer  # Adam, built by the policy (SB3's eps=1e-5); saved in its zip
        self.extra_losses = list(extra_losses)
        self.n_updates = 0  # passes over a batch so far (SB3's train/n_updates)

    @property
    def observation_space(self) -> gym.spaces.Dict:
        return self.policy.observation_space

    @property
    def action_space(self) -> gym.spaces.Space:
        return self.policy.action_space

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False) -> np.ndarray:
        """Bin actions (B, 6) int64 for a batch of observations (dict of (B, ...) arrays). The
        collector also needs values and log-probabilities: :func:`selfplay.policies.sample_actions`."""
        return sample_actions(self.policy, observations, deterministic=deterministic)[0]

    def set_position_only(self, on: bool) -> None:
        """Nothing to do: PPO's rewards come from the game, which applies the rule."""

    def set_rotation_tolerance(self, tolerance: float) -> None:
        """Nothing to do, as for :meth:`set_position_only`."""

    def set_learning_rate(self, learning_rate: float) -> None:
        """Adam's step size from now on (the loop's ``learning_rate_end`` schedule)."""
        update_learning_rate(self.optimizer, learning_rate)

    def set_demonstrations(self, demos: dict | None) -> None:
        """Hand the coming update's demonstrations (or None) to the extra losses that learn from
        them (ABC: with this policy's behaviour log-probabilities, taken now, before the update)."""
        for term in self.extra_losses:
            if hasattr(term, "set_demonstrations"):
                term.set_demonstrations(self.policy, demos)

    # -- the update -----------------------------------------------------------------------------
    def update(self, batch: dict) -> dict[str, float]:
        """``n_epochs`` passes of PPO over ``batch`` in shuffled near-equal minibatches; returns
        the statistics (:data:`PPO_STATS` and ``<name>_loss`` per extra loss). Afterwards the
        input statistics take in the batch (a batch trains with the statistics it was collected with).

        ``batch``: ``observations`` (dict of (B, ...) arrays), ``actions`` (B, 6), ``values``,
        ``log_probs``, ``advantages``, ``returns`` (B,), as :meth:`Collector.take_batches` gives them.
        """
        s = self.settings
        data = self._tensors(batch)
        n = len(data.actions)
        size = minibatch_size(n, s.batch_size)
        self.policy.set_training_mode(True)
        logs: dict[str, list[float]] = {k: [] for k in ("entropy_loss", "policy_gradient_loss", "value_loss", "clip_fraction")}
        extra: dict[str, list[float]] = {term.name: [] for term in self.extra_losses}
        approx_kl_divs: list[np.ndarray] = []
        stop = False
        for _ in range(s.n_epochs):
            approx_kl_divs = []
            indices = np.random.permutation(n)  # SB3's rollout buffer shuffles with numpy's global generator
            for start in range(0, n, size):
                minibatch = _take(data, th.as_tensor(indices[start : start + size]))
                loss, approx_kl = self._loss(minibatch, logs, extra)
                last_loss = loss.item()
                approx_kl_divs.append(approx_kl)
                if s.target_kl is not None and approx_kl > 1.5 * s.target_kl:  # SB3's early stop
                    stop = True
                    break
                self.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), s.max_grad_norm)
                self.optimizer.step()
            self.n_updates += 1
            if stop:
                break
        self.policy.set_training_mode(False)
        update_input_stats(self.policy, batch["observations"])
        stats = {
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            **{k: float(np.mean(v)) for k, v in logs.items()},
            "approx_kl": float(np.mean(approx_kl_divs)),
            "loss": last_loss,  # the last minibatch's, as SB3 logs it
            "explained_variance": float(explained_variance(data.old_values.cpu().numpy(), data.returns.cpu().numpy())),
            "n_updates": self.n_updates,
            "clip_range": s.clip_range,
        }
        stats.update({f"{name}_loss": float(np.mean(v)) if v else 0.0 for name, v in extra.items()})
        return stats

    def _loss(self, mb: Minibatch, logs: dict[str, list[float]], extra: dict[str, list[float]]) -> tuple[th.Tensor, np.ndarray]:
        """PPO's loss on one minibatch, term by term, each term's value appended to ``logs`` /
        ``extra``; returns (loss, approximate KL of the new policy from the behaviour policy)."""
        s = self.settings
        values, log_prob, entropy = self.policy.evaluate_actions(mb.observations, mb.actions)
        values = values.flatten()
        advantages = mb.advantages
        if s.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = th.exp(log_prob - mb.old_log_probs)
        clipped = th.clamp(ratio, 1 - s.clip_range, 1 + s.clip_range)
        policy_loss = -th.min(advantages * ratio, advantages * clipped).mean()
        if s.clip_range_vf is None:
            values_pred = values
        else:
            values_pred = mb.old_values + th.clamp(values - mb.old_values, -s.clip_range_vf, s.clip_range_vf)
        value_loss = F.mse_loss(mb.returns, values_pred)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + s.ent_coef * entropy_loss + s.vf_coef * value_loss
        for term in self.extra_losses:
            extra_loss = term.loss(self.policy, mb)
            if extra_loss is not None:
                extra[term.name].append(extra_loss.item())
                loss = loss + term.weight * extra_loss
        logs["policy_gradient_loss"].append(policy_loss.item())
        logs["clip_fraction"].append(th.mean((th.abs(ratio - 1) > s.clip_range).float()).item())
        logs["value_loss"].append(value_loss.item())
        logs["entropy_loss"].append(entropy_loss.item())
        with th.no_grad():
            log_ratio = log_prob - mb.old_log_probs
            approx_kl = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()  # float32, averaged as SB3 does
        return loss, approx_kl

    def _tensors(self, batch: dict) -> Minibatch:
        """The whole batch as tensors on the policy's device (float32; actions int64)."""
        to = lambda a, dtype=th.float32: th.as_tensor(np.asarray(a), dtype=dtype, device=self.device)  # noqa: E731
        return Minibatch(
            observations={k: to(batch["observations"][k]) for k in self.observation_space.spaces},
            actions=to(batch["actions"], th.int64).reshape(len(batch["actions"]), -1),
            old_values=to(batch["values"]).flatten(),
            old_log_probs=to(batch["log_probs"]).flatten(),
            advantages=to(batch["advantages"]).flatten(),
            returns=to(batch["returns"]).flatten(),
        )

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """An SB3 PPO zip (policy, optimiser state, settings): ``PPO.load(path)`` opens it."""
        from stable_baselines3 import PPO

        s = self.settings
        model = PPO(type(self.policy), env=None, learning_rate=s.learning_rate, n_steps=max(s.batch_size, 64),
                    batch_size=s.batch_size, n_epochs=s.n_epochs, gamma=s.gamma, gae_lambda=s.gae_lambda,
                    clip_range=s.clip_range, clip_range_vf=s.clip_range_vf, normalize_advantage=s.normalize_advantage,
                    ent_coef=s.ent_coef, vf_coef=s.vf_coef, max_grad_norm=s.max_grad_norm, target_kl=s.target_kl,
                    policy_kwargs=self.policy_kwargs, seed=self.seed, device=self.device, _init_setup_model=False)
        model.observation_space, model.action_space, model.n_envs = self.observation_space, self.action_space, 1
        model.policy = self.policy
        model.save(path)

    def load(self, path: Path) -> None:
        """The policy's weights and the optimiser's state from an SB3 zip (:meth:`save`'s, or an
        SB3 ``PPO``'s of the same architecture); any mismatch raises."""
        from stable_baselines3.common.save_util import load_from_zip_file

        _, params, _ = load_from_zip_file(path, device=self.device, load_data=False)
        if params is None or set(params) != {"policy", "policy.optimizer"}:
            raise ValueError(f"{path}: not a PPO zip (parameters {sorted(params or {})})")
        self.policy.load_state_dict(params["policy"])
        self.optimizer.load_state_dict(params["policy.optimizer"])


def _take(data: Minibatch, index: th.Tensor) -> Minibatch:
    """The rows ``index`` of every field."""
    return Minibatch(
        observations={k: v[index] for k, v in data.observations.items()},
        actions=data.actions[index],
        old_values=data.old_values[index],
        old_log_probs=data.old_log_probs[index],
        advantages=data.advantages[index],
        returns=data.returns[index],
    )
