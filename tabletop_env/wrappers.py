"""Thin wrappers: the discretised action space used by the self-play agents."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


#: Action dimensions: dx, dy, dz of the tool, wrist rotation, wrist tilt, finger opening.
ACTION_DIMS = 6
#: Bins per action dimension in the paper (and our default, ``env.action_bins``).
DEFAULT_BINS = 11


def bin_values(bins: int) -> np.ndarray:
    """The action value (bins,) in [-1, 1] of each bin: ``-1 + 2 k / (bins - 1)``."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    return np.linspace(-1.0, 1.0, bins)


def nearest_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """The bin (int64, same shape) whose value is nearest to each action value in [-1, 1]."""
    return np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 0.5 * (bins - 1)).astype(np.int64)


def discrete_action_space(bins: int) -> gym.spaces.MultiDiscrete:
    """``MultiDiscrete([bins] * 6)``: the self-play agents' action space."""
    return gym.spaces.MultiDiscrete([bins] * ACTION_DIMS)


class DiscreteActions(gym.ActionWrapper):
    """Each of the 6 continuous action dimensions becomes ``bins`` evenly spaced values in [-1, 1].

    Action space: ``MultiDiscrete([bins] * 6)``; bin k maps to ``-1 + 2 k / (bins - 1)``, so with
    an odd number of bins the middle bin is exactly 0 (hold still).
    """

    def __init__(self, env: gym.Env, bins: int = DEFAULT_BINS) -> None:
        super().__init__(env)
        self.bins = bins
        self.values = bin_values(bins)
        dims = env.action_space.shape[0]
        self.action_space = gym.spaces.MultiDiscrete([bins] * dims)

    def action(self, action: np.ndarray) -> np.ndarray:
        """Bin indices (6,) -> continuous values; anything but whole numbers in [0, bins) raises
        ``ValueError`` (a negative index would otherwise wrap around, 5.5 be truncated)."""
        raw = np.asarray(action)
        if raw.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {raw.shape}")
        if raw.dtype.kind not in "iub":
            if raw.dtype.kind != "f" or not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
                raise ValueError(f"action must be whole bin numbers in [0, {self.bins}), got {raw.tolist()}")
        index = raw.astype(np.int64)
        if np.any(index < 0) or np.any(index >= self.bins):
            raise ValueError(f"action bins must lie in [0, {self.bins}), got {raw.tolist()}")
        return self.values[index]
