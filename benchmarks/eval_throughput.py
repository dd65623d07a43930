"""Zero-shot evaluation throughput: the parallel evaluator with Bob against random actions through
the same machinery, and against the sequential ``evaluate_task``.

    python benchmarks/eval_throughput.py [--task Tabletop/Push1-v0] [--trials 100] [--sequential-trials 25]
                                         [--repeats 3] [--workers N] [--games-per-worker 8]
                                         [--protocol-trials 10] [--out table.md]

Bob is an untrained SB3 PPO Bob built as the trainer builds it from ``conf/config.yaml`` (it
fails every goal: the expensive case, each trial runs to the task's timeout). Contenders, in
turn within each repeat (the same task, trials and seed):

- (a) :class:`selfplay.evaluation.parallel.ParallelEvaluator` with Bob (batched inference here);
- (b) the same evaluator and games with random actions (:class:`RandomPolicy`): the ceiling;
- (c) the sequential :func:`selfplay.evaluation.evaluate_task` with Bob (batch-1 inference).

Each rate is env steps / wall time of a whole ``evaluate_task`` call (game builds included);
beside it the CPU time per env step of the processes involved (main + workers), and the cores
they kept busy (CPU time / wall time): on a shared machine the rates say what this machine gave,
the CPU time what the work costs.
Reports medians over repeats and the median of per-repeat ratios a/b (target >= 0.8) and a/c.
With ``--protocol-trials K > 0`` it then runs the whole protocol (all holdouts) with Bob at K
trials per task and extrapolates its wall time to 100 trials.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from train_throughput import benchmark_config, report  # noqa: E402

from selfplay.evaluation import BobPolicy, evaluate_task, resolve_tasks  # noqa: E402
from selfplay.game import BOB  # noqa: E402
from selfplay.evaluation.parallel import GAMES_PER_WORKER, ParallelEvaluator, RandomPolicy, default_workers  # noqa: E402
from selfplay.learning import agent_observation_space, build_learner  # noqa: E402
from selfplay.vec_env import make_game  # noqa: E402
from tabletop_env import make_task  # noqa: E402


def untrained_bob() -> BobPolicy:
    """Greedy Bob: an SB3 PPO model as the trainer builds it from the default config."""
    cfg = benchmark_config([])
    game = make_game(cfg, seed=0)
    return BobPolicy(build_learner(cfg, BOB, agent_observation_space(game.observation_space), game.action_space))


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, s) used so far by this process and the processes ``pids``."""
    total = time.process_time()
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            utime, stime = f.read().rsplit(")", 1)[1].split()[11:13]
        total += (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return total


def timed(run, pids: list[int]) -> tuple[float, int, float, float]:
    """(env steps/s, env steps, seconds, CPU ms per env step of this process and ``pids``) of
    ``run()``, which returns ``(TaskResult, frames)``."""
    start, cpu = time.perf_counter(), cpu_seconds(pids)
    result, _ = run()
    seconds, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu
    return result.steps / seconds, result.steps, seconds, 1000 * cpu / result.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Tabletop/Push1-v0")
    parser.add_argument("--trials", type=int, default=100, help="trials per call of (a) and (b)")
    parser.add_argument("--sequential-trials", type=int, default=25, help="trials per call of (c)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--games-per-worker", type=int, default=GAMES_PER_WORKER)
    parser.add_argument("--protocol-trials", type=int, default=0, help="then run all holdouts at this many trials (0: skip)")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bob = untrained_bob()
    names = {"a": "parallel, Bob (PPO, batched)", "b": "parallel, random actions", "c": "sequential evaluate_task, Bob"}
    rates: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}  # CPU ms per env step
    with ParallelEvaluator(args.workers, args.games_per_worker) as engine:
        runs = {
            "a": lambda seed: engine.evaluate_task(bob, args.task, args.trials, seed=seed),
            "b": lambda seed: engine.evaluate_task(RandomPolicy(), args.task, args.trials, seed=seed),
            "c": lambda seed: evaluate_task(bob, args.task, args.sequential_trials, seed=seed),
        }
        engine.evaluate_task(bob, args.task, 2 * args.workers, seed=99)  # warm-up: start the workers
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))  # no contender always first
            for key in order:
                rate, steps, seconds, per_step = timed(lambda: runs[key](repeat), engine.pids if key != "c" else [])
                rates[key].append(rate)
                cpu[key].append(per_step)
                print(f"repeat {repeat + 1} ({key}) {names[key]}: {rate:.0f} steps/s ({steps} steps in {seconds:.1f} s, "
                      f"{per_step:.2f} CPU ms per step)", flush=True)
        protocol = None
        if args.protocol_trials > 0:
            tasks = resolve_tasks(None)
            start = time.perf_counter()
            steps = sum(engine.evaluate_task(bob, t, args.protocol_trials, seed=0)[0].steps for t in tasks)
            protocol = (len(tasks), steps, time.perf_counter() - start)
    ratios_ab = [a / b for a, b in zip(rates["a"], rates["b"])]
    ratios_ac = [a / c for a, c in zip(rates["a"], rates["c"])]
    median = {k: statistics.median(v) for k, v in rates.items()}
    lines = [
        f"{args.task}, {args.workers} workers x {args.games_per_worker} games, {args.trials} trials per call "
        f"((c): {args.sequential_trials}), median of {args.repeats} repeats",
        "",
        "| contender | env steps/s | CPU ms per env step (all its processes) | cores busy |",
        "|---|---:|---:|---:|",
        *[f"| ({k}) {names[k]} | {median[k]:.0f} | {statistics.median(cpu[k]):.2f} | "
          f"{statistics.median(r * c / 1000 for r, c in zip(rates[k], cpu[k])):.2f} |" for k in names],
        f"| ratio a / b (target >= 0.80) | {statistics.median(ratios_ab):.2f} | | |",
        f"| ratio a / c (speed-up over sequential) | {statistics.median(ratios_ac):.2f} | | |",
        "",
        "Per repeat (steps/s, a / b / c): " + ", ".join(
            f"{a:.0f} / {b:.0f} / {c:.0f}" for a, b, c in zip(rates["a"], rates["b"], rates["c"])),
    ]
    # A Bob that fails every goal runs each trial to its task's timeout: 100 x the sum of timeouts.
    full_steps = 100 * sum(make_task(t).max_episode_steps for t in resolve_tasks(None))
    lines.append(f"Full protocol (13 holdouts x 100 trials, Bob failing every goal: {full_steps:,} env steps): "
                 f"~{full_steps / median['a'] / 60:.0f} min at (a)'s rate, ~{full_steps / median['c'] / 60:.0f} min at (c)'s "
                 "(estimates from steps/s).")
    if protocol is not None:
        n, steps, seconds = protocol
        lines.append(f"Measured: all {n} holdouts x {args.protocol_trials} trials with (a): {steps:,} env steps in "
                     f"{seconds:.0f} s ({steps / seconds:.0f} steps/s); x {100 / args.protocol_trials:g} for 100 trials: "
                     f"~{seconds * 100 / args.protocol_trials / 60:.0f} min.")
    report(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
