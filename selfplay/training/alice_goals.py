"""What Alice discovers: every valid goal she proposes, logged per object to ``goals.csv`` in the
run folder, and a report over training (a table and a picture, also logged to wandb at the end
of a run). ``python -m selfplay.alice_goals run=<run folder>`` writes the report of any run.

A row of ``goals.csv`` is one object of one valid goal: where the object was when Alice's turn
started and where she left it (m, and its orientation as a quaternion xyzw), how far it
travelled and rose (m), how far it turned (rad,
modulo its symmetry, as the success rule compares orientations), and the goal's counts
(objects moved, lifted, stacked), whether an object ended outside the placement area, and
whether Bob then reached the goal (empty when he did not play it).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from selfplay.events import GoalResult
from tabletop_env.state import ROTATION_TOLERANCE

GOALS_FILE = "goals.csv"
REPORT_TABLE = "alice_goals.md"
REPORT_PICTURE = "alice_goals.png"
PHASES = 5  # the report splits training into this many equal spans of env steps

#: The report's columns, per phase of training.
COLUMNS = ("env steps", "goals", "objects moved / goal", "lifted / goal", "stacked / goal", "travel cm (mean)",
           "travel cm (90th pct)", "turned > 0.2 rad", "outside area", "Bob solved")


def goal_rows(goals: Iterable[GoalResult], env_steps: int, updates: int) -> list[dict]:
    """``goals.csv`` rows for the valid goals of one update (one row per object)."""
    rows = []
    for g in goals:
        if not g.valid or g.goal is None or g.start is None:
            continue
        for i, (start, end) in enumerate(zip(g.start, g.goal)):
            rows.append({
                "env_steps": env_steps, "updates": updates, "goal_index": g.index, "object": i,
                "start_x": start[0], "start_y": start[1], "start_z": start[2],
                "goal_x": end[0], "goal_y": end[1], "goal_z": end[2],
                **{f"start_q{axis}": start[3 + k] for k, axis in enumerate("xyzw")},  # orientation, quaternion xyzw
                **{f"goal_q{axis}": end[3 + k] for k, axis in enumerate("xyzw")},
                "travel": float(np.linalg.norm(end[:3] - start[:3])), "rise": float(end[2] - start[2]),
                "turn": float(g.turns[i]) if g.turns is not None else float("nan"),
                "moved": g.moved, "lifted": g.lifted, "stacked": g.stacked, "outside": int(g.outside),
                "bob_success": "" if g.bob_success is None else int(g.bob_success),
            })
    return rows


def read_goals(path: Path) -> dict[str, np.ndarray]:
    """``goals.csv`` as columns (float arrays; an empty ``bob_success`` is NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in rows[0]}


def phase_table(goals: dict[str, np.ndarray], phases: int = PHASES) -> list[list[str]]:
    """One row per phase of training (equal spans of env steps): the :data:`COLUMNS`."""
    steps = goals["env_steps"]
    edges = np.linspace(0, steps.max(), phases + 1)
    first = goals["object"] == 0  # one row per goal for the goal-level counts
    table = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        span = (steps > lo) & (steps <= hi) if lo > 0 else steps <= hi
        per_goal = span & first
        if not per_goal.any():
            continue
        travel = goals["travel"][span] * 100
        solved = goals["bob_success"][per_goal]
        table.append([
            f"{int(lo):,}-{int(hi):,}", f"{int(per_goal.sum())}",
            f"{goals['moved'][per_goal].mean():.2f}", f"{goals['lifted'][per_goal].mean():.3f}",
            f"{goals['stacked'][per_goal].mean():.3f}", f"{travel.mean():.1f}", f"{np.percentile(travel, 90):.1f}",
            f"{(goals['turn'][span] > ROTATION_TOLERANCE).mean():.2f}" if "turn" in goals else "-",  # older goals.csv: no turns
            f"{goals['outside'][per_goal].mean():.2f}",
            f"{np.nanmean(solved):.2f}" if np.isfinite(solved).any() else "-",
        ])
    return table


def markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table]) + "\n"


def plot(goals: dict[str, np.ndarray], path: Path, placement: tuple[tuple[float, float], tuple[float, float]] | None = None,
         phases: int = PHASES) -> None:
    """The picture: where Alice left the objects (top view, coloured by phase of training, the
    placement area drawn), and how far they travelled and rose over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = goals["env_steps"]
    fig, (top, travel, rise) = plt.subplots(1, 3, figsize=(15, 4.5))
    colours = plt.cm.viridis(np.linspace(0, 1, phases))
    edges = np.linspace(0, steps.max(), phases + 1)
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        span = (steps > lo) & (steps <= hi) if lo > 0 else steps <= hi
        label = f"{int(lo) // 1000}k-{int(hi) // 1000}k steps"
        top.scatter(goals["goal_x"][span], goals["goal_y"][span], s=6, color=colours[k], alpha=0.6, label=label)
        travel.hist(goals["travel"][span] * 100, bins=30, range=(0, 40), histtype="step", color=colours[k], label=label)
    if placement is not None:
        (x0, y0), (x1, y1) = placement
        top.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", color="k", label="placement area"))
    top.set(xlabel="x (m)", ylabel="y (m)", title="where Alice left the objects (top view)", aspect="equal")
    top.legend(fontsize=7, loc="upper right")
    travel.set(xlabel="object travel in her turn (cm)", ylabel="objects", title="how far she moved them")
    travel.legend(fontsize=7)
    order = np.argsort(steps)
    window = max(1, len(order) // 50)
    smooth = lambda v: np.convolve(v[order], np.ones(window) / window, mode="valid")  # noqa: E731
    rise.plot(smooth(steps), smooth(np.maximum(goals["rise"], 0) * 100), label="rise (cm)")
    rise.plot(smooth(steps), smooth(goals["travel"] * 100), label="travel (cm)")
    rise.set(xlabel="env steps", title=f"moving mean over {window} objects")
    rise.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(run_dir: Path, placement: tuple[tuple[float, float], tuple[float, float]] | None = None
                 ) -> tuple[list[list[str]], Path] | None:
    """``alice_goals.md`` and ``alice_goals.png`` in ``run_dir`` from its ``goals.csv``; returns
    the table and the picture's path, or None when the run has no goals of Alice's."""
    source = Path(run_dir) / GOALS_FILE
    goals = read_goals(source) if source.exists() else {}
    if not goals:
        return None
    table = phase_table(goals)
    (Path(run_dir) / REPORT_TABLE).write_text(
        f"# What Alice discovers ({source.name}: {len(goals['env_steps'])} objects of valid goals)\n\n" + markdown(table))
    picture = Path(run_dir) / REPORT_PICTURE
    plot(goals, picture, placement)
    return table, picture
