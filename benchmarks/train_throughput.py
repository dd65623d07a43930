"""Self-play training throughput: the whole loop against the same games with random actions.

    python benchmarks/train_throughput.py [--steps 8192] [--repeats 3] [--set trainer.n_games=8 ...]

Both contenders step the same vectorised ``SelfPlayGame`` instances (SB3 ``DummyVecEnv`` or
``SubprocVecEnv``) in one process, interleaved per repeat. "random" draws uniform
multi-discrete actions; "loop" is :class:`selfplay.training.Trainer` (policy inference for
whichever agent's turn it is, bookkeeping, PPO + ABC updates for both agents), configured as
``python -m selfplay.train`` is by default (selfplay/conf/config.yaml) plus --set overrides. Reports
medians of env steps per second, their ratio (target >= 0.70) and where the loop's time goes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfplay.config import compose_config  # noqa: E402
from selfplay.training import Trainer  # noqa: E402


def random_rate(trainer: Trainer, steps: int, rng: np.random.Generator) -> float:
    venv = trainer.venv
    n, bins = venv.num_envs, int(venv.action_space.nvec[0])
    actions = rng.integers(0, bins, size=(steps // n + 1, n, 6))
    start = time.perf_counter()
    for k in range(steps // n):
        venv.step(actions[k])
    return (steps // n) * n / (time.perf_counter() - start)


def loop_rate(trainer: Trainer, steps: int) -> tuple[float, dict[str, float]]:
    """Whole-loop env steps/s over at least ``steps`` env steps of ``Trainer.iteration()``, and
    each part's share of the wall time (simulation, inference, bookkeeping, update, other)."""
    start, steps0 = time.perf_counter(), trainer.counters["env_steps"]
    seconds = {"simulation": 0.0, "inference": 0.0, "bookkeeping": 0.0, "update": 0.0}
    while trainer.counters["env_steps"] - steps0 < steps:
        row = trainer.iteration()
        for key in ("simulation", "inference", "bookkeeping"):
            seconds[key] += row[f"time/{key}_s"]
        seconds["update"] += row["time/update_s"]
    elapsed = time.perf_counter() - start
    seconds["other"] = elapsed - sum(seconds.values())
    return (trainer.counters["env_steps"] - steps0) / elapsed, {key: value / elapsed for key, value in seconds.items()}


def benchmark_config(overrides: list[str]):
    """``selfplay/conf/config.yaml`` plus ``overrides``, made to run indefinitely without evaluations,
    checkpoints or wandb."""
    return compose_config([*overrides, "trainer.total_steps=1000000000", "trainer.checkpoint_every=1000000", "eval.every=0",
                           "logger.wandb.mode=disabled", "logger.progress=lines"])


def report(lines: list[str], out: str | None) -> None:
    """Print a markdown table and, with ``out``, write it there too."""
    table = "\n".join(lines)
    print(table)
    if out:
        Path(out).write_text(table + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="env steps per contender per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. trainer.n_games=8 trainer.vec_env=subproc")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    cfg = benchmark_config(args.set)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, Path(folder))
        trainer._open_logs()
        rng = np.random.default_rng(0)
        random_rate(trainer, 512, rng)  # warm-up
        trainer.iteration()
        rates: dict[str, list[float]] = {"random": [], "loop": []}
        parts: dict[str, list[float]] = {}
        for repeat in range(args.repeats):
            rates["random"].append(random_rate(trainer, args.steps, rng))
            rate, shares = loop_rate(trainer, args.steps)
            rates["loop"].append(rate)
            for key, value in shares.items():
                parts.setdefault(key, []).append(value)
            print(f"repeat {repeat + 1}: random {rates['random'][-1]:.0f} steps/s, loop {rates['loop'][-1]:.0f} steps/s", flush=True)
        trainer.close()
    random_median, loop_median = statistics.median(rates["random"]), statistics.median(rates["loop"])
    ratio = statistics.median(l / r for l, r in zip(rates["loop"], rates["random"]))
    lines = [
        f"{cfg.trainer.n_games} games, {cfg.trainer.vec_env} VecEnv, width {cfg.bob.width}, rollout {cfg.trainer.rollout_steps} "
        f"steps per update, minibatch {cfg.bob.batch_size}, T = {cfg.game.alice_steps}, {args.steps} steps per repeat, "
        f"median of {args.repeats}; overrides: {' '.join(args.set) or 'none'}",
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
    report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
