"""The learning ladder: short runs that say in minutes whether a change helps.

Run from the repository root, alone on the machine (each rung uses both cores)::

    python benchmarks/learning_ladder.py --out runs/ladder                 # every rung (~95 minutes)
    python benchmarks/learning_ladder.py --rungs 1 --out runs/ladder_lr --set bob.learning_rate=3e-4
    python benchmarks/learning_ladder.py --rungs 1 2 3 --report-only --out runs/ladder
    python benchmarks/learning_ladder.py --judge-goals runs/ladder/rung3 runs/ladder_s1/rung3  # "harder", pooled

Rungs (targets on 2 cores):

0. **The pipeline** (``benchmarks/ladder_pipeline.py``): our collector + per-agent GAE + update
   driving one agent on a standard task learns as fast as SB3's own ``PPO.learn`` at the same
   steps and hyperparameters (curves within seed noise, 3 seeds), in a few minutes.
1. **Bob alone near** (``experiment=ladder_bob_near_sac``): push goals 4-8 cm from the block,
   position-only success: >= 60 % training success within 20 minutes. Run with the off-policy
   Bob, which meets it (``ladder_bob_near`` is the same rung with the PPO Bob, which does not).
2. **Alice alone** (``experiment=ladder_alice``): valid-goal rate >= 90 % within 10 minutes, on
   the recipe's half-speed arm, her games in two processes (both cores).
3. **The full game** (``experiment=selfplay_push_sac``, the self-play recipe): Bob's success on
   Alice's goals >= 30 % within 60 minutes, and Alice's goals harder at the end than at the start
   (displacement, lifts). The recipe's budget (1.9 M env steps) ends before the hour on this
   machine; its Bob counts success by position alone for the first 750,000 env steps, so the rung's
   number, the last tenth of the run, is under the full rule. "Harder" is judged by one fixed Bob,
   the run's final one: he plays goals from the first and the last tenth of the run
   (``benchmarks/goal_difficulty.py``, full rule) and must solve fewer of the late ones; the
   block's travel, the issue's proxy, is reported beside it. The rung also keeps Bob at 604,160 env
   steps, a mid-run judge for ``goal_difficulty.py --bob``. ``--judge-goals`` gives the verdict of
   several runs (seeds) and their combined evidence (Stouffer's z).
   ``ladder_full_sac`` is the plain full game with the off-policy Bob (no curricula, full-speed
   arm), ``ladder_full`` with the PPO Bob.

Rungs 1-3 are ordinary ``python -m selfplay.train`` runs (their run folders under ``--out``);
``--set key=value`` adds hydra overrides to all of them, which is how a lever is tried. A rung's
number is the mean over the last tenth of its updates (at least 5), read from ``metrics.csv``;
``--report-only`` re-reads finished runs. Results: ``ladder.json``, ``ladder.md``, ``ladder.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts
from goal_difficulty import judge, one_sided_p  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Rung:
    number: int
    experiment: str
    metric: str  # metrics.csv column the target is on
    target: float
    minutes: float
    what: str
    extra: tuple[str, ...] = ()  # further columns reported at start and end
    settings: tuple[str, ...] = ()  # overrides the rung always passes (before --set's)
    judge_goals: bool = False  # the target also asks that Alice's late goals be harder (goal_difficulty.py)


RUNGS = {
    1: Rung(1, "ladder_bob_near_sac", "bob/success_rate", 0.60, 20, "Bob alone, push goals 4-8 cm, position only"),
    2: Rung(2, "ladder_alice", "alice/valid_goal_rate", 0.90, 10, "Alice alone moves the block"),
    3: Rung(3, "selfplay_push_sac", "bob/success_rate", 0.30, 60, "the full game",
            ("goals/distance", "goals/lifted", "alice/valid_goal_rate", "abc/demonstrations"),
            # Bob at 604,160 env steps is kept for good (a mid-run judge for goal_difficulty.py)
            ("trainer.keep_steps=[604160]",), judge_goals=True),
}


@dataclass
class RungResult:
    rung: int
    what: str
    metric: str
    target: float
    minutes_budget: float
    minutes: float = float("nan")  # training wall time of the run
    env_steps: int = 0
    start: float = float("nan")  # metric over the first tenth of updates
    end: float = float("nan")  # ... and over the last tenth: the rung's number
    met: bool = False
    extra: dict = field(default_factory=dict)  # column -> (start, end)
    curve: list = field(default_factory=list)  # (minutes, metric) per update
    command: str = ""
    harder: dict | None = None  # judge_goals rungs: :func:`harder_goals`


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in csv.DictReader(f)]


def _window_mean(rows: list[dict], key: str, first: bool) -> float:
    width = max(5, len(rows) // 10)
    part = rows[:width] if first else rows[-width:]
    values = [r[key] for r in part if key in r and not math.isnan(r[key])]
    return sum(values) / len(values) if values else math.nan


def summarise(rung: Rung, run_dir: Path, command: str = "") -> RungResult:
    rows = read_metrics(run_dir)
    result = RungResult(rung.number, rung.what, rung.metric, rung.target, rung.minutes, command=command)
    if not rows:
        return result
    result.minutes = rows[-1]["time/elapsed_s"] / 60
    result.env_steps = int(rows[-1]["env_steps"])
    result.start, result.end = _window_mean(rows, rung.metric, True), _window_mean(rows, rung.metric, False)
    result.met = result.end >= rung.target and result.minutes <= rung.minutes * 1.05
    result.extra = {key: (_window_mean(rows, key, True), _window_mean(rows, key, False)) for key in rung.extra}
    result.curve = [(r["time/elapsed_s"] / 60, r[rung.metric]) for r in rows]
    if rung.judge_goals and (run_dir / "goals.csv").exists():
        result.harder = harder_goals(run_dir)
        result.met = result.met and result.harder["harder"]
    return result


JUDGED_GOALS = 300  # goals per tenth the fixed Bob plays: a 0.1 difference in success is then about 2.5 sigma


def harder_goals(run_dir: Path) -> dict:
    """Are Alice's goals in the last tenth of the run harder than in the first? The run's final
    Bob plays goals drawn from both (``goal_difficulty.judge``; the full success rule when
    ``goals.csv`` records orientations): harder when he solves fewer of the late ones (one-sided
    p < 0.05). He trained on the late goals last, so the test leans against "harder". The block's
    travel (the issue's displacement proxy) is reported beside it. Cached in ``harder_goals.json``,
    recomputed when the run's latest Bob or its goals have changed (a resumed run)."""
    from selfplay.checkpoint import latest_checkpoint

    bob_zip = (latest_checkpoint(run_dir) / "bob.zip").resolve()
    goals = (run_dir / "goals.csv").stat()
    key = {"bob_zip": str(bob_zip), "bob_bytes": bob_zip.stat().st_size, "goals_bytes": goals.st_size,
           "goals_mtime_ns": goals.st_mtime_ns}
    cached = run_dir / "harder_goals.json"
    if cached.exists():
        result = json.loads(cached.read_text())
        if result.get("key") == key:
            return result
    j = judge(run_dir, bob_zip, goals_per_tenth=JUDGED_GOALS, rule="auto", at_most=True)
    result = {"judge": j.judge, "rule": j.rule, "first": float(j.success["first tenth"].mean()),
              "last": float(j.success["last tenth"].mean()), "goals": [len(s) for s in j.success.values()],
              "z": j.z, "p": j.p, "harder": j.harder, "travel_cm": j.travel_change, "key": key}
    cached.write_text(json.dumps(result, indent=1))
    return result


def pooled_harder(run_dirs: list[Path]) -> tuple[dict[str, dict], float]:
    """Rung 3's goal verdict over several runs (seeds): each run's :func:`harder_goals`, and the
    one-sided p of their combined evidence (Stouffer: the runs' z summed over sqrt(runs), each z
    the judge's two-proportion z, first tenth minus last). A small
    effect that one run's 300 + 300 goals detect only sometimes shows up here when it is there in
    every run. Returns (run folder -> verdict, combined p)."""
    unique = {}  # a run named twice (or through a link) counts once
    for run in run_dirs:
        unique.setdefault(Path(run).resolve(), Path(run))
    verdicts = {str(run): harder_goals(run) for run in unique.values()}
    z = [v["z"] for v in verdicts.values()]
    return verdicts, (one_sided_p(sum(z) / math.sqrt(len(z))) if z else math.nan)


def describe_pooled(verdicts: dict[str, dict], combined_p: float) -> str:
    """:func:`pooled_harder`'s result as a markdown table and one line."""
    lines = ["| run | judge's rule | final Bob, first -> last tenth | one-sided p | harder | block travel cm (p) |",
             "|---|---|---|---:|---|---|"]
    for run, v in verdicts.items():
        t = v["travel_cm"]
        lines.append(f"| {run} | {v['rule']} | {v['first']:.3f} -> {v['last']:.3f} | {v['p']:.3f} | "
                     f"{'yes' if v['harder'] else 'no'} | {t['first']:.1f} -> {t['last']:.1f} ({t['p']:.2g}) |")
    fewer = sum(v["last"] < v["first"] for v in verdicts.values())
    lines += ["", f"Late goals solved less often in {fewer} of {len(verdicts)} runs; combined one-sided p = {combined_p:.2g} "
                  f"(Stouffer): {'harder' if combined_p < 0.05 else 'not measurably harder'} over these runs."]
    return "\n".join(lines)


def run_rung(rung: Rung, out: Path, seed: int, overrides: list[str]) -> RungResult:
    run_dir = out / f"rung{rung.number}"
    args = [f"experiment={rung.experiment}", f"seed={seed}", f"hydra.run.dir={run_dir}", "logger.wandb.mode=disabled",
            "logger.progress=lines", *rung.settings, *overrides]
    command = "python -m selfplay.train " + " ".join(args)
    print(f"rung {rung.number}: {command}", file=sys.stderr, flush=True)
    log = out / f"rung{rung.number}.log"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "selfplay.train", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                       env={**os.environ, "WANDB_ERROR_REPORTING": "false"}, check=True)
    return summarise(rung, run_dir, command)


