"""Does self-play learn? Holdout success against env steps for four arms, same budget and seeds.

    python benchmarks/learning.py --steps 1000000 --seeds 0 --jobs 2      # ~1-2 h on 2 cores
    python benchmarks/learning.py --report-only                           # redo plot + table
    python benchmarks/learning.py --out runs/ablation --seeds 0 1 2 --steps 700000 --eval-every 140000 \
        --set experiment=ladder_full_sac_position abc.q_filter=true trainer.time_limit_minutes=0   # the off-policy Bob's arms

Arms (each a run folder under --out, default runs/learning/), all on the default config of
selfplay/conf/config.yaml plus --set overrides (same workspace, budget and seeds):
  selfplay_abc     the method: self-play with ABC (abc.enabled=true)
  uniform          teacher=uniform: Bob alone on hand-designed random goals, no Alice
  selfplay_no_abc  self-play without ABC (abc.enabled=false)
  sac_her          what a user would pick instead: SB3 SAC + HER trained directly on
                   Tabletop/Push1-v0 (continuous actions) in the same workspace, same env-step budget
Every arm is evaluated zero-shot with the same protocol (selfplay.evaluate, in the config's
workspace) every --eval-every env steps on Push1 and PickAndPlace1 (the curves), and its last
checkpoint once more with --final-trials trials (the table: success and object-goal distance),
beside a uniformly random Bob. With several seeds, the curves are the mean over seeds with a
min-max band, and the table adds each arm's mean +- sd over seeds and the Wilson interval of all
its goals pooled. Writes <out>/learning.png and <out>/learning.md (copy them into benchmarks/ to
keep them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from selfplay.config import compose_config as compose

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0"]
SELFPLAY_ARMS = {
    "selfplay_abc": ["abc.enabled=true"],
    "uniform": ["teacher=uniform"],
    "selfplay_no_abc": ["abc.enabled=false"],
}


def selfplay_command(arm: str, seed: int, args) -> list[str]:
    overrides = [*args.set, *SELFPLAY_ARMS[arm]]
    rollout = compose(overrides).trainer.rollout_steps
    tasks = "[" + ",".join(TASKS) + "]"
    return [
        sys.executable, "-m", "selfplay.train", *overrides, f"seed={seed}", f"trainer.total_steps={args.steps}",
        f"eval.every={max(1, args.eval_every // rollout)}", f"eval.trials={args.trials}", f"eval.tasks={tasks}",
        "logger.progress=lines", "trainer.checkpoint_every=50", f"hydra.run.dir={args.out / f'{arm}-s{seed}'}", f"name={arm}",
    ]


def run_sac(seed: int, args) -> None:
    """SAC + HER on Push1, evaluated with the same protocol; writes metrics.csv like the trainer."""
    import gymnasium as gym
    import torch as th
    from gymnasium.wrappers import FilterObservation
    from stable_baselines3 import SAC, HerReplayBuffer

    from selfplay.evaluation import evaluate_task

    th.set_num_threads(1)
    steps, eval_every, trials = args.steps, args.eval_every, args.trials
    workspace = compose(args.set).env.workspace()
    folder = args.out / f"sac_her-s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    # The goal-env keys only (the structured keys repeat the same numbers).
    env = FilterObservation(gym.make("Tabletop/Push1-v0", **workspace), ["observation", "achieved_goal", "desired_goal"])
    # One gradient step per 32 env steps: at SAC's default of one per step, a gradient step
    # (~80 ms on this CPU) would make the budget take ~10 hours.
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                learning_starts=1000, batch_size=256, train_freq=32, gradient_steps=1, gamma=0.98,
                buffer_size=min(steps, 1_000_000), policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")
    rows = []
    keys = ("observation", "achieved_goal", "desired_goal")
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = None
        done = 0
        while done < steps:
            chunk = min(eval_every, steps - done)
            start = time.perf_counter()
            model.learn(total_timesteps=chunk, reset_num_timesteps=False)
            done += chunk
            row = {"env_steps": done, "time/sps": chunk / (time.perf_counter() - start)}
            for task in TASKS:
                act = lambda obs: model.predict({k: obs[k] for k in keys}, deterministic=True)[0]  # noqa: E731
                result, _ = evaluate_task(act, task, trials, seed=seed, env_kwargs=workspace)
                row[f"eval/{task}/success"] = result.success_rate
            rows.append(row)
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            print(f"sac_her-s{seed}: {done} steps {row}", flush=True)
    model.save(folder / "sac.zip")


def arm_command(arm: str, seed: int, args) -> list[str]:
    if arm == "sac_her":
        return [sys.executable, str(Path(__file__)), "--sac-only", "--steps", str(args.steps), "--seeds", str(seed),
                "--eval-every", str(args.eval_every), "--trials", str(args.trials), "--out", str(args.out),
                "--set", *args.set]
    return selfplay_command(arm, seed, args)


def launch(name: str, command: list[str], args) -> str:
    log = args.out / f"{name}.log"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}
    with open(log, "w") as f:
        f.write(" ".join(command) + "\n")
        f.flush()
        code = subprocess.call(command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    return f"{name}: exit {code}"


def read_curves(out: Path) -> dict[str, list[dict]]:
    curves = {}
    for metrics in sorted(out.glob("*-s*/metrics.csv")):
        with open(metrics) as f:
            rows = [r for r in csv.DictReader(f) if r.get(f"eval/{TASKS[0]}/success") not in (None, "", "nan")]
        # A resumed run logs again from its last checkpoint: the later row for a step wins.
        by_step = {int(float(r["env_steps"])): r for r in rows}
        curves[metrics.parent.name] = [by_step[k] for k in sorted(by_step)]
    return curves


def final_evaluation(args) -> dict[str, dict]:
    """Each arm's last checkpoint (and a uniformly random Bob) on TASKS with --final-trials
    trials, the full protocol, in the config's workspace; cached in <arm>/eval/final.json."""
    import torch

    from selfplay.evaluation import BobPolicy, evaluate_task, load_bob

    torch.set_num_threads(1)  # batch-1 inference: more threads only contend with the runs beside it
    cfg = compose(args.set)
    workspace = cfg.env.workspace()
    results = {}
    folders = sorted(p for p in args.out.glob("*-s*") if p.is_dir() and (not args.final_arms or p.name in args.final_arms))
    for folder in [*folders, args.out / "random"]:
        if folder.name == "random":
            source = "random"
            values = np.linspace(-1, 1, cfg.env.action_bins)
            rng = np.random.default_rng(0)
            act = lambda obs: values[rng.integers(len(values), size=6)]  # noqa: E731
        elif folder.name.startswith("sac_her"):
            from stable_baselines3 import SAC

            if not (folder / "sac.zip").is_file():
                continue
            source = str(folder / "sac.zip")
            model, keys = SAC.load(source, device="cpu"), ("observation", "achieved_goal", "desired_goal")
            act = lambda obs, model=model: model.predict({k: obs[k] for k in keys}, deterministic=True)[0]  # noqa: E731
        else:
            if not (folder / "checkpoints").is_dir():
                continue
            model, path = load_bob(str(folder), None)
            source, act = str(path.resolve()), BobPolicy(model, deterministic=True)
        cache = folder / "eval" / "final.json"
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if (saved["trials"], saved.get("source")) == (args.final_trials, source):
                results[folder.name] = saved["tasks"]
                continue
        tasks = {}
        for task in TASKS:
            result, _ = evaluate_task(act, task, args.final_trials, seed=1, env_kwargs=workspace)
            tasks[task] = {k: getattr(result, k) for k in ("success_rate", "ci_low", "ci_high", "goals", "mean_start_distance", "mean_final_distance")}
            print(f"{folder.name} {task}: {100 * result.success_rate:.1f} % of {result.goals} goals, "
                  f"distance {100 * result.mean_start_distance:.1f} -> {100 * result.mean_final_distance:.1f} cm", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"trials": args.final_trials, "source": source, "tasks": tasks}, indent=2))
        results[folder.name] = tasks
    return results


