"""What a PPO update hands to its extra losses: one minibatch, and the interface of an extra loss.

An extra loss (ABC today, :class:`selfplay.learning.cloning.AliceBehaviouralCloning`; hindsight
cloning from a replay of demonstrations, or an auxiliary loss of a recurrent core later) is an
object with a ``name``, a ``weight`` and a ``loss(policy, minibatch)`` method. It may own its own
data (a buffer of demonstrations) and sample from it on each call; the learner adds
``weight * loss`` to PPO's loss on every minibatch and logs ``<name>_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy


@dataclass
class Minibatch:
    """One PPO minibatch of B transitions, as tensors on the policy's device.

    ``observations``: dict of (B, ...) float32; ``actions``: (B, n_dims) int64 bin indices;
    ``old_values``, ``old_log_probs``, ``advantages``, ``returns``: (B,) float32, as collected.
    """

    observations: dict[str, th.Tensor]
    actions: th.Tensor
    old_values: th.Tensor
    old_log_probs: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor


class ExtraLoss(Protocol):
    """A term added to PPO's loss: ``weight * loss(policy, minibatch)``."""

    name: str  # logged as "<name>_loss"
    weight: float  # its coefficient in the total loss

    def loss(self, policy: ActorCriticPolicy, minibatch: Minibatch) -> th.Tensor | None:
        """The term (a scalar tensor with gradient) for this minibatch, or None when it has no
        data yet (then it adds nothing)."""
        ...

    # Optional: ``set_demonstrations(policy, demos)``, called by :meth:`PPOLearner.set_demonstrations`
    # before each update with the demonstrations the games produced (dict of ``observations``,
    # ``actions``, or None). ABC replaces its buffer with them; a replay of demonstrations would add.