def rung0_summary(path: Path, minutes: float = math.nan) -> dict:
    """The numbers the ladder table shows from ``benchmarks/ladder_pipeline.py``'s rung0.json."""
    data = json.loads(path.read_text())
    final = data["summary"]["final"]
    if math.isnan(minutes):
        minutes = sum(w for arm in final.values() for w in arm["wall_s"].values()) / 60
    return {"task": data["env"], "steps": data["steps"], "seeds": data["seeds"], "ours_final": final["ours"]["mean"],
            "sb3_final": final["sb3"]["mean"], "ours_range": (final["ours"]["min"], final["ours"]["max"]),
            "sb3_range": (final["sb3"]["min"], final["sb3"]["max"]),
            "within_noise": data["summary"]["within_seed_noise"], "minutes": minutes}


def report(results: list[RungResult], rung0: dict | None, out: Path) -> str:
    lines = ["| rung | what | metric | start | end | target | met | minutes (budget) | env steps |",
             "|---|---|---|---:|---:|---:|---|---:|---:|"]
    if rung0:
        lines.append(f"| 0 | pipeline vs SB3 PPO.learn ({rung0['task']}, {len(rung0['seeds'])} seeds) | final return ours / SB3 | — | "
                     f"{rung0['ours_final']:.0f} / {rung0['sb3_final']:.0f} | within seed noise | "
                     f"{'yes' if rung0['within_noise'] else 'no'} | {rung0['minutes']:.1f} | {rung0['steps']:,} per run |")
    for r in results:
        lines.append(f"| {r.rung} | {r.what} | {r.metric} | {r.start:.2f} | {r.end:.2f} | {r.target:.2f} | "
                     f"{'yes' if r.met else 'no'} | {r.minutes:.1f} ({r.minutes_budget:.0f}) | {r.env_steps:,} |")
    for r in results:
        for key, (start, end) in r.extra.items():
            lines.append(f"\nRung {r.rung}, {key}: {start:.3f} at the start, {end:.3f} at the end.")
    for r in results:
        if r.harder:
            h, travel = r.harder, r.harder["travel_cm"]
            lines.append(f"\nRung {r.rung}, harder goals: {'yes' if h['harder'] else 'no'}. The run's final Bob ({h['rule']} rule) "
                         f"solved {h['first']:.3f} of {h['goals'][0]} goals from the first tenth and {h['last']:.3f} of "
                         f"{h['goals'][1]} from the last (one-sided p = {h['p']:.3f}); the block's travel "
                         f"{travel['first']:.1f} -> {travel['last']:.1f} cm (one-sided p = {travel['p']:.2g}).")
    for r in results:
        lines.append(f"\nRung {r.rung} command: `{r.command}`")
    text = "\n".join(lines) + "\n"
    (out / "ladder.md").write_text(text)
    (out / "ladder.json").write_text(json.dumps({"rung0": rung0, "rungs": [asdict(r) for r in results]}, indent=1))
    _plot(results, out / "ladder.png")
    return text


