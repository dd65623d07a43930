"""Control fidelity: does the arm do what the action says, within the step?

:func:`measure` drives an env with random actions in free space (the tool kept inside a box away
from the table and the arm's reach limits; a step that starts outside the box is replaced by an
unrecorded step back towards its centre) and reports:

* **R²** of a per-axis linear fit of each step's tool displacement (m) on the commanded
  displacement (``action[:3] * scale``), averaged over x, y, z; for x/y/z-only actions (wrist
  held, fingers open) and for random actions on all six dimensions.
* **lag-1 correlation**: action t against the displacement of step t+1 (per axis, averaged);
  an action whose effect is smeared over later steps shows here.
* **speed at full action**: the tool's mean displacement per step under ``+1`` on x alone (m).
* **wrist drift**: the tool centre's mean displacement per step (m) when only the wrist rotates
  and tilts; a tool-centre controller keeps it in place.

``benchmarks/control_fidelity.py`` runs it for our env beside panda-gym; ``tests/test_control.py``
holds the targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np


@dataclass
class Fidelity:
    """What :func:`measure` found for one env."""

    name: str
    r2_xyz: float  # mean over axes, x/y/z-only actions
    r2_all: float | None  # mean over axes, random actions on every dimension (None: no wrist)
    lag1_xyz: float  # corr(action t, displacement t+1), x/y/z-only actions
    lag1_all: float | None
    full_action_m: float  # tool displacement per step at +1 on x (m)
    wrist_drift_m: float | None  # tool-centre displacement per step, wrist-only actions (m)
    steps: int  # recorded steps per test


@dataclass
class Probe:
    """How to drive one kind of env in free space.

    ``tool()`` reads the tool position (3,) in m; ``scale`` is the displacement (m) of a unit
    action on x/y/z; ``neutral`` is the action (size,) that holds the wrist with fingers open;
    ``box`` is the (low, high) corners (3,) of the free-space box the walk stays in (m).
    """

    env: gym.Env
    tool: Callable[[], np.ndarray]
    scale: float
    neutral: np.ndarray
    box: tuple[np.ndarray, np.ndarray]

    @property
    def size(self) -> int:
        return int(self.env.action_space.shape[0])

    @classmethod
    def tabletop(cls, env: gym.Env) -> "Probe":
        """A :class:`~tabletop_env.TabletopEnv` (or a gymnasium id's wrapped one)."""
        robot = env.unwrapped.robot
        return cls(env, lambda: robot.tool_pose()[0], robot.control.max_translation,
                   np.array([0, 0, 0, 0, 0, 1.0]), (np.array([-0.25, -0.2, 0.12]), np.array([0.1, 0.2, 0.32])))

    def inside(self, position: np.ndarray, margin: float) -> bool:
        low, high = self.box
        return bool(np.all(position > low + margin) and np.all(position < high - margin))

    def towards_centre(self, position: np.ndarray) -> np.ndarray:
        action = self.neutral.copy()
        centre = 0.5 * (self.box[0] + self.box[1])
        action[:3] = np.clip((centre - position) / self.scale, -1, 1)
        return action


def _random_walk(probe: Probe, rng: np.random.Generator, steps: int, dims: str) -> tuple[np.ndarray, np.ndarray]:
    """Recorded (actions (N, size), displacements (N, 3) m) of a walk in free space; a step
    that starts outside the box is replaced by an unrecorded step back (and breaks the chain)."""
    env = probe.env
    env.reset(seed=int(rng.integers(2**31)))
    actions, moves = [], []
    position = probe.tool()
    while len(actions) < steps:
        if not probe.inside(position, probe.scale):
            env.step(probe.towards_centre(position))
            position = probe.tool()
            actions.append(None)  # a gap: lag pairs never cross it
            moves.append(None)
            continue
        action = probe.neutral.copy()
        if dims == "xyz":
            action[:3] = rng.uniform(-1, 1, 3)
        elif dims == "all":
            action = rng.uniform(-1, 1, probe.size)
        else:  # "wrist": rotation and tilt only
            action[3:5] = rng.uniform(-1, 1, 2)
        _, _, terminated, truncated, _ = env.step(action)
        new = probe.tool()
        actions.append(action)
        moves.append(new - position)
        position = new
        if terminated or truncated:
            env.reset(seed=int(rng.integers(2**31)))
            position = probe.tool()
            actions.append(None)
            moves.append(None)
    return actions, moves


def _fit(actions: list, moves: list, scale: float) -> tuple[float, float, float]:
    """(mean R², mean lag-1 correlation, mean |displacement| per step)."""
    pairs = [(a, m) for a, m in zip(actions, moves) if a is not None]
    command = np.array([a[:3] for a, _ in pairs]) * scale
    move = np.array([m for _, m in pairs])
    r2 = []
    for k in range(3):
        slope, intercept = np.polyfit(command[:, k], move[:, k], 1)
        residual = move[:, k] - (slope * command[:, k] + intercept)
        r2.append(1 - residual.var() / move[:, k].var())
    lagged = [(a, m) for (a, _), (b, m) in zip(zip(actions[:-1], moves[:-1]), zip(actions[1:], moves[1:]))
              if a is not None and b is not None]
    lag_a = np.array([a[:3] for a, _ in lagged])
    lag_m = np.array([m for _, m in lagged])
    lag = [np.corrcoef(lag_a[:, k], lag_m[:, k])[0, 1] for k in range(3)]
    return float(np.mean(r2)), float(np.mean(lag)), float(np.linalg.norm(move, axis=1).mean())


def _full_action(probe: Probe, rng: np.random.Generator, steps: int = 6) -> float:
    """Mean displacement per step (m) under +1 on x, from a point in the box's -x half."""
    env = probe.env
    env.reset(seed=int(rng.integers(2**31)))
    low, high = probe.box
    start = np.array([low[0] + probe.scale, 0.5 * (low[1] + high[1]), 0.5 * (low[2] + high[2])])
    for _ in range(40):  # go to the start point
        position = probe.tool()
        action = probe.neutral.copy()
        action[:3] = np.clip((start - position) / probe.scale, -1, 1)
        env.step(action)
    for _ in range(5):  # and come to rest there
        env.step(probe.neutral)
    first = probe.tool()
    push = probe.neutral.copy()
    push[0] = 1.0
    for _ in range(steps):
        env.step(push)
    return float(np.linalg.norm(probe.tool() - first) / steps)


def measure(probe: Probe, name: str, steps: int = 1000, seed: int = 0) -> Fidelity:
    """All of the module docstring's numbers for the env behind ``probe`` (``steps`` recorded
    steps per test)."""
    rng = np.random.default_rng(seed)
    r2_xyz, lag_xyz, _ = _fit(*_random_walk(probe, rng, steps, "xyz"), probe.scale)
    r2_all = lag_all = drift = None
    if probe.size >= 6:
        r2_all, lag_all, _ = _fit(*_random_walk(probe, rng, steps, "all"), probe.scale)
        actions, moves = _random_walk(probe, rng, max(100, steps // 4), "wrist")
        drift = float(np.mean([np.linalg.norm(m) for m in moves if m is not None]))
    speed = _full_action(probe, rng)
    return Fidelity(name, r2_xyz, r2_all, lag_xyz, lag_all, speed, drift, steps)


@dataclass
class PushOutcome:
    """What a full-speed push does to a block (:func:`push_block`)."""

    push_steps: int  # steps of +1 on x after the tool first moved the block
    peak_block_speed: float  # m/s, the block's largest planar speed
    moved_during_push: float  # m, block displacement when the tool stops
    total_move: float  # m, block displacement once it has come to rest (1 s later)


def push_block(push_steps: int = 1, speed: float = 1.0, seed: int = 0) -> PushOutcome:
    """Push one block along +x with the tool at block height: the tool starts 6 cm behind it,
    moves at ``speed`` (share of full action) until it has moved the block for ``push_steps``
    steps, then holds still for 25 steps (1 s). How far a fast push throws a block decides how
    controllable pushing is."""
    from tabletop_env.env import TabletopEnv
    from tabletop_env.objects import blocks
    from tabletop_env.scripted import run_waypoints

    env = TabletopEnv(objects=blocks(1), max_objects=1, placement_low=(-0.15, -0.1), placement_high=(0.05, 0.1),
                      home_tool_position=(-0.05, 0.0, 0.05), max_episode_steps=10**6, terminate_on_success=False)
    try:
        env.reset(seed=seed)
        block = env.object_poses()[0]
        run_waypoints(env, [((block[0] - 0.08, block[1], 0.08), 0.0, -1.0, 15), ((block[0] - 0.06, block[1], 0.02), 0.0, -1.0, 15)])
        start = env.object_poses()[0, :2].copy()
        moved = lambda: float(np.linalg.norm(env.object_poses()[0, :2] - start))  # noqa: E731
        peak, contact = 0.0, 0
        for _ in range(40):
            obs, *_ = env.step(np.array([speed, 0, 0, 0, 0, -1.0]))
            peak = max(peak, float(np.linalg.norm(obs["objects"][0, 7:9])))
            contact += moved() > 0.002
            if contact >= push_steps:
                break
        during = moved()
        for _ in range(25):
            obs, *_ = env.step(np.array([0, 0, 0, 0, 0, -1.0]))
            peak = max(peak, float(np.linalg.norm(obs["objects"][0, 7:9])))
        return PushOutcome(push_steps, peak, during, moved())
    finally:
        env.close()
