"""Bob's checkpoint as a player of the holdout tasks: loading it, and acting through the discretisation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from selfplay.learning.sac import continuous_actions, is_continuous
from selfplay.policies import sample_actions
from tabletop_env import TabletopEnv
from tabletop_env.env import observation_spaces, reads_goal_rotation
from tabletop_env.wrappers import ACTION_DIMS, bin_values


class BobPolicy:
    """Bob (a learner, or an SB3 model: anything with ``policy``, ``observation_space`` and
    ``action_space``) acting on a :class:`TabletopEnv` observation through the discretisation.

    Checks the checkpoint against the env: the object slots (``max_objects``) and the action
    space must match, else a plain error says what differs.
    """

    def __init__(self, model, deterministic: bool = True) -> None:
        self.model, self.deterministic = model, deterministic
        extractor = getattr(model.policy, "pi_features_extractor", None)
        if getattr(extractor, "use_goal", True) is False:
            raise ValueError("this policy does not take goals (Alice's alice.zip?); evaluate Bob's bob.zip")
        space = model.action_space
        self.continuous = is_continuous(model.policy)  # an off-policy Bob (bob.algo=sac)
        if self.continuous:
            if space.shape != (ACTION_DIMS,):
                raise ValueError(f"checkpoint has action space {space}; Bob needs {ACTION_DIMS} action dimensions")
            return
        nvec = getattr(space, "nvec", None)
        if nvec is None or len(nvec) != ACTION_DIMS or len(set(nvec.tolist())) != 1:
            raise ValueError(f"checkpoint has action space {space}; Bob needs MultiDiscrete with {ACTION_DIMS} equal dimensions")
        self.values = bin_values(int(nvec[0]))

    def check(self, env: TabletopEnv, task_id: str) -> None:
        expected = self.model.observation_space
        for key in ("robot", "objects", "goal", "mask"):
            if key not in expected.spaces:
                raise ValueError(f"checkpoint's observation space lacks {key!r}: not a Bob trained by selfplay")
            if expected[key].shape != env.observation_space[key].shape:
                raise ValueError(
                    f"checkpoint expects {key} of shape {expected[key].shape} but {task_id} gives "
                    f"{env.observation_space[key].shape} (object slots: checkpoint "
                    f"{expected['mask'].shape[0]}, env max_objects {env.max_objects})"
                )

    def __call__(self, obs: dict) -> np.ndarray:
        batch = {k: v[None] for k, v in obs.items()}
        if self.continuous:
            return continuous_actions(self.model.policy, batch, deterministic=self.deterministic)[0]
        actions, _, _ = sample_actions(self.model.policy, batch, deterministic=self.deterministic)
        return self.values[actions[0]]


def object_slots(model) -> int:
    """How many objects a Bob's networks take (``env.max_objects`` of his training run)."""
    return model.observation_space["mask"].shape[0]


def widen_object_slots(model, path: Path, slots: int):
    """Bob from ``path`` (the zip ``model`` was loaded from) with his object inputs widened to
    ``slots``, for a task with more objects than he trained with. The same weights: his
    object-set networks (:class:`selfplay.policies.ObjectSetExtractor`: one MLP per object, a
    masked max-pool) do not depend on the number of slots, and the padding slots of a task that
    fits change nothing. Refuses other networks, whose weights may depend on it."""
    import gymnasium as gym
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from selfplay.policies import ObjectSetExtractor

    extractors = [m for m in model.policy.modules() if isinstance(m, BaseFeaturesExtractor)]
    if not extractors or not all(isinstance(m, ObjectSetExtractor) for m in extractors):
        raise ValueError(f"{path}: not an object-set network, its object slots cannot be widened")
    spaces = observation_spaces(slots, reads_goal_rotation(model.observation_space))
    widened = gym.spaces.Dict({key: spaces[key] for key in model.observation_space.spaces})  # the keys it was saved with
    return type(model).load(path, device="cpu", custom_objects={"observation_space": widened})


def load_bob(run: str | None, checkpoint: str | None):
    """Bob's SB3 model from a run folder (latest checkpoint) or a zip; plain errors otherwise."""
    import zipfile

    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.save_util import json_to_data
    from stable_baselines3.sac.policies import SACPolicy

    from selfplay.checkpoint import latest_checkpoint

    if bool(run) == bool(checkpoint):
        raise ValueError("give exactly one of run=<run folder> or checkpoint=<bob zip>")
    path = latest_checkpoint(Path(run), report=lambda line: print(line, file=sys.stderr)) / "bob.zip" if run else Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:  # only the model's description: the class of its policy
            data = json_to_data(archive.read("data").decode())
        algo = SAC if isinstance(data.get("policy_class"), type) and issubclass(data["policy_class"], SACPolicy) else PPO
        return algo.load(path, device="cpu"), path
    except Exception as error:  # a zip that is not an SB3 model
        raise ValueError(f"{path} is not a loadable SB3 checkpoint: {error}") from None
