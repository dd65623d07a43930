"""Self-play training throughput: the whole loop against the same games with random actions.

    python benchmarks/train_throughput.py [--steps 8192] [--repeats 3] [--n-games 16] [--width 64] [--vec-env dummy]

Both contenders step the same vectorised ``SelfPlayGame`` instances (SB3 ``DummyVecEnv`` or
``SubprocVecEnv``) in one process, interleaved per repeat. "random" draws uniform
multi-discrete actions; "loop" is :class:`selfplay.trainer.Trainer` (policy inference for
whichever agent's turn it is, bookkeeping, PPO + ABC updates for both agents). Reports medians of
env steps per second, their ratio (target >= 0.70) and where the loop's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfplay.config import make_config  # noqa: E402
from selfplay.trainer import Trainer  # noqa: E402


def random_rate(trainer: Trainer, steps: int, rng: np.random.Generator) -> float:
    venv = trainer.venv
    n, bins = venv.num_envs, int(venv.action_space.nvec[0])
    actions = rng.integers(0, bins, size=(steps // n + 1, n, 6))
    start = time.perf_counter()
    for k in range(steps // n):
        venv.step(actions[k])
    return (steps // n) * n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="env steps per contender per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-games", type=int, default=16)
    parser.add_argument("--vec-env", default="dummy", choices=["dummy", "subproc"])
    parser.add_argument("--rollout-steps", type=int, default=2048)
    parser.add_argument("--width", type=int, default=64, help="object-set network width (both agents)")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    overrides = {
        "trainer.n_games": args.n_games, "trainer.vec_env": args.vec_env, "trainer.rollout_steps": args.rollout_steps,
        "trainer.total_steps": 10**9, "trainer.checkpoint_every": 10**6,
        "game.alice_steps": 50, "game.bob_steps_per_object": 100, "game.max_goals": 5,
        "alice.batch_size": 512, "bob.batch_size": 512, "alice.width": args.width, "bob.width": args.width,
        "alice.head": f"[{args.width}]", "bob.head": f"[{args.width}]", "logger.wandb.mode": "disabled", "logger.progress": "lines",
    }
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(make_config(**overrides), Path(folder))
        trainer._open_logs()
        rng = np.random.default_rng(0)
        random_rate(trainer, 512, rng)  # warm-up
        trainer.iteration()
        rates: dict[str, list[float]] = {"random": [], "loop": []}
        parts: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            rates["random"].append(random_rate(trainer, args.steps, rng))
            start, steps0 = time.perf_counter(), trainer.counters["env_steps"]
            seconds = {"simulation": 0.0, "inference": 0.0, "bookkeeping": 0.0, "update": 0.0}
            while trainer.counters["env_steps"] - steps0 < args.steps:
                row = trainer.iteration()
                for key in ("simulation", "inference", "bookkeeping"):
                    seconds[key] += row[f"time/{key}_s"]
                seconds["update"] += row["time/update_s"]
            elapsed = time.perf_counter() - start
            rates["loop"].append((trainer.counters["env_steps"] - steps0) / elapsed)
            seconds["other"] = elapsed - sum(seconds.values())
            for key, value in seconds.items():
                parts.setdefault(key, []).append(value / elapsed)
            print(f"repeat {repeat + 1}: random {rates['random'][-1]:.0f} steps/s, loop {rates['loop'][-1]:.0f} steps/s", flush=True)
        trainer.close()
    random_median, loop_median = statistics.median(rates["random"]), statistics.median(rates["loop"])
    ratio = statistics.median(l / r for l, r in zip(rates["loop"], rates["random"]))
    lines = [
        f"{args.n_games} games, {args.vec_env} VecEnv, width {args.width}, rollout {args.rollout_steps} steps per update, {args.steps} steps per repeat, median of {args.repeats}",
        "",
        "| contender | env steps/s |",
        "|---|---:|",
        f"| random actions | {random_median:.0f} |",
        f"| whole self-play loop | {loop_median:.0f} |",
        f"| ratio loop / random | {ratio:.2f} |",
        "",
        "Where the loop's time goes (median share of wall time):",
        "",
        "| part | share |",
        "|---|---:|",
        *[f"| {key} | {100 * statistics.median(values):.1f} % |" for key, values in parts.items()],
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
