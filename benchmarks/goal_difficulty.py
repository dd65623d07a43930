"""Are Alice's late goals harder than her early ones? One fixed Bob judges both.

Rung 3 of the learning ladder asks that Alice's goals be harder at the end of a run than at its
start. The block's travel and lifts (``goals.csv``) are proxies; this script measures difficulty
directly: it draws goals from the first and from the last tenth of a run's ``goals.csv`` (by
order of proposal), plays each from its own start with one Bob checkpoint (the arm at home) and
compares his success on the two sets (two-proportion z-test). ``--rule full``: the recorded start
and goal orientations, success by the holdouts' full rule (0.04 m and 0.2 rad), for runs whose
``goals.csv`` records orientations (its ``start_q*`` / ``goal_q*`` columns); ``--rule position``:
the block at its recorded start position with a random yaw, the goal that position with the same
yaw, success by position alone; ``--rule auto`` (default): full when recorded, else position.
The block's travel over the whole first and last tenth (the issue's displacement proxy) is
printed beside it. Rung 3 of ``learning_ladder.py`` judges with the run's final Bob.

    python benchmarks/goal_difficulty.py runs/ladder/rung3 --goals 300
    python benchmarks/goal_difficulty.py runs/campaign/selfplay_no_abc-s0 \
        --bob runs/campaign/selfplay_no_abc-s0/checkpoints/step-000604160/bob.zip --rule position

Results: benchmarks/RESULTS.md, "Eleventh session" to "Fourteenth session".
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
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


def one_sided_p(z: float) -> float:
    """P(Z > z) for a standard normal Z: the one-sided p of a z statistic."""
    return math.erfc(z / math.sqrt(2)) / 2


def two_proportion_z(a: np.ndarray, b: np.ndarray) -> float:
    """z of the difference between two success rates (pooled standard error)."""
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    se = math.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


@dataclass
class Judgement:
    """One fixed Bob's success on goals from the first and the last tenth of a run."""

    judge: str  # the Bob's zip
    rule: str  # "position" or "full"
    steps: int  # Bob's steps per goal
    success: dict[str, np.ndarray]  # "first tenth" / "last tenth" -> (goals played,) 1.0 solved, 0.0 not
    skipped: dict[str, int]  # goals whose start broke the simulation
    travel_cm: dict[str, float]  # mean block travel of the drawn goals
    turned: dict[str, float]  # share of the drawn goals that turned the block > ROTATION_TOLERANCE (nan: not recorded)
    z: float  # two-proportion z, first minus last
    p: float  # one-sided: the late goals are harder
    travel_change: dict[str, float]  # over all goals of each tenth: :func:`travel_change`
    goal_rows: int  # rows of goals.csv when judged

    @property
    def harder(self) -> bool:
        return self.p < 0.05


def judge(run: Path, bob_zip: Path | None = None, goals_per_tenth: int = 150, steps: int = 200, seed: int = 0,
          rule: str = "auto", at_most: bool = False) -> Judgement:
    """Play ``goals_per_tenth`` goals drawn from the first and the last tenth of ``run``'s
    ``goals.csv`` with one Bob (``bob_zip``; default the run's latest) and compare his success.
    ``rule``: "full", "position" or "auto" (full when goals.csv records orientations).
    ``at_most``: a tenth with fewer goals is played whole (else an error)."""
    import torch as th

    from selfplay.evaluation.policy import BobPolicy, load_bob
    from selfplay.evaluation.workspace import saved_env_config
    from selfplay.training.alice_goals import read_goals
    from tabletop_env import TabletopEnv
    from tabletop_env.state import ROTATION_TOLERANCE

    if rule not in ("auto", "full", "position"):
        raise ValueError(f"rule must be auto, full or position, not {rule!r}")
    th.set_num_threads(1)
    missing = [name for name in ("config.yaml", "goals.csv") if not (run / name).is_file()]
    if missing:
        raise SystemExit(f"{run}: not a self-play run folder (no {' or '.join(missing)})")
    env_config = saved_env_config(run)
    if env_config.n_objects != 1:
        raise SystemExit(f"{run}: goal_difficulty plays one-object games only (this run has {env_config.n_objects})")
    model, path = load_bob(None if bob_zip else str(run), str(bob_zip) if bob_zip else None)
    bob = BobPolicy(model, deterministic=True)
    columns = read_goals(run / "goals.csv")  # one row per object and goal, in order of proposal
    goals = [dict(zip(columns, row)) for row in zip(*columns.values())]
    if rule == "auto":
        rule = "full" if "goal_qw" in columns else "position"
    full_rule = rule == "full"
    if full_rule and "goal_qw" not in columns:
        raise SystemExit(f"{run}: its goals.csv records no orientations (an older run); use --rule position")
    tenth = len(goals) // 10
    if at_most:
        goals_per_tenth = min(goals_per_tenth, tenth)
    if tenth < goals_per_tenth or tenth == 0:
        raise SystemExit(f"{run}: a tenth of goals.csv has {tenth} rows, fewer than --goals {goals_per_tenth}")
    env = TabletopEnv(max_objects=env_config.max_objects, ignore_rotation=not full_rule, **env_config.workspace())
    rng = np.random.default_rng(seed)
    success, skipped, travel, turned = {}, {}, {}, {}
    for name, part in (("first tenth", goals[:tenth]), ("last tenth", goals[-tenth:])):
        picked = [part[i] for i in np.random.default_rng(seed + 1).choice(len(part), goals_per_tenth, replace=False)]
        outcomes = [play(env, bob, goal, rng, steps, full_rule) for goal in picked]
        success[name] = np.array([o for o in outcomes if o is not None], dtype=float)
        skipped[name] = outcomes.count(None)
        travel[name] = 100 * float(np.mean([g["travel"] for g in picked]))
        turned[name] = float(np.mean([g["turn"] > ROTATION_TOLERANCE for g in picked])) if "turn" in picked[0] else math.nan
    env.close()
    z = two_proportion_z(success["first tenth"], success["last tenth"])
    return Judgement(str(path), rule, steps, success, skipped, travel, turned, z, one_sided_p(z),
                     travel_change(columns["travel"]), len(goals))


