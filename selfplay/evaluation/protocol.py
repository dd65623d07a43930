"""The zero-shot protocol (docs/method.md section 6): per task, ``trials`` episodes of up to
``goals_per_episode`` goals in a row (one for fixed-layout tasks: stacks, arrangements), each
episode ending at its first failure (timeout, object off the table). Success rate = successes /
goals attempted, with a 95 % Wilson interval. Deterministic for a given ``seed``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tabletop_env import TabletopEnv, list_tasks, make_task

#: Goals per episode of the protocol (the paper's games: up to 5 goals).
MAX_GOALS = 5


@dataclass
class TaskResult:
    """One task's outcome. ``success_rate`` = successes / goals; ``ci_low``/``ci_high``: 95 %
    Wilson interval; ``mean_steps_to_success``: env steps per solved goal (NaN if none);
    ``mean_start_distance`` / ``mean_final_distance``: object position error (m, mean over the
    objects) when each goal was set and when its turn ended, averaged over goals: progress that
    shows before any goal is solved."""

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
    if len(task.objects) > max_objects:
        raise ValueError(f"{task_id} has {len(task.objects)} objects but the checkpoint has {max_objects} object slots")
    env = TabletopEnv(task=task, max_objects=max_objects, terminate_on_success=False, max_episode_steps=2**62,
                      render_mode="rgb_array" if record else None, **(env_kwargs or {}))
    if check is not None:
        check(env, task_id)
    if hasattr(act, "bind"):  # scripted players (tests) may need the env itself
        act.bind(env)
    goals_per_episode = 1 if task.fixed_layout else max_goals
    goals = successes = total_steps = 0
    steps_to_success: list[int] = []
    start_distances: list[float] = []
    final_distances: list[float] = []
    failures: dict[str, int] = {}
    frames: list[np.ndarray] = []
    for trial in range(trials):
        obs, _ = env.reset(seed=seed * 100_003 + trial)
        rng = np.random.default_rng([seed, trial])
        for goal_index in range(goals_per_episode):
            if goal_index > 0:  # the next goal from wherever the objects are now
                goal = task.sample_goal(env, rng)
                env.set_goal(goal.poses, goal.held_object)
                obs = env.refresh()
            goals += 1
            start_distances.append(position_error(env, obs))
            outcome = "timeout"
            for step in range(task.max_episode_steps):
                obs, _, terminated, _, info = env.step(act(obs))
                total_steps += 1
                if record and trial == 0 and step % 2 == 0:
                    frames.append(env.render())
                if info["is_success"]:
                    outcome = "success"
                    break
                if terminated:
                    outcome = "sim_error" if info["sim_error"] else "off_table"
                    break
            final_distances.append(position_error(env, obs))
            if outcome == "success":
                successes += 1
                steps_to_success.append(step + 1)
            else:
                failures[outcome] = failures.get(outcome, 0) + 1
                break
        if progress is not None:
            progress()
    env.close()
    low, high = wilson_interval(successes, goals)
    result = TaskResult(
        task=task_id, trials=trials, goals=goals, successes=successes, success_rate=successes / goals if goals else 0.0,
        ci_low=low, ci_high=high, mean_steps_to_success=float(np.mean(steps_to_success)) if steps_to_success else float("nan"),
        steps=total_steps, failures=failures, mean_start_distance=float(np.mean(start_distances)) if goals else float("nan"),
        mean_final_distance=float(np.mean(final_distances)) if goals else float("nan"),
    )
    return result, frames


def position_error(env: TabletopEnv, obs: dict) -> float:
    """Mean distance (m) between the objects' positions and their goal positions."""
    achieved = obs["achieved_goal"].reshape(-1, 7)[: env.n_objects, :3]
    return float(np.linalg.norm(achieved - env.goal[:, :3], axis=1).mean())


def resolve_tasks(tasks: Sequence[str] | None) -> list[str]:
    """The task ids to run (all by default); an unknown id lists the valid ones."""
    valid = list_tasks()
    if not tasks:
        return valid
    unknown = [t for t in tasks if t not in valid]
    if unknown:
        raise ValueError(f"unknown task id(s) {unknown}; valid ids: {', '.join(valid)}")
    return list(tasks)
