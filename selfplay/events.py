"""What a game tells the collector, as typed events in ``info["events"]`` (one step may hold
several, in order): no loose info keys. The VecEnv's own keys (``terminal_observation``,
``TimeLimit.truncated``, the Ray backend's ``game_lost``) stay as they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np


#: Why a goal of Alice's was invalid: nothing moved (every object within 4 cm and 0.2 rad of its
#: pose at the start of her turn), an object fell off the table, the objects' final poses make no
#: reachable goal (overlapping), or the simulation broke.
INVALID_REASONS = ("unmoved", "off_table", "unreachable", "sim_error")


@dataclass
class GoalResult:
    """What one goal did: for logging what Alice's goals look like and how Bob fares."""

    index: int
    valid: bool
    outside: bool = False
    bob_success: bool | None = None  # None: Bob did not play it (sat out, or invalid goal)
    bob_steps: int = 0  # steps Bob took on it (to success, or to the end of his turn)
    bob_timeout: int = 0  # steps his turn allowed
    moved: int = 0  # objects away from their pose at the start of Alice's turn
    lifted: int = 0  # objects whose goal is above the table (not resting)
    stacked: int = 0  # objects resting on another object
    distance: float = 0.0  # m, the largest object displacement from the turn's start to the goal
    turns: np.ndarray | None = None  # (n,) rad: each object's rotation from the turn's start to the goal, modulo its symmetry (valid goals)
    start: np.ndarray | None = None  # (n, 7) object poses at the start of Alice's turn (valid goals)
    goal: np.ndarray | None = None  # (n, 7) the goal's object poses (valid goals)
    invalid_reason: str | None = None  # invalid goals: one of INVALID_REASONS


@dataclass
class GoalProposed:
    """Alice's turn ended with a valid goal: ``goal`` (n, 7) object poses (m, quaternion xyzw)."""

    goal: np.ndarray


@dataclass
class GoalFinished:
    """A goal is over (solved, failed, invalid, or proposed while Bob sits out).

    ``alice_reward``: Alice's reward for it, to be added to the last step of her turn that set
    it; None when nothing is owed (no Alice, an invalid goal, or paid at once as the step's reward
    because Bob sat out)."""

    result: GoalResult
    alice_reward: float | None = None


@dataclass
class Demonstration:
    """A turn relabelled as Bob would have seen it with its goal: ``observations`` (dict of
    (T, ...) arrays), ``actions`` (T, 6) bins. ``hindsight``: Bob's own turn, relabelled with the
    poses he reached (``game.bob_hindsight``); else Alice's turn to a goal Bob failed (ABC)."""

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    hindsight: bool = False


@dataclass
class AliceTurn:
    """Alice's valid turn as Bob would have seen it with her goal (the poses she left), for an
    off-policy Bob's replay buffer (``bob.replay_alice``): ``observations``, T + 1 dicts of the
    structured keys (before each step and after her last), and ``actions`` (T, 6), the action
    values she played. Sent for every valid goal, whether Bob then fails it or not."""

    observations: list[dict[str, np.ndarray]]
    actions: np.ndarray


@dataclass
class BobTurnEnded:
    """Bob's turn is over. ``sits_out``: he failed and plays no more goals this game (his
    trajectory ends); ``last_observation``: the structured keys after his last step, for an
    off-policy Bob's replay buffer (None with discrete actions)."""

    success: bool
    sits_out: bool
    last_observation: dict[str, np.ndarray] | None = None


@dataclass
class SimulationError:
    """The simulation broke (``reason``); the game ends."""

    reason: str


@dataclass
class GameOver:
    """The game ended: every goal's result, in order."""

    results: list[GoalResult] = field(default_factory=list)
    # ended before its last goal because Alice's last goal left every object beyond the arm's
    # reach (game.end_out_of_reach)
    out_of_reach: bool = False


Event = GoalProposed | GoalFinished | Demonstration | BobTurnEnded | SimulationError | GameOver
E = TypeVar("E")


def events_of(info: dict, kind: type[E]) -> list[E]:
    """The events of type ``kind`` in one step's ``info``."""
    return [event for event in info.get("events", ()) if isinstance(event, kind)]


def event_of(info: dict, kind: type[E]) -> E | None:
    """The first event of type ``kind`` in one step's ``info``, or None."""
    found = events_of(info, kind)
    return found[0] if found else None
