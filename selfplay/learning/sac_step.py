"""One SAC gradient step on an SB3 ``SAC`` model, cheaper on a CPU than ``SAC.train``.

The same update as SB3's ``SAC.train`` for one gradient step (entropy weight, critic, actor,
target critic; same order, same random draws, so the same numbers up to float rounding:
``tests/test_offpolicy.py`` compares them), with what costs time on 2 CPU cores removed: the
target critic follows in one fused ``lerp`` over all its tensors instead of a Python loop of
two ops per tensor, losses stay tensors until a caller reads them (no ``.item()`` per step),
and, when the networks normalise their inputs, each minibatch is folded into the running input
statistics of the actor, the critic and the target critic first (SB3 never calls our
:class:`selfplay.policies.RunningNorm`). The optimisers are whatever the policy built (the
off-policy Bob asks for fused Adam, :mod:`selfplay.learning.sac`).
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.type_aliases import DictReplayBufferSamples


def critic_pairs(model: SAC) -> tuple[list[th.Tensor], list[th.Tensor]]:
    """The critic's parameters and the target critic's, in the same order."""
    return [p.data for p in model.critic.parameters()], [p.data for p in model.critic_target.parameters()]


def update_input_statistics(model: SAC, observations: dict[str, th.Tensor]) -> None:
    """Fold a minibatch into the input statistics of every extractor that normalises (no-op
    without ``normalize_inputs``)."""
    for network in (model.actor, model.critic, model.critic_target):
        extractor = network.features_extractor
        if getattr(extractor, "robot_norm", None) is not None:
            extractor.update_input_stats(observations)


def sac_gradient_step(model: SAC, batch: DictReplayBufferSamples, targets: tuple[list[th.Tensor], list[th.Tensor]],
                      action_l2: float = 0.0) -> dict[str, th.Tensor]:
    """One SAC update of ``model`` on ``batch``; ``targets`` from :func:`critic_pairs`.

    ``action_l2`` adds ``action_l2 * mean(a^2)`` of the actor's actions (in [-1, 1]) to its loss,
    as the hindsight experience replay setups do (Andrychowicz et al., 2017): with a sparse
    reward nothing else tells the actor that a gentler action reaching the same goal is better.

    Returns the step's losses and entropy weight as 0-d tensors (``actor_loss``,
    ``critic_loss``, ``ent_coef``, ``ent_coef_loss`` with a learned weight)."""
    actor, critic, critic_target = model.actor, model.critic, model.critic_target
    obs, next_obs = batch.observations, batch.next_observations
    actions_pi, log_prob = actor.action_log_prob(obs)
    log_prob = log_prob.reshape(-1, 1)
    stats: dict[str, th.Tensor] = {}
    if model.ent_coef_optimizer is not None:
        ent_coef = th.exp(model.log_ent_coef.detach())
        ent_coef_loss = -(model.log_ent_coef * (log_prob + model.target_entropy).detach()).mean()
        model.ent_coef_optimizer.zero_grad()
        ent_coef_loss.backward()
        model.ent_coef_optimizer.step()
        stats["ent_coef_loss"] = ent_coef_loss.detach()
    else:
        ent_coef = model.ent_coef_tensor
    stats["ent_coef"] = ent_coef.reshape(())

    with th.no_grad():
        next_actions, next_log_prob = actor.action_log_prob(next_obs)
        next_q = th.cat(critic_target(next_obs, next_actions), dim=1).min(dim=1, keepdim=True).values
        next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * model.gamma * next_q

    critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in critic(obs, batch.actions))
    critic.optimizer.zero_grad()
    critic_loss.backward()
    critic.optimizer.step()

    min_q_pi = th.cat(critic(obs, actions_pi), dim=1).min(dim=1, keepdim=True).values
    actor_loss = (ent_coef * log_prob - min_q_pi).mean()
    if action_l2 > 0:
        actor_loss = actor_loss + action_l2 * actions_pi.square().mean()
    actor.optimizer.zero_grad()
    actor_loss.backward()
    actor.optimizer.step()

    with th.no_grad():
        th._foreach_lerp_(targets[1], targets[0], model.tau)
    model._n_updates += 1
    stats.update(actor_loss=actor_loss.detach(), critic_loss=critic_loss.detach())
    return stats