def travel_change(travel_m: np.ndarray) -> dict[str, float]:
    """The block's mean travel (cm) over the first and the last tenth of a run's goals
    (``travel_m``: goals.csv's travel column in m, in order of proposal), and the one-sided p
    (normal approximation to Welch's test; a tenth holds thousands of goals) that it grew (nan
    with fewer than 20 goals): the issue's displacement proxy of "harder"."""
    travel = 100 * np.asarray(travel_m, dtype=float)
    tenth = max(1, len(travel) // 10)
    first, last = travel[:tenth], travel[-tenth:]
    if tenth < 2:  # too few goals for a spread
        return {"first": float(first.mean()), "last": float(last.mean()), "p": math.nan}
    z = (last.mean() - first.mean()) / math.sqrt(first.var(ddof=1) / len(first) + last.var(ddof=1) / len(last))
    return {"first": float(first.mean()), "last": float(last.mean()), "p": one_sided_p(z)}


def describe(run: Path, j: Judgement) -> str:
    """The judgement as a markdown table and a verdict."""
    from tabletop_env.state import ROTATION_TOLERANCE

    rule = "full rule, recorded orientations" if j.rule == "full" else "position only"
    lines = [f"{run}, judged by {j.judge} ({rule}, {j.steps} steps, mean action):", "",
             f"| goals | Bob's success | goals played (skipped) | block travel (cm) | turned > {ROTATION_TOLERANCE} rad |",
             "|---|---:|---:|---:|---:|"]
    for name, success in j.success.items():
        turned = "-" if math.isnan(j.turned[name]) else f"{j.turned[name]:.2f}"
        lines.append(f"| {name} | {success.mean():.3f} | {len(success)} ({j.skipped[name]}) | {j.travel_cm[name]:.1f} | {turned} |")
    t = j.travel_change
    lines += ["", f"z = {j.z:.2f} (one-sided p = {j.p:.3f}): the late goals are {'harder' if j.harder else 'not measurably harder'}",
              f"Block travel over all {j.goal_rows // 10} goals of each tenth: {t['first']:.1f} -> {t['last']:.1f} cm (one-sided p = {t['p']:.2g})"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a self-play run folder (config.yaml, goals.csv)")
    parser.add_argument("--bob", type=Path, default=None, help="the judging Bob's zip; default: the run's latest")
    parser.add_argument("--goals", type=int, default=150, help="goals drawn from each tenth")
    parser.add_argument("--steps", type=int, default=200, help="Bob's steps per goal (Push1's timeout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=("auto", "full", "position"), default="auto",
                        help="the full rule with the recorded orientations, success by position alone (random yaw), "
                             "or auto: full when goals.csv records orientations")
    args = parser.parse_args()
    judgement = judge(args.run, args.bob, args.goals, args.steps, args.seed, args.rule)
    print(describe(args.run, judgement))
    return 0


if __name__ == "__main__":
    sys.exit(main())
