"""Learners: SB3 ``PPO`` fed by the self-play collector, and Bob's PPO + ABC update.

The collector computes advantages itself (each agent's stream of turns is one trajectory, see
:mod:`selfplay.collector`) and hands a finished batch to :func:`load_batch`, which fills a
standard ``DictRolloutBuffer``; ``model.train()`` then runs unchanged (Alice) or with the ABC term
added (Bob, :class:`ABCPPO`).
"""

from __future__ import annotations

import math

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from selfplay.abc import DemonstrationBuffer, abc_loss


def load_batch(model: PPO, batch: dict) -> None:
    """Replace ``model.rollout_buffer`` with a finished batch of one agent's transitions.

    ``batch``: ``observations`` (dict of (B, ...) arrays), ``actions`` (B, 6), ``values``,
    ``log_probs``, ``advantages``, ``returns`` (B,). The buffer has one column (n_envs = 1), as
    if the transitions were one long rollout; PPO only reads them back in shuffled minibatches.
    """
    size = len(batch["actions"])
    buffer = DictRolloutBuffer(
        size, model.observation_space, model.action_space, device=model.device, gae_lambda=model.gae_lambda,
        gamma=model.gamma, n_envs=1,
    )
    for key, value in batch["observations"].items():
        if key in buffer.observations:
            buffer.observations[key][:] = value.reshape(buffer.observations[key].shape)
    buffer.actions[:] = batch["actions"].reshape(buffer.actions.shape)
    buffer.values[:] = batch["values"].reshape(-1, 1)
    buffer.log_probs[:] = batch["log_probs"].reshape(-1, 1)
    buffer.advantages[:] = batch["advantages"].reshape(-1, 1)
    buffer.returns[:] = batch["returns"].reshape(-1, 1)
    buffer.episode_starts[:] = 0
    buffer.pos, buffer.full = size, True
    model.rollout_buffer = buffer
    model.n_steps = size


def minibatch_size(n: int, batch_size: int) -> int:
    """The size that splits ``n`` samples into ``round(n / batch_size)`` near-equal minibatches.
    SB3 takes fixed-size ones plus the remainder, and our batch sizes vary (held-back steps, the
    Alice/Bob split): a remainder of 1 sample gets no advantage normalisation and a full Adam step
    (benchmarks/ladder_pipeline.py: on CartPole every such update blew up). ``n`` a multiple of
    ``batch_size``: ``batch_size``, as in SB3."""
    return math.ceil(n / max(1, round(n / batch_size)))


class ABCPPO(PPO):
    """PPO whose loss adds ``abc_coef * L_abc`` over Alice's relabelled demonstrations.

    ``abc_coef`` is beta (0.5 in the paper), ``abc_clip`` the ratio clip epsilon (0.2). With
    ``abc_coef = 0`` or no demonstrations, :meth:`train` performs exactly SB3's PPO update on a
    batch whose size is a multiple of ``batch_size`` (a test checks this against ``PPO.train``);
    other sizes are split into near-equal minibatches (:func:`minibatch_size`) where SB3 would
    train a remainder. The checkpoint is a standard SB3 zip:
    ``PPO.load`` opens it.
    """

    def __init__(self, *args, abc_coef: float = 0.5, abc_clip: float = 0.2, abc_batch_size: int | None = None, **kwargs) -> None:
        self.abc_coef = abc_coef
        self.abc_clip = abc_clip
        self.abc_batch_size = abc_batch_size
        self.demonstrations = DemonstrationBuffer(seed=kwargs.get("seed"))
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "demonstrations"]

    def train(self) -> None:
        """One PPO update over the rollout buffer (SB3's algorithm, term by term), plus ABC."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = self.clip_range_vf(self._current_progress_remaining) if self.clip_range_vf is not None else None
        use_abc = self.abc_coef > 0 and len(self.demonstrations) > 0
        abc_batch = self.abc_batch_size or self.batch_size
        minibatch = minibatch_size(self.rollout_buffer.buffer_size * self.rollout_buffer.n_envs, self.batch_size)

        entropy_losses, pg_losses, value_losses, clip_fractions, abc_losses = [], [], [], [], []
        approx_kl_divs: list[float] = []
        continue_training = True
        for _ in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(minibatch):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = rollout_data.actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
                values = values.flatten()
                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())

                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = rollout_data.old_values + th.clamp(values - rollout_data.old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                if use_abc:  # docs/method.md section 4: + beta * L_abc on a minibatch of demonstrations
                    demo_obs, demo_actions, demo_log_probs = self.demonstrations.sample(abc_batch, self.device)
                    _, demo_log_prob, _ = self.policy.evaluate_actions(demo_obs, demo_actions)
                    loss_abc = abc_loss(demo_log_prob, demo_log_probs, self.abc_clip)
                    abc_losses.append(loss_abc.item())
                    loss = loss + self.abc_coef * loss_abc

                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/n_updates", self._n_updates)
        self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/abc_loss", float(np.mean(abc_losses)) if abc_losses else 0.0)
        self.logger.record("train/abc_demonstrations", len(self.demonstrations))
