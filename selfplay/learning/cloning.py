"""Alice Behavioural Cloning (docs/method.md section 4), all of it: relabelling Alice's turns
into demonstrations, the demonstrations' buffer with Bob's behaviour log-probabilities, and the
clipped loss, as an extra loss of Bob's PPO update (:class:`AliceBehaviouralCloning`)."""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy

from selfplay.learning.losses import Minibatch
from tabletop_env.env import POSE_SIZE
from tabletop_env.state import rotation_to_goal


def goal_features(goal_poses: np.ndarray, objects: np.ndarray, mask: np.ndarray,
                  rotation_modes: np.ndarray | None = None) -> np.ndarray:
    """Bob's goal features (B, M, 10) as the simulator writes them: per real object the goal pose
    (7) and the goal position minus the object's position (3, m, computed in float64); zeros in
    padding slots. ``goal_poses``: (B, M, 7); ``objects``: (B, M, 17) object features; ``mask``: (B, M).
    With ``rotation_modes`` ((M,) ROTATION_* codes, the env's ``goal_rotation=True``), (B, M, 13):
    the rotation from each object's orientation to its goal's follows (3, rad, world frame).
    """
    goal = np.asarray(goal_poses, dtype=np.float64)
    parts = [goal, goal[..., :3] - objects[..., :3].astype(np.float64)]
    if rotation_modes is not None:
        parts.append(rotation_to_goal(objects[..., 3:POSE_SIZE], goal[..., 3:], rotation_modes))
    return (np.concatenate(parts, axis=-1) * mask[..., None]).astype(np.float32)


def relabel(observations: dict[str, np.ndarray], goal: np.ndarray,
            rotation_modes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Alice's observations (dict of (T, ...) arrays) as Bob would see them with goal ``goal``.

    ``goal`` is (n, 7): the object poses Alice left. Bob's goal features are computed from each
    state exactly as the simulator computes them in Bob's own rollouts: per object the goal pose
    and the goal position minus the current position (float32, padded), the flat
    ``desired_goal``, and ``phase`` = 1 (Bob's turn). ``rotation_modes``: (M,) padded modes when
    the goal features carry the rotation to the goal (see :func:`goal_features`).
    """
    n = len(goal)
    out = dict(observations)
    steps = len(observations["objects"])
    goal32 = goal.astype(np.float64)
    padded = np.zeros((observations["goal"].shape[1], POSE_SIZE))
    padded[:n] = goal32
    out["goal"] = goal_features(np.broadcast_to(padded, (steps, *padded.shape)), observations["objects"], observations["mask"],
                               rotation_modes)
    desired = observations["achieved_goal"].copy()
    desired[:, : n * POSE_SIZE] = goal32.ravel()
    # padding slots: identity poses, as the simulator writes them
    desired[:, n * POSE_SIZE :] = observations["achieved_goal"][:, n * POSE_SIZE :]
    out["desired_goal"] = desired
    if "phase" in observations:
        out["phase"] = np.ones((steps, 1), dtype=np.float32)
    return out


def abc_loss(log_prob: th.Tensor, behaviour_log_prob: th.Tensor, clip_range: float) -> th.Tensor:
    """``-mean(clip(pi / pi_old, 1 - eps, 1 + eps))``: PPO's clipped surrogate with advantage 1.

    ``log_prob``: (B,) Bob's current log-likelihood of Alice's actions; ``behaviour_log_prob``:
    (B,) the same under Bob's policy when the demonstration was collected.
    """
    ratio = th.exp(log_prob - behaviour_log_prob)
    return -th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range).mean()


class DemonstrationBuffer:
    """Relabelled demonstrations with Bob's behaviour log-probabilities, for one update.

    ``add`` takes a batch of observations (dict of (T, ...) arrays), actions (T, 6) and
    log-probabilities (T,); ``sample`` draws a minibatch with its own generator, so that
    sampling demonstrations never changes PPO's own minibatch order.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.observations: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.log_probs: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)
        self._cat: tuple | None = None

    def __len__(self) -> int:
        return sum(len(a) for a in self.actions)

    def add(self, observations: dict[str, np.ndarray], actions: np.ndarray, log_probs: np.ndarray) -> None:
        self.observations.append(observations)
        self.actions.append(actions)
        self.log_probs.append(log_probs)
        self._cat = None

    def clear(self) -> None:
        self.observations, self.actions, self.log_probs, self._cat = [], [], [], None

    def sample(self, batch_size: int, device: th.device | str = "cpu") -> tuple[dict[str, th.Tensor], th.Tensor, th.Tensor]:
        """A random minibatch: (observations, actions (B, 6) long, behaviour log-probs (B,))."""
        if self._cat is None:
            keys = self.observations[0].keys()
            self._cat = (
                {k: np.concatenate([o[k] for o in self.observations]) for k in keys},
                np.concatenate(self.actions),
                np.concatenate(self.log_probs),
            )
        observations, actions, log_probs = self._cat
        index = self._rng.integers(len(actions), size=min(batch_size, len(actions)))
        return (
            {k: th.as_tensor(v[index], device=device) for k, v in observations.items()},
            th.as_tensor(actions[index], device=device).long(),
            th.as_tensor(log_probs[index], device=device).float(),
        )


class AliceBehaviouralCloning:
    """ABC as an extra loss of Bob's PPO update: ``weight * L_abc`` on a minibatch of Alice's
    relabelled demonstrations per PPO minibatch (docs/method.md section 4).

    Args:
        weight: beta (0.5 in the paper).
        clip: the ratio clip epsilon (0.2).
        batch_size: demonstration steps per minibatch (None: the size of PPO's minibatch).
        seed: the buffer's own generator (sampling demonstrations never changes PPO's minibatches).
    """

    name = "abc"

    def __init__(self, weight: float = 0.5, clip: float = 0.2, batch_size: int | None = None, seed: int | None = None) -> None:
        self.weight, self.clip, self.batch_size = weight, clip, batch_size
        self.demonstrations = DemonstrationBuffer(seed=seed)

    def set_demonstrations(self, policy: ActorCriticPolicy, demos: dict | None, chunk: int = 1024) -> None:
        """Replace the demonstrations with ``demos`` (``observations``: dict of (T, ...) arrays,
        ``actions``: (T, 6) bins; or None) and store Bob's behaviour log-probabilities of the
        actions under ``policy`` as it is now, before the update."""
        self.demonstrations.clear()
        if demos is None:
            return
        observations = {k: v for k, v in demos["observations"].items() if k in policy.observation_space.spaces}
        log_probs = []
        with th.no_grad():
            for start in range(0, len(demos["actions"]), chunk):
                obs, _ = policy.obs_to_tensor({k: v[start : start + chunk] for k, v in observations.items()})
                _, log_prob, _ = policy.evaluate_actions(obs, th.as_tensor(demos["actions"][start : start + chunk]))
                log_probs.append(log_prob.cpu().numpy())
        self.demonstrations.add(observations, demos["actions"], np.concatenate(log_probs))

    def loss(self, policy: ActorCriticPolicy, minibatch: Minibatch) -> th.Tensor | None:
        """``L_abc`` on a random minibatch of demonstrations; None when there are none."""
        if len(self.demonstrations) == 0:
            return None
        obs, actions, behaviour_log_probs = self.demonstrations.sample(self.batch_size or len(minibatch.actions), policy.device)
        _, log_prob, _ = policy.evaluate_actions(obs, actions)
        return abc_loss(log_prob, behaviour_log_probs, self.clip)