TRAINING_KEYS = {
    "alice/valid_goal_rate": "Alice valid-goal rate",
    "bob/success_rate": "Bob success on training goals",
    "abc/demonstrations": "ABC demonstrations / update",
    "bob/entropy_loss": "Bob entropy (nats)",
    "alice/entropy_loss": "Alice entropy (nats)",
}


def training_table(out: Path, window: int = 20) -> list[str]:
    """Where each arm stands: training metrics, means over its first and last ``window`` updates."""
    lines = [f"Training metrics, first -> last {window} updates (entropy: uniform = 6 ln 11 = 14.39 nats):", "",
             "| arm | " + " | ".join(TRAINING_KEYS.values()) + " |", "|---|" + "---|" * len(TRAINING_KEYS)]
    for metrics in sorted(out.glob("*-s*/metrics.csv")):
        with open(metrics) as f:
            rows = list(csv.DictReader(f))
        if not rows or "bob/success_rate" not in rows[0]:
            continue
        cells = []
        for key in TRAINING_KEYS:
            means = []
            for part in (rows[:window], rows[-window:]):
                values = [float(r[key]) for r in part if r.get(key) not in (None, "", "nan")]
                means.append(abs(float(np.mean(values))) if values else float("nan"))  # entropy is logged as its negative
            cells.append("—" if np.isnan(means[1]) else f"{means[0]:.2f} -> {means[1]:.2f}")
        lines.append(f"| {metrics.parent.name} | " + " | ".join(cells) + " |")
    return lines


def arm_name(run: str) -> str:
    """``selfplay_abc-s2`` -> ``selfplay_abc``: runs of one arm differ only in the seed."""
    return run.rsplit("-s", 1)[0]


def by_arm(runs: dict) -> dict[str, dict]:
    """``{run: value}`` grouped as ``{arm: {run: value}}``, arms in first-seen order."""
    arms: dict[str, dict] = {}
    for run, value in runs.items():
        arms.setdefault(arm_name(run), {})[run] = value
    return arms


