"""Resuming a run: does a checkpoint fit this config, and loading it into the learners."""

from __future__ import annotations

import logging
from pathlib import Path

import gymnasium as gym
import torch as th

from selfplay.checkpoint import checkpoint_problem
from selfplay.config import ConfigError
from selfplay.opponents import OpponentPool
from tabletop_env.env import reads_goal_rotation

log = logging.getLogger("selfplay")


#: an off-policy Bob's replay buffer, in a run's last checkpoint (written at its end or stop)
REPLAY_FILE = "bob_replay.npz"


def has_replay(learner) -> bool:
    """Whether ``learner`` learns from a replay buffer worth keeping across a resume."""
    return getattr(learner, "keeps_replay", False)


def restore(checkpoint: Path, learners: tuple, pool: OpponentPool) -> None:
    """Load Alice's and Bob's zips, the snapshot pool and (when the checkpoint has it) Bob's
    replay buffer from ``checkpoint``; a :class:`ConfigError` naming the key or the file when it
    does not fit or is damaged. A checkpoint written during the run (a hard kill) has no replay
    buffer: Bob's then starts empty, with a warning."""
    for name, learner in zip(("alice", "bob"), learners):
        mismatch = architecture_mismatch(checkpoint / f"{name}.zip", learner, name)
        if mismatch:
            raise ConfigError(f"config error: resume: {mismatch} (checkpoint {checkpoint}); "
                              "resume with the checkpoint's value, or start a new run")
    alice, bob = learners
    parts = [("alice.zip", alice.load), ("bob.zip", bob.load), ("pool.pt", lambda p: pool.load_state_dict(th.load(p, weights_only=False)))]
    if has_replay(bob):
        if (checkpoint / REPLAY_FILE).exists():
            parts.append((REPLAY_FILE, bob.load_replay))
        else:
            log.warning("resume: %s holds no replay buffer (it was written during the run, not at its end or stop): "
                        "Bob's starts empty", checkpoint)
    for name, load in parts:
        try:
            load(checkpoint / name)
        except Exception as error:  # noqa: BLE001 - torch / SB3 / zipfile raise many kinds
            damaged = checkpoint_problem(checkpoint)
            reason = f"it is incomplete ({damaged})" if damaged else "it does not fit this config"
            raise ConfigError(f"config error: resume: cannot load {checkpoint / name}: {reason}: {_first_line(error)}") from None


def start_from(learner, zip_path: Path, agent: str) -> None:
    """Start ``learner`` from the weights and optimiser state of ``zip_path`` (``<agent>.init_from``):
    an SB3 zip of the same architecture; its object slots (``env.max_objects``) may differ, since
    the object-set network's weights do not depend on them. Anything else that does not fit is one
    :class:`ConfigError` naming the key, before the run writes anything."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise ConfigError(f"config error: {agent}.init_from: no zip at {zip_path}")
    mismatch = architecture_mismatch(zip_path, learner, agent, ignore=("env.max_objects",))
    if mismatch:
        raise ConfigError(f"config error: {agent}.init_from: {mismatch} ({zip_path})")
    try:
        learner.load(zip_path)
    except Exception as error:  # noqa: BLE001 - torch / SB3 / zipfile raise many kinds
        raise ConfigError(f"config error: {agent}.init_from: cannot load {zip_path}: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    """A load error in one line (torch and SB3 errors can run to many)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _architecture(agent: str, policy_kwargs: dict, observation_space: gym.spaces.Dict, action_space) -> dict:
    """The config keys that fix a network's shapes, with their values in one model."""
    extractor, head = policy_kwargs["features_extractor_kwargs"], policy_kwargs["net_arch"]
    continuous = not hasattr(action_space, "nvec")  # an off-policy Bob (bob.algo=sac)
    shapes = {
        f"{agent}.algo": "sac" if continuous else "ppo",
        f"{agent}.width": extractor["width"],
        f"{agent}.depth": extractor["depth"],
        f"{agent}.normalize_inputs": extractor.get("normalize", False),
        f"{agent}.head": list(head["pi"] if isinstance(head, dict) else head),
        "env.max_objects": observation_space["mask"].shape[0],
        "env.goal_rotation": reads_goal_rotation(observation_space),
    }
    if not continuous:
        shapes["env.action_bins"] = int(action_space.nvec[0])
    return shapes


def architecture_mismatch(zip_path: Path, learner, agent: str, ignore: tuple[str, ...] = ()) -> str | None:
    """The config key whose value differs between ``learner`` and the network saved in
    ``zip_path`` (an SB3 zip), e.g. ``bob.width is 64 but the checkpoint was trained with 32``;
    None if they match (keys in ``ignore`` aside) or the zip cannot be read (loading it then says why)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, _, _ = load_from_zip_file(zip_path, device="cpu", load_data=True)
        saved = _architecture(agent, data["policy_kwargs"], data["observation_space"], data["action_space"])
    except Exception:  # noqa: BLE001 - a damaged zip: the load reports it
        return None
    ours = _architecture(agent, learner.policy_kwargs, learner.observation_space, learner.action_space)
    for key, value in ours.items():
        if key not in ignore and saved[key] != value:
            return f"{key} is {value} but the checkpoint was trained with {saved[key]}"
    return None
