"""Permutation-invariant object-set networks (METHOD.md section 5) for SB3 policies.

Robot features -> MLP embedding; each object's features (plus its goal features for Bob) ->
one shared MLP -> max-pool over the real objects (padding masked out); the two embeddings are
summed. SB3's policy then adds separate policy and value MLP heads. Because the pooling is a max
over objects, the output does not depend on their order and one policy serves any object count.
(Memory/LSTM is a later step: it would consume these features.)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ObjectSetExtractor(BaseFeaturesExtractor):
    """Features (B, ``width``) from the structured keys ``robot``, ``objects``, ``mask`` and, when
    ``use_goal``, ``goal`` of a :class:`tabletop_env.TabletopEnv` observation.

    Args:
        width: size of every hidden layer and of the output.
        depth: layers of the per-object MLP.
        use_goal: Bob (True) conditions each object on its goal; Alice (False) never sees one.
    """

    def __init__(self, observation_space: gym.spaces.Dict, width: int = 128, depth: int = 2, use_goal: bool = True) -> None:
        super().__init__(observation_space, features_dim=width)
        robot_size = observation_space["robot"].shape[0]
        object_size = observation_space["objects"].shape[1] + (observation_space["goal"].shape[1] if use_goal else 0)
        self.use_goal = use_goal
        self.robot = nn.Sequential(_mlp([robot_size, width, width]), nn.ReLU())
        self.object = nn.Sequential(_mlp([object_size] + [width] * depth), nn.ReLU())

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        objects = observations["objects"]
        if self.use_goal:
            objects = th.cat([objects, observations["goal"]], dim=-1)
        per_object = self.object(objects)  # (B, N, width)
        mask = observations["mask"].unsqueeze(-1) > 0.5  # (B, N, 1)
        # Masked max-pool: padding slots cannot win (features are >= 0 after the ReLU).
        pooled = th.where(mask, per_object, th.zeros_like(per_object)).amax(dim=1)
        return self.robot(observations["robot"]) + pooled


def policy_kwargs(use_goal: bool, width: int = 128, depth: int = 2, head: tuple[int, ...] = (128,)) -> dict[str, Any]:
    """``policy_kwargs`` for SB3's ``MultiInputPolicy``: object-set extractor, separate policy
    and value networks (no shared weights, METHOD.md section 5)."""
    return {
        "features_extractor_class": ObjectSetExtractor,
        "features_extractor_kwargs": {"width": width, "depth": depth, "use_goal": use_goal},
        "share_features_extractor": False,
        "net_arch": {"pi": list(head), "vf": list(head)},
    }
