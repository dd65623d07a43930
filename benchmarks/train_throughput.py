"""Self-play training throughput: the whole loop against the same games with random actions.

    python benchmarks/train_throughput.py [--steps 8192] [--repeats 3] [--set trainer.n_games=8 ...]
    python benchmarks/train_throughput.py --set experiment=selfplay_push_sac \
        --variants "" "trainer.vec_env=subproc trainer.learn_during_collection=true"

Both contenders step the same vectorised ``SelfPlayGame`` instances (SB3 ``DummyVecEnv`` or
``SubprocVecEnv``) in one process, interleaved per repeat. "random" draws uniform
multi-discrete actions; "loop" is :class:`selfplay.training.Trainer` (policy inference for
whichever agent's turn it is, bookkeeping, PPO + ABC updates for both agents), configured as
``python -m selfplay.train`` is by default (selfplay/conf/config.yaml) plus --set overrides. Reports
medians of env steps per second, their ratio (target >= 0.70) and where the loop's time goes.

With ``--variants``, the whole loop of several configs instead (each a quoted list of overrides
on top of --set; one Trainer each, all warmed up past Bob's ``learning_starts``, measured in
turn within each repeat): their rates and ratios to the first.
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
    each part's share of the wall time (simulation: waiting for the games; learning: gradient
    steps between the games' steps; update: after the rollout; inference, bookkeeping, other)."""
    start, steps0 = time.perf_counter(), trainer.counters["env_steps"]
    seconds = {"simulation": 0.0, "inference": 0.0, "bookkeeping": 0.0, "learning": 0.0, "update": 0.0}
    while trainer.counters["env_steps"] - steps0 < steps:
        row = trainer.iteration()
        for key in ("simulation", "inference", "bookkeeping", "learning"):
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


def compare_variants(variants: list[str], common: list[str], steps: int, repeats: int, warmup: int) -> list[str]:
    """Whole-loop env steps/s of each variant (overrides on top of ``common``), interleaved per
    repeat; markdown lines with medians, ratios to the first variant and time shares."""
    rates: dict[str, list[float]] = {v: [] for v in variants}
    parts: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    with tempfile.TemporaryDirectory() as folder:
        trainers = {}
        try:
            for k, variant in enumerate(variants):
                trainers[variant] = Trainer(benchmark_config([*common, *variant.split()]), Path(folder) / str(k))
                trainers[variant]._open_logs()
                while trainers[variant].counters["env_steps"] < warmup:
                    trainers[variant].iteration()
            for repeat in range(repeats):
                for variant, trainer in trainers.items():
                    rate, shares = loop_rate(trainer, steps)
                    rates[variant].append(rate)
                    for key, value in shares.items():
                        parts[variant].setdefault(key, []).append(value)
                print(f"repeat {repeat + 1}: " + ", ".join(f"{v or 'reference'} {r[-1]:.0f}" for v, r in rates.items()), flush=True)
        finally:
            for trainer in trainers.values():
                trainer.close()
    first = rates[variants[0]]
    keys = list(parts[variants[0]])
    lines = [f"Whole self-play loop, {steps} env steps per variant per repeat after {warmup} warm-up steps, median of "
             f"{repeats}; common overrides: {' '.join(common) or 'none'}", "",
             "| variant | env steps/s | ratio to the first | " + " | ".join(keys) + " |",
             "|---|---:|---:|" + "---:|" * len(keys)]
    for variant in variants:
        ratio = statistics.median(r / f for r, f in zip(rates[variant], first))
        shares = " | ".join(f"{100 * statistics.median(parts[variant][key]):.0f} %" for key in keys)
        lines.append(f"| {variant or '(none)'} | {statistics.median(rates[variant]):.0f} | {ratio:.2f} | {shares} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="env steps per contender per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. trainer.n_games=8 trainer.vec_env=subproc")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    parser.add_argument("--variants", nargs="+", default=None, metavar="OVERRIDES",
                        help='compare the whole loop of several configs: each a quoted list of overrides on top of --set ("" for none)')
    parser.add_argument("--warmup", type=int, default=8192, help="with --variants: env steps each trainer runs before measuring")
    args = parser.parse_args(argv)
    if args.variants:
        report(compare_variants(args.variants, args.set, args.steps, args.repeats, args.warmup), args.out)
        return 0
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
