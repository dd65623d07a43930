"""The zero-shot protocol (docs/method.md section 6): per task, ``trials`` episodes of up to
``goals_per_episode`` goals in a row (one for fixed-layout tasks: stacks, arrangements), each
episode ending at its first failure (timeout, object off the table). Success rate = successes /
goals attempted, with a 95 % Wilson interval. Deterministic for a given ``seed``."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tabletop_env import TabletopEnv, list_tasks, make_task
from tabletop_env.state import POSITION_TOLERANCE

#: Goals per episode of the protocol (the paper's games: up to 5 goals).
MAX_GOALS = 5


@dataclass
class TaskResult:
    """One task's outcome. ``success_rate`` = successes / goals; ``ci_low``/``ci_high``: 95 %
    Wilson interval; ``mean_steps_to_success``: env steps per solved goal (NaN if none);
    ``mean_start_distance`` / ``mean_final_distance``: object position error (m, mean over the
    objects) when each goal was set and when its turn ended, averaged over goals: progress that
    shows before any goal is solved. ``failed_positions``: the failed goals by how near they came,
    every object within the position tolerance (4 cm) of its goal position: ``never``, ``left``
    (at some step, not at the end) or ``at_end`` (in place at the end: rotation off).
    ``seconds``: wall time of its trials."""

    task: str
    trials: int
    goals: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_steps_to_success: float
    steps: int = 0
    failures: dict = field(default_factory=dict)  # reason -> count
    mean_start_distance: float = float("nan")
    mean_final_distance: float = float("nan")
    failed_positions: dict = field(default_factory=dict)  # never / left / at_end -> count
    seconds: float = float("nan")  # wall time of the task's trials (set by the evaluation run)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_task(
    act: Callable[[dict], np.ndarray],
    task_id: str,
    trials: int,
    seed: int = 0,
    max_goals: int = MAX_GOALS,
    check: Callable | None = None,
    record: bool = False,
    progress: Callable[[], None] | None = None,
    max_objects: int = 8,
    env_kwargs: dict | None = None,
) -> tuple[TaskResult, list[np.ndarray]]:
    """Run ``trials`` episodes of ``task_id`` with ``act(obs) -> continuous action (6,)``.

    ``env_kwargs``: the workspace (placement area, reset pose; see ``EnvConfig.workspace``),
    default: :class:`TabletopEnv`'s. Returns the result and, when ``record``, the frames of the
    first trial.
    """
    task = make_task(task_id)
    player = TrialPlayer(task, TaskSpec(task_id, seed, max_goals, max_objects, env_kwargs, record, act), copy_act=False)
    records = []
    try:
        if check is not None:
            check(player.env, task_id)
        for trial in range(trials):
            player.start(trial)
            while (finished := player.step(None)) is None:
                pass
            records.append(finished)
            if progress is not None:
                progress()
    finally:
        player.close()
    return summarize(task_id, records)


def position_errors(env: TabletopEnv, obs: dict) -> np.ndarray:
    """(n_objects,) distances (m) between the objects' positions and their goal positions."""
    achieved = obs["achieved_goal"].reshape(-1, 7)[: env.n_objects, :3]
    return np.linalg.norm(achieved - env.goal[:, :3], axis=1)


def position_error(env: TabletopEnv, obs: dict) -> float:
    """Mean distance (m) between the objects' positions and their goal positions."""
    return float(position_errors(env, obs).mean())


def resolve_tasks(tasks: Sequence[str] | None) -> list[str]:
    """The task ids to run (all by default); an unknown id lists the valid ones."""
    valid = list_tasks()
    if not tasks:
        return valid
    unknown = [t for t in tasks if t not in valid]
    if unknown:
        raise ValueError(f"unknown task id(s) {unknown}; valid ids: {', '.join(valid)}")
    return list(tasks)


@dataclass
class TaskSpec:
    """What a :class:`TrialPlayer` needs to play a task's trials (:func:`evaluate_task`'s arguments)."""

    task_id: str
    seed: int
    max_goals: int
    max_objects: int
    env_kwargs: dict | None
    record: bool
    local_act: Any = None  # a per-game act(obs) run in the workers; None: actions come from the main process


@dataclass
class GoalRecord:
    """One goal of a trial: ``outcome`` (success, timeout, off_table, sim_error), env ``steps``
    taken, object-goal distance (m) when set and when its turn ended, and whether every object
    was within the position tolerance of its goal position at some step / at the end."""

    outcome: str
    steps: int
    start_distance: float
    final_distance: float
    position_reached: bool = False
    position_at_end: bool = False


@dataclass
class TrialRecord:
    """One finished trial: its goals in order; ``frames`` (H, W, 3) of trial 0 when recording."""

    trial: int
    goals: list[GoalRecord] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)


