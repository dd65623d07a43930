"""Simulator throughput: env steps per second of ``TabletopEnv`` against panda-gym and the raw bound.

Run from the repository root (takes about 3-5 minutes on 2 cores)::

    python benchmarks/env_throughput.py                    # median of 5 repeats, 2000 steps each
    python benchmarks/env_throughput.py --out table.md     # also write the markdown table

What is measured (docs/benchmarks.md, section 1): environment steps per second with random
actions from each env's action space (seeded, drawn before the clock starts), resetting on
termination or truncation, all in this one process. Every contender simulates 40 ms per step.
After a warm-up, each repeat times every contender once, interleaved, so that machine noise hits
all of them alike; the table holds medians.

Contenders:

* ``TabletopEnv`` with 1, 2, 4 and 8 blocks (``Tabletop/PushN-v0``), used directly; and
  ``gymnasium.make("Tabletop/Push1-v0")`` to show what gymnasium's default wrappers cost.
* panda-gym ``PandaPush-v3`` (1 object) and ``PandaStack-v3`` (2 objects), made through
  ``gymnasium.make`` as a user would.
* The raw bound for each block count: the same PyBullet world (robot + table + blocks) of the
  same env object, stepped with bare ``stepSimulation()`` at the same physics rate with no env
  Python logic, doing the same physics work: each timed env run records (untimed) the scene
  state at its start and after each reset (``env.get_state()``) and the arm's motor targets and
  tool-pin pose after every step; right after it, the bound restores each recorded state (untimed)
  and replays the run: per step one ``env.robot._command(targets)`` and ``substeps`` x (the
  tool pin's move through the step, ``move_pin``, and ``stepSimulation``).
  The env's own run then resumes where it ended. Env overhead = 1 - env / raw; it includes the
  env's ``reset()`` (with its settling physics steps), which the bound does not replay.

Targets: >= 2x panda-gym's steps/s with 1 and 2 objects; overhead <= 20 %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable


@contextlib.contextmanager
def quiet_c_output():
    """Send fds 1 and 2 to /dev/null: pybullet's build-time banner, panda-gym's argv lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


with quiet_c_output():
    import gymnasium
    import pybullet

    from tabletop_env import TabletopEnv

    try:
        import panda_gym  # registers PandaPush-v3, PandaStack-v3
    except ImportError:  # the reference is optional for modules that import this one
        panda_gym = None

BLOCK_COUNTS = (1, 2, 4, 8)
PANDA_GYM_REFERENCE = {1: "PandaPush-v3", 2: "PandaStack-v3"}


# -- contenders: each is a function (steps) -> elapsed seconds -----------------------------------
def env_runner(env) -> Callable[[int], float]:
    """Step ``env`` with random actions from its action space, resetting when an episode ends.

    The actions are drawn before the clock starts: gymnasium's ``Box.sample`` costs tens of
    microseconds per call, a cost of the caller, not of any env (it would hit all contenders).
    """
    sample, step, reset = env.action_space.sample, env.step, env.reset

    def run(steps: int) -> float:
        actions = [sample() for _ in range(steps)]
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            if terminated or truncated:
                reset()
        return time.perf_counter() - start

    return run