def seed_band(rows_by_seed: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Env steps every seed evaluated at, and the mean, min and max of ``key`` over seeds there."""
    steps = sorted(set.intersection(*({int(float(r["env_steps"])) for r in rows} for rows in rows_by_seed)))
    table = np.array([[float(next(r for r in rows if int(float(r["env_steps"])) == s)[key]) for s in steps]
                      for rows in rows_by_seed])
    return np.array(steps), table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def arm_summary(runs: dict[str, dict], task: str) -> str:
    """One arm's final success on ``task`` over its seeds: mean, sd, range, and the Wilson interval
    of all its goals pooled."""
    from selfplay.evaluation.protocol import wilson_interval

    rates = np.array([tasks[task]["success_rate"] for tasks in runs.values()])
    goals = sum(tasks[task]["goals"] for tasks in runs.values())
    successes = sum(round(tasks[task]["success_rate"] * tasks[task]["goals"]) for tasks in runs.values())
    low, high = wilson_interval(successes, goals)
    spread = f" ± {100 * rates.std(ddof=1):.1f} (range {100 * rates.min():.1f}-{100 * rates.max():.1f})" if len(rates) > 1 else ""
    return f"{100 * rates.mean():.1f}{spread}; pooled {100 * successes / max(goals, 1):.1f} % ({100 * low:.0f}-{100 * high:.0f}, {goals} goals)"


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(args.out)
    final = final_evaluation(args)
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4), sharey=True)
    for ax, task in zip(axes, TASKS):
        for arm, runs in by_arm(curves).items():
            if not any(runs.values()):  # no evaluation logged yet
                continue
            steps, mean, low, high = seed_band([rows for rows in runs.values() if rows], f"eval/{task}/success")
            line, = ax.plot(steps, 100 * mean, marker="o", label=f"{arm} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            if len(runs) > 1:
                ax.fill_between(steps, 100 * low, 100 * high, color=line.get_color(), alpha=0.2)
        ax.axhline(100 * final["random"][task]["success_rate"], color="grey", linestyle="--", label="random Bob")
        ax.set_title(f"zero-shot {task.split('/')[-1]}")
        ax.set_xlabel("env steps (Alice + Bob)")
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel(f"success (%), {args.trials} trials per point\nline: mean over seeds, band: min-max")
    axes[-1].legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning.png", dpi=120)
    short = [t.split("/")[-1].removesuffix("-v0") for t in TASKS]
    lines = [
        f"Final evaluation: {args.final_trials} trials per task, seed 1 (unseen by the light evaluations), last checkpoint.",
        "",
        "| run | env steps | " + " | ".join(f"{t} success (95 % CI) | {t} distance start -> end (cm)" for t in short) + " | steps/s |",
        "|---|---:|" + "---|---|" * len(TASKS) + "---:|",
    ]
    for name, tasks in final.items():
        rows = curves.get(name, [])
        steps = f"{int(float(rows[-1]['env_steps'])):,}" if rows else "0"
        sps = np.nanmean([float(r.get("time/sps", "nan") or "nan") for r in rows]) if rows else float("nan")
        cells = []
        for task in TASKS:
            r = tasks[task]
            cells += [f"{100 * r['success_rate']:.1f} % ({100 * r['ci_low']:.0f}-{100 * r['ci_high']:.0f})",
                      f"{100 * r['mean_start_distance']:.1f} -> {100 * r['mean_final_distance']:.1f}"]
        label = "random Bob (reference)" if name == "random" else name
        lines.append(f"| {label} | {steps} | " + " | ".join(cells) + (f" | {sps:.0f} |" if rows else " | |"))
    lines += ["", "Per arm over its seeds: success % mean ± sd (range); pooled: all seeds' goals together, 95 % Wilson interval.", "",
              "| arm | seeds | " + " | ".join(short) + " |", "|---|---:|" + "---|" * len(TASKS)]
    for arm, runs in by_arm({k: v for k, v in final.items() if k != "random"}).items():
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(arm_summary(runs, task) for task in TASKS) + " |")
    lines += ["", *training_table(args.out)]
    (args.out / "learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out / 'learning.png'} and {args.out / 'learning.md'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600_000, help="env-step budget per arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["selfplay_abc", "uniform", "selfplay_no_abc", "sac_her"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses about one core)")
    parser.add_argument("--eval-every", type=int, default=61_440, help="env steps between holdout evaluations")
    parser.add_argument("--trials", type=int, default=20, help="episodes per task per evaluation during training")
    parser.add_argument("--final-trials", type=int, default=100, help="episodes per task in the final evaluation")
    parser.add_argument("--final-arms", nargs="*", default=[], help="run folders (e.g. uniform-s0) to evaluate at the end; default: all")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning", help="folder for the arms' runs")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every arm, e.g. game.alice_steps=50")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--sac-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sac_only:
        for seed in args.seeds:
            run_sac(seed, args)
        return 0
    if not args.report_only:
        # commands first, in this thread: composing the config (hydra) is not thread-safe
        jobs = [(f"{arm}-s{seed}", arm_command(arm, seed, args)) for seed in args.seeds for arm in args.arms]
        (args.out / "settings.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2))
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: launch(*job, args), jobs):
                print(line, flush=True)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