def make_eval_env(task_id: str, task, max_objects: int, record: bool, env_kwargs: dict | None) -> TabletopEnv:
    """A game of ``task`` for the protocol: no truncation, no termination on success (the trial's
    rules decide)."""
    if len(task.objects) > max_objects:
        raise ValueError(f"{task_id} has {len(task.objects)} objects but the checkpoint has {max_objects} object slots")
    return TabletopEnv(task=task, max_objects=max_objects, terminate_on_success=False, max_episode_steps=2**62,
                       render_mode="rgb_array" if record else None, **(env_kwargs or {}))


class TrialPlayer:
    """One game playing the protocol's trials one step at a time (the sequential path and each
    game of a parallel worker): goals in a row from the trial's seeds until the first failure.
    ``copy_act``: play with a copy of ``spec.local_act`` (games sharing a process need their own)."""

    def __init__(self, task, spec: TaskSpec, copy_act: bool = True) -> None:
        self.task, self.spec = task, spec
        self.env = make_eval_env(spec.task_id, task, spec.max_objects, spec.record, spec.env_kwargs)
        self.goals_per_episode = 1 if task.fixed_layout else spec.max_goals
        self.local_act = copy.deepcopy(spec.local_act) if copy_act else spec.local_act
        if hasattr(self.local_act, "bind"):
            self.local_act.bind(self.env)
        self.record: TrialRecord | None = None

    def start(self, trial: int) -> None:
        """Reset to ``trial``'s layout and first goal."""
        obs, _ = self.env.reset(seed=self.spec.seed * 100_003 + trial)
        self.rng = np.random.default_rng([self.spec.seed, trial])
        self.record = TrialRecord(trial)
        self._begin_goal(obs)

    def _begin_goal(self, obs: dict) -> None:
        self.obs, self.steps, self.start_distance = obs, 0, position_error(self.env, obs)
        self.position_reached = False

    def step(self, action: np.ndarray | None) -> TrialRecord | None:
        """One env step with ``action`` (6,) (None: the local act's); the trial's record when it ended."""
        env = self.env
        obs, _, terminated, _, info = env.step(self.local_act(self.obs) if action is None else action)
        self.steps += 1
        if self.spec.record and self.record.trial == 0 and self.steps % 2 == 1:
            self.record.frames.append(env.render())
        errors = position_errors(env, obs)
        in_place = bool((errors < POSITION_TOLERANCE).all())
        self.position_reached |= in_place
        if info["is_success"]:
            outcome = "success"
        elif terminated:
            outcome = "sim_error" if info["sim_error"] else "off_table"
        elif self.steps >= self.task.max_episode_steps:
            outcome = "timeout"
        else:
            self.obs = obs
            return None
        self.record.goals.append(GoalRecord(outcome, self.steps, self.start_distance, float(errors.mean()),
                                            self.position_reached, in_place))
        if outcome == "success" and len(self.record.goals) < self.goals_per_episode:
            goal = self.task.sample_goal(env, self.rng)  # the next goal from wherever the objects are now
            env.set_goal(goal.poses, goal.held_object)
            self._begin_goal(env.refresh())
            return None
        record, self.record = self.record, None
        return record

    def close(self) -> None:
        self.env.close()


def summarize(task_id: str, records: Sequence[TrialRecord]) -> tuple[TaskResult, list[np.ndarray]]:
    """The :class:`TaskResult` of a task's trial records (in trial order), and the recorded frames."""
    goals = [goal for record in records for goal in record.goals]
    solved = [goal.steps for goal in goals if goal.outcome == "success"]
    failures: dict[str, int] = {}
    failed_positions = {"never": 0, "left": 0, "at_end": 0}
    for goal in goals:
        if goal.outcome != "success":
            failures[goal.outcome] = failures.get(goal.outcome, 0) + 1
            nearest = "at_end" if goal.position_at_end else "left" if goal.position_reached else "never"
            failed_positions[nearest] += 1
    low, high = wilson_interval(len(solved), len(goals))
    result = TaskResult(
        task=task_id, trials=len(records), goals=len(goals), successes=len(solved),
        success_rate=len(solved) / len(goals) if goals else 0.0, ci_low=low, ci_high=high,
        mean_steps_to_success=float(np.mean(solved)) if solved else float("nan"),
        steps=sum(goal.steps for goal in goals), failures=failures,
        mean_start_distance=float(np.mean([g.start_distance for g in goals])) if goals else float("nan"),
        mean_final_distance=float(np.mean([g.final_distance for g in goals])) if goals else float("nan"),
        failed_positions=failed_positions,
    )
    return result, [frame for record in records for frame in record.frames]
