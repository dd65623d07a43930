"""Are Alice's late goals harder than her early ones? One fixed Bob judges both.

Rung 3 of the learning ladder asks that Alice's goals be harder at the end of a run than at its
start. The block's travel and lifts (``goals.csv``) are proxies; this script measures difficulty
directly: it draws goals from the first and from the last tenth of a run's ``goals.csv`` (by
order of proposal), plays each from its own start with one Bob checkpoint (the arm at home) and
compares his success on the two sets (two-proportion z-test). ``--rule position`` (default):
the block at its recorded start position with a random yaw, the goal that position with the same
yaw, success by position alone; ``--rule full``: the recorded start and goal orientations too,
success by the holdouts' full rule (0.04 m and 0.2 rad), for runs whose ``goals.csv`` records
orientations (its ``start_q*`` / ``goal_q*`` columns). A mid-run checkpoint is the sensitive
judge: a final Bob solves nearly everything.

    python benchmarks/goal_difficulty.py runs/campaign/selfplay_no_abc-s0 \
        --bob runs/campaign/selfplay_no_abc-s0/checkpoints/step-000604160/bob.zip --goals 150

Results: benchmarks/RESULTS.md, "Eleventh session".
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def play(env, bob, goal: dict[str, float], rng: np.random.Generator, steps: int, full_rule: bool) -> bool | None:
    """Bob's success on one recorded goal within ``steps``; None when the block, placed at its
    start, lands in the arm and the simulation breaks (skipped). ``full_rule``: the recorded
    orientations (quaternions xyzw), else a random yaw for both start and goal."""
    env.reset(seed=int(rng.integers(1 << 30)))
    if full_rule:
        start_q = [goal[f"start_q{axis}"] for axis in "xyzw"]
        goal_q = [goal[f"goal_q{axis}"] for axis in "xyzw"]
    else:
        half_yaw = rng.uniform(-np.pi, np.pi) / 2
        start_q = goal_q = [0.0, 0.0, math.sin(half_yaw), math.cos(half_yaw)]
    env.set_object_poses(np.array([[goal["start_x"], goal["start_y"], goal["start_z"], *start_q]]))
    env.settle()
    env.set_goal(np.array([[goal["goal_x"], goal["goal_y"], goal["goal_z"], *goal_q]]))
    observation = env.refresh()
    try:
        for _ in range(steps):
            observation, _, _, _, info = env.step(bob(observation))
            if info["is_success"]:
                return True
    except RuntimeError:  # the episode ended with a simulator error
        return None
    return False


def two_proportion_z(a: np.ndarray, b: np.ndarray) -> float:
    """z of the difference between two success rates (pooled standard error)."""
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a self-play run folder (config.yaml, goals.csv)")
    parser.add_argument("--bob", type=Path, default=None, help="the judging Bob's zip; default: the run's latest")
    parser.add_argument("--goals", type=int, default=150, help="goals drawn from each tenth")
    parser.add_argument("--steps", type=int, default=200, help="Bob's steps per goal (Push1's timeout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=("position", "full"), default="position",
                        help="success by position alone (random yaw), or the full rule with the recorded orientations")
    args = parser.parse_args()

    import torch as th

    from selfplay.evaluation.policy import BobPolicy, load_bob
    from selfplay.evaluation.workspace import saved_env_config
    from selfplay.training.alice_goals import read_goals
    from tabletop_env import TabletopEnv
    from tabletop_env.state import ROTATION_TOLERANCE

    th.set_num_threads(1)
    env_config = saved_env_config(args.run)
    if env_config.n_objects != 1:
        raise SystemExit(f"{args.run}: goal_difficulty plays one-object games only (this run has {env_config.n_objects})")
    model, path = load_bob(None if args.bob else str(args.run), str(args.bob) if args.bob else None)
    bob = BobPolicy(model, deterministic=True)
    columns = read_goals(args.run / "goals.csv")  # one row per object and goal, in order of proposal
    goals = [dict(zip(columns, row)) for row in zip(*columns.values())]
    full_rule = args.rule == "full"
    if full_rule and goals and "goal_qw" not in goals[0]:
        raise SystemExit(f"{args.run}: its goals.csv records no orientations (an older run); use --rule position")
    env = TabletopEnv(max_objects=env_config.max_objects, ignore_rotation=not full_rule, **env_config.workspace())
    tenth = len(goals) // 10
    if tenth < args.goals:
        raise SystemExit(f"{args.run}: a tenth of goals.csv has {tenth} rows, fewer than --goals {args.goals}")
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, part in (("first tenth", goals[:tenth]), ("last tenth", goals[-tenth:])):
        picked = [part[i] for i in np.random.default_rng(args.seed + 1).choice(len(part), args.goals, replace=False)]
        outcomes = [play(env, bob, goal, rng, args.steps, full_rule) for goal in picked]
        results[name] = (np.array([o for o in outcomes if o is not None], dtype=float), picked, outcomes.count(None))
    env.close()
    rule = "full rule, recorded orientations" if full_rule else "position only"
    print(f"{args.run}, judged by {path} ({rule}, {args.steps} steps, mean action):\n")
    print(f"| goals | Bob's success | goals played (skipped) | block travel (cm) | turned > {ROTATION_TOLERANCE} rad |")
    print("|---|---:|---:|---:|---:|")
    for name, (success, picked, skipped) in results.items():
        travel = 100 * np.mean([g["travel"] for g in picked])
        turned = f"{np.mean([g['turn'] > ROTATION_TOLERANCE for g in picked]):.2f}" if "turn" in picked[0] else "-"
        print(f"| {name} | {success.mean():.3f} | {len(success)} ({skipped}) | {travel:.1f} | {turned} |")
    first, last = results["first tenth"][0], results["last tenth"][0]
    z = two_proportion_z(first, last)
    p = math.erfc(z / math.sqrt(2)) / 2  # one-sided: later goals harder
    print(f"\nz = {z:.2f} (one-sided p = {p:.3f}): the late goals are {'harder' if p < 0.05 else 'not measurably harder'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