def wrapper_names(env) -> str:
    """The gymnasium wrappers around ``env``, outermost first."""
    names = []
    while isinstance(env, gymnasium.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return ", ".join(names) or "none"


class TabletopPair:
    """``TabletopEnv`` used directly, and its raw bound replaying the very same trajectory.

    ``run_env`` times the env on random actions and records, untimed, the scene state at the
    start and after every reset (``env.get_state()``) and the arm's motor targets and tool-pin pose
    after every step. ``run_raw`` then restores each recorded state (untimed) and replays them with
    bare physics: per step one ``env.robot._command(targets)`` and ``substeps`` x (the pin's move,
    ``env.robot.move_pin``, and ``stepSimulation``) on the env's own PyBullet world, so both do the same physics work, apart
    from the settling steps inside ``reset()``, which count as env cost. Afterwards the env is put
    back where its own run ended.
    """

    def __init__(self, env: TabletopEnv) -> None:
        self.env = env
        self.segments: list[tuple[object, list[tuple[float, ...]]]] = []
        self.end_state = None

    def run_env(self, steps: int) -> float:
        env = self.env
        sample, step, reset = env.action_space.sample, env.step, env.reset
        robot = env.robot
        actions = [sample() for _ in range(steps)]
        targets: list[tuple[float, ...]] = []
        self.segments = [(env.get_state(), targets)]
        elapsed = 0.0
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = step(action)
            targets.append((robot.joint_targets, robot._pin_from, robot._pin_to))  # tuples; ~0.1 us
            if terminated or truncated:
                reset()
                elapsed += time.perf_counter() - start
                targets = []
                self.segments.append((env.get_state(), targets))  # untimed
                start = time.perf_counter()
        elapsed += time.perf_counter() - start
        self.end_state = env.get_state()
        return elapsed

    def run_raw(self, steps: int) -> float:
        env = self.env
        client = env.sim.client
        n = env.sim.physics.substeps
        fractions = [(k + 1) / n for k in range(n)]
        robot = env.robot
        command, move_pin = robot._command, robot.move_pin
        step_simulation = pybullet.stepSimulation
        replayed, elapsed = 0, 0.0
        for state, targets in self.segments:
            env.set_state(state)  # untimed: a restore, not simulation work
            start = time.perf_counter()
            for joint_targets, pin_from, pin_to in targets:
                command(joint_targets)
                robot._pin_from, robot._pin_to = pin_from, pin_to
                for fraction in fractions:
                    move_pin(fraction)
                    step_simulation(physicsClientId=client)
            elapsed += time.perf_counter() - start
            replayed += len(targets)
        assert replayed == steps, f"recorded {replayed} steps, asked for {steps}"
        env.set_state(self.end_state)
        return elapsed


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--steps", type=int, default=2000, help="env steps per contender per repeat")
    parser.add_argument("--steps-8", type=int, default=None, help="steps for 8 blocks (default: steps / 2)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps per contender first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the markdown table to this path")
    args = parser.parse_args(argv)
    if panda_gym is None:
        raise SystemExit("panda-gym, the reference this benchmark compares with, is not installed: "
                         "`make bench`, or pip install -c constraints.txt -e '.[bench]'")
    steps_for = {n: args.steps for n in BLOCK_COUNTS}
    steps_for[8] = args.steps_8 if args.steps_8 is not None else max(1, args.steps // 2)

    print(f"python {platform.python_version()}, pybullet API {pybullet.getAPIVersion()}, {os.cpu_count()} CPUs", flush=True)
    contenders: dict[str, tuple[Callable[[int], float], int]] = {}  # name -> (run, steps)
    envs = []
    with quiet_c_output():
        for n in BLOCK_COUNTS:
            env = TabletopEnv(task=f"Tabletop/Push{n}-v0")
            envs.append(env)
            physics = env.sim.physics
            assert abs(physics.physics_dt * physics.substeps - 0.04) < 1e-9, "expected 40 ms per env step"
            env.reset(seed=args.seed + n)
            env.action_space.seed(args.seed + n)
            pair = TabletopPair(env)
            contenders[f"tabletop-{n}"] = (pair.run_env, steps_for[n])
            contenders[f"raw-{n}"] = (pair.run_raw, steps_for[n])  # runs right after run_env
        wrapped = gymnasium.make("Tabletop/Push1-v0")
        wrapped.reset(seed=args.seed + 200)
        wrapped.action_space.seed(args.seed + 200)
        envs.append(wrapped)
        contenders["gym.make Tabletop/Push1-v0"] = (env_runner(wrapped), args.steps)
        for n, env_id in PANDA_GYM_REFERENCE.items():
            env = gymnasium.make(env_id)
            sim = env.unwrapped.sim
            assert abs(sim.timestep * sim.n_substeps - 0.04) < 1e-9, "expected 40 ms per panda-gym step"
            env.reset(seed=args.seed + 300 + n)
            env.action_space.seed(args.seed + 300 + n)
            envs.append(env)
            contenders[env_id] = (env_runner(env), args.steps)

        for run, _ in contenders.values():  # warm-up
            run(args.warmup)

    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(args.repeats):
        for name, (run, steps) in contenders.items():
            rates[name].append(steps / run(steps))
        print(f"repeat {repeat + 1}/{args.repeats}: "
              + ", ".join(f"{name} {values[-1]:.0f}" for name, values in rates.items()), flush=True)

    median = {name: statistics.median(values) for name, values in rates.items()}

    def paired(a: str, b: str) -> float:
        """Median over repeats of rate a / rate b, measured seconds apart in the same repeat."""
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    lines = [
        "| objects | tabletop steps/s | raw bound steps/s | overhead (1 - env/raw) | panda-gym reference | ratio to panda-gym |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for n in BLOCK_COUNTS:
        env_rate, raw_rate = median[f"tabletop-{n}"], median[f"raw-{n}"]
        reference, ratio = "—", "—"
        if n in PANDA_GYM_REFERENCE:
            env_id = PANDA_GYM_REFERENCE[n]
            reference = f"{env_id}: {median[env_id]:.0f}"
            ratio = f"{paired(f'tabletop-{n}', env_id):.2f}x"
        overhead = 1 - paired(f"tabletop-{n}", f"raw-{n}")
        lines.append(f"| {n} | {env_rate:.0f} | {raw_rate:.0f} | {100 * overhead:.1f} % | {reference} | {ratio} |")
    wrapped_rate = median["gym.make Tabletop/Push1-v0"]
    lines += [
        "",
        f"`gymnasium.make(\"Tabletop/Push1-v0\")` (wrappers: {wrapper_names(wrapped)}): "
        f"{wrapped_rate:.0f} steps/s, "
        f"{100 * (paired('gym.make Tabletop/Push1-v0', 'tabletop-1') - 1):+.1f} % against the direct env, "
        f"{paired('gym.make Tabletop/Push1-v0', 'PandaPush-v3'):.2f}x PandaPush-v3.",
        "",
        f"Medians of {args.repeats} interleaved repeats; {args.steps} steps per contender per repeat "
        f"({steps_for[8]} for 8 blocks) after {args.warmup} warm-up steps; 40 ms simulated per step. "
        "Overhead and ratios are medians of the per-repeat ratios (each pair measured seconds apart). "
        "Spread (min-max steps/s over repeats): "
        + "; ".join(f"{name} {min(v):.0f}-{max(v):.0f}" for name, v in rates.items())
        + ".",
    ]
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    with quiet_c_output():
        for env in envs:
            env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