def _plot(results: list[RungResult], path: Path) -> None:
    if not results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.4), squeeze=False)
    for ax, r in zip(axes[0], results):
        minutes = [m for m, _ in r.curve]
        values = [v for _, v in r.curve]
        ax.plot(minutes, values, lw=0.8, alpha=0.5)
        width = max(5, len(values) // 10)
        windows = [[v for v in values[max(0, i - width + 1): i + 1] if not math.isnan(v)] for i in range(len(values))]
        smooth = [sum(w) / len(w) if w else math.nan for w in windows]  # updates without a goal of the kind are skipped
        ax.plot(minutes, smooth, lw=2)
        ax.axhline(r.target, color="k", ls="--", lw=1)
        ax.axvline(r.minutes_budget, color="grey", ls=":", lw=1)
        ax.set(title=f"rung {r.rung}: {r.what}", xlabel="training minutes", ylabel=r.metric, ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rungs", type=int, nargs="*", default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ladder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hydra overrides for rungs 1-3")
    parser.add_argument("--report-only", action="store_true", help="summarise finished runs under --out")
    parser.add_argument("--judge-goals", type=Path, nargs="+", metavar="RUN",
                        help="only rung 3's goal verdict, for each of these self-play run folders and combined")
    args = parser.parse_args(argv)
    if args.judge_goals:
        for run in args.judge_goals:
            if not (run / "goals.csv").is_file():
                raise SystemExit(f"{run}: not a self-play run folder (no goals.csv)")
        try:
            print(describe_pooled(*pooled_harder(args.judge_goals)))
        except FileNotFoundError as error:  # a run without a complete checkpoint
            raise SystemExit(f"no Bob to judge with: {error}") from None
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    rung0 = None
    if 0 in args.rungs and not args.report_only:
        from ladder_pipeline import rung0 as run_rung0

        start = time.perf_counter()
        run_rung0(args.out / "rung0", seeds=[0, 1, 2])
        minutes = (time.perf_counter() - start) / 60
        rung0 = rung0_summary(args.out / "rung0" / "rung0.json", minutes)
    elif (args.out / "rung0" / "rung0.json").exists():
        rung0 = rung0_summary(args.out / "rung0" / "rung0.json")
    results = []
    for number in [n for n in args.rungs if n in RUNGS]:
        rung = RUNGS[number]
        if args.report_only:
            if not (args.out / f"rung{number}" / "metrics.csv").is_file():
                raise SystemExit(f"{args.out / f'rung{number}'}: no rung {number} run to report (no metrics.csv); run it first")
            command = f"python -m selfplay.train experiment={rung.experiment} (see {args.out / f'rung{number}.log'})"
            results.append(summarise(rung, args.out / f"rung{number}", command))
        else:
            results.append(run_rung(rung, args.out, args.seed, args.set))
    print(report(results, rung0, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
