"""Whole-loop throughput by game backend: Ray actors against SB3's SubprocVecEnv (and DummyVecEnv).

    python benchmarks/vec_env_throughput.py [--steps 8192] [--repeats 3] [--backends subproc ray dummy]
                                            [--set trainer.n_games=32 ray.workers=4 ...] [--out table.md]

One :class:`selfplay.training.Trainer` per backend, built from the same config (``selfplay/conf/config.yaml``
plus --set: the same games, seeds and networks), all alive in this process and measured in turn
within each repeat. For each: env steps per second of random actions through the backend
(transport and simulation only) and of the whole self-play loop (``Trainer.iteration()``: inference,
simulation, bookkeeping, PPO + ABC updates). Reports medians and the per-repeat ratio of each
backend's loop rate to SubprocVecEnv's (target for Ray: >= 0.85). Ray runs a private local
instance (no dashboard, no token authentication) with this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from train_throughput import benchmark_config, loop_rate, random_rate, report  # noqa: E402

from selfplay.training import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="env steps per backend and contender per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["subproc", "ray", "dummy"], choices=["subproc", "ray", "dummy"])
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every backend, e.g. trainer.n_games=32")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if "subproc" not in args.backends:
        parser.error("--backends must include subproc, the reference")
    configs = {name: benchmark_config([*args.set, f"trainer.vec_env={name}"]) for name in args.backends}
    random_rates: dict[str, list[float]] = {name: [] for name in args.backends}
    loop_rates: dict[str, list[float]] = {name: [] for name in args.backends}
    with tempfile.TemporaryDirectory() as folder:
        trainers = {name: Trainer(cfg, Path(folder) / name) for name, cfg in configs.items()}
        rng = np.random.default_rng(0)
        try:
            for trainer in trainers.values():
                trainer._open_logs()
                random_rate(trainer, 512, rng)  # warm-up
                trainer.iteration()
            for repeat in range(args.repeats):
                for name, trainer in trainers.items():
                    random_rates[name].append(random_rate(trainer, args.steps, rng))
                    loop_rates[name].append(loop_rate(trainer, args.steps)[0])
                print(f"repeat {repeat + 1}: " + ", ".join(
                    f"{name} loop {loop_rates[name][-1]:.0f} steps/s (random {random_rates[name][-1]:.0f})" for name in trainers), flush=True)
            places = trainers["ray"].venv.places() if "ray" in trainers else []
        finally:
            for trainer in trainers.values():
                trainer.close()
    cfg = configs["subproc"]
    labels = {"subproc": "SubprocVecEnv (one process per game)", "dummy": "DummyVecEnv (games in the learner's process)",
              "ray": f"Ray: {len(places)} actors x {cfg.trainer.n_games // max(len(places), 1)} games"}
    lines = [
        f"{cfg.trainer.n_games} games, rollout {cfg.trainer.rollout_steps} steps per update, minibatch {cfg.bob.batch_size}, "
        f"width {cfg.bob.width}, T = {cfg.game.alice_steps}; {args.steps} steps per backend and contender per repeat, "
        f"median of {args.repeats}; overrides: {' '.join(args.set) or 'none'}",
        "",
        "| backend | random actions, steps/s | whole loop, steps/s | loop ratio to SubprocVecEnv |",
        "|---|---:|---:|---:|",
    ]
    for name in args.backends:
        ratio = statistics.median(a / b for a, b in zip(loop_rates[name], loop_rates["subproc"]))
        lines.append(f"| {labels[name]} | {statistics.median(random_rates[name]):.0f} | {statistics.median(loop_rates[name]):.0f} | {ratio:.2f} |")
    report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
