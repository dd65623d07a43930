"""Does self-play learn? Holdout success against env steps for four arms, same budget and seeds.

    python benchmarks/learning.py --steps 600000 --seeds 0 --jobs 2       # ~1 h on 2 cores
    python benchmarks/learning.py --report-only                           # redo plot + table

Arms (each a run folder under runs/learning/):
  selfplay_abc     the method (default config)
  uniform          teacher=uniform: Bob alone on hand-designed random goals, no Alice
  selfplay_no_abc  self-play without ABC (abc.enabled=false)
  selfplay_abc_fast  the method with learning rate 1e-3 and minibatch 256 (a tuning arm, not default)
  sac_her          what a user would pick instead: SB3 SAC + HER trained directly on
                   Tabletop/Push1-v0 (continuous actions), same env-step budget
Every arm is evaluated zero-shot with the same protocol (selfplay.evaluate) every
--eval-every env steps on Push1 and PickAndPlace1. Writes runs/learning/learning.png and
runs/learning/learning.md (copy them into benchmarks/ to keep them).
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

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "runs" / "learning"
TASKS = ["Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0"]
SELFPLAY_ARMS = {
    "selfplay_abc": [],
    "uniform": ["experiment=baseline_uniform"],
    "selfplay_no_abc": ["experiment=ablation_no_abc"],
    # tuning: more and larger gradient steps per env step
    "selfplay_abc_fast": ["alice.learning_rate=1e-3", "bob.learning_rate=1e-3", "alice.batch_size=256", "bob.batch_size=256"],
}


def selfplay_command(arm: str, seed: int, steps: int, eval_every_updates: int, trials: int) -> list[str]:
    tasks = "[" + ",".join(TASKS) + "]"
    return [
        sys.executable, "-m", "selfplay.train", *SELFPLAY_ARMS[arm], f"seed={seed}", f"trainer.total_steps={steps}",
        f"eval.every={eval_every_updates}", f"eval.trials={trials}", f"eval.tasks={tasks}", "logger.progress=lines",
        "trainer.checkpoint_every=20", f"hydra.run.dir={OUT / f'{arm}-s{seed}'}", f"name={arm}",
    ]


def run_sac(seed: int, steps: int, eval_every: int, trials: int) -> None:
    """SAC + HER on Push1, evaluated with the same protocol; writes metrics.csv like the trainer."""
    import gymnasium as gym
    import torch as th
    from gymnasium.wrappers import FilterObservation
    from stable_baselines3 import SAC, HerReplayBuffer

    from selfplay.evaluate import evaluate_task

    th.set_num_threads(1)
    folder = OUT / f"sac_her-s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    # The goal-env keys only (the structured keys repeat the same numbers).
    env = FilterObservation(gym.make("Tabletop/Push1-v0"), ["observation", "achieved_goal", "desired_goal"])
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
                result, _ = evaluate_task(act, task, trials, seed=seed)
                row[f"eval/{task}/success"] = result.success_rate
            rows.append(row)
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            print(f"sac_her-s{seed}: {done} steps {row}", flush=True)
    model.save(folder / "sac.zip")


def launch(job: tuple, args) -> str:
    arm, seed = job
    log = OUT / f"{arm}-s{seed}.log"
    if arm == "sac_her":
        command = [sys.executable, str(Path(__file__)), "--sac-only", "--steps", str(args.steps), "--seeds", str(seed),
                   "--eval-every", str(args.eval_every), "--trials", str(args.trials)]
    else:
        command = selfplay_command(arm, seed, args.steps, max(1, args.eval_every // 2048), args.trials)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}
    with open(log, "w") as f:
        f.write(" ".join(command) + "\n")
        f.flush()
        code = subprocess.call(command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    return f"{arm}-s{seed}: exit {code}"


def read_curves() -> dict[str, list[dict]]:
    curves = {}
    for metrics in sorted(OUT.glob("*-s*/metrics.csv")):
        with open(metrics) as f:
            rows = [r for r in csv.DictReader(f) if r.get(f"eval/{TASKS[0]}/success") not in (None, "", "nan")]
        # A resumed run logs again from its last checkpoint: the later row for a step wins.
        by_step = {int(float(r["env_steps"])): r for r in rows}
        curves[metrics.parent.name] = [by_step[k] for k in sorted(by_step)]
    return curves


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfplay.evaluate import wilson_interval

    curves = read_curves()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4), sharey=True)
    for ax, task in zip(axes, TASKS):
        for name, rows in curves.items():
            x = [int(float(r["env_steps"])) for r in rows]
            y = [100 * float(r[f"eval/{task}/success"]) for r in rows]
            ax.plot(x, y, marker="o", label=name)
        ax.set_title(f"zero-shot {task.split('/')[-1]}")
        ax.set_xlabel("env steps (Alice + Bob)")
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel(f"success (%), {args.trials} trials per point")
    axes[-1].legend()
    fig.tight_layout()
    fig.savefig(OUT / "learning.png", dpi=120)
    lines = ["| arm | env steps | " + " | ".join(f"{t.split('/')[-1]} success (95 % CI)" for t in TASKS) + " | steps/s |",
             "|---|---:|" + "---|" * len(TASKS) + "---:|"]
    for name, rows in curves.items():
        if not rows:
            continue
        last = rows[-1]
        cells = []
        for task in TASKS:
            rate = float(last[f"eval/{task}/success"])
            # goals are at least the trials; the interval uses the trials (conservative)
            low, high = wilson_interval(round(rate * args.trials), args.trials)
            cells.append(f"{100 * rate:.0f} % ({100 * low:.0f}-{100 * high:.0f})")
        sps = np.nanmean([float(r.get("time/sps", "nan") or "nan") for r in rows])
        lines.append(f"| {name} | {int(float(last['env_steps'])):,} | " + " | ".join(cells) + f" | {sps:.0f} |")
    (OUT / "learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT / 'learning.png'} and {OUT / 'learning.md'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600_000, help="env-step budget per arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["selfplay_abc", "uniform", "selfplay_no_abc", "sac_her"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses about one core)")
    parser.add_argument("--eval-every", type=int, default=61_440, help="env steps between holdout evaluations")
    parser.add_argument("--trials", type=int, default=20, help="episodes per task per evaluation")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--sac-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.sac_only:
        for seed in args.seeds:
            run_sac(seed, args.steps, args.eval_every, args.trials)
        return 0
    if not args.report_only:
        jobs = [(arm, seed) for seed in args.seeds for arm in args.arms]
        (OUT / "settings.json").write_text(json.dumps(vars(args), indent=2))
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: launch(job, args), jobs):
                print(line, flush=True)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
