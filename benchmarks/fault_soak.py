"""Fault soak: a training run under repeated random SIGKILLs, resumed each time, then verified.

    python benchmarks/fault_soak.py [--kills 20] [--in-write 0.35] [--start-up 0.15] [--out runs/fault_soak] [--seed 0]
                                    [--rollout 128] [--n-games 2] [--extra-updates 4] [--max-alive 4]

Each round starts ``python -m selfplay.train`` on one run folder (the first fresh, every later one
with ``resume=``), alternating ``SubprocVecEnv`` and ``DummyVecEnv`` games, and SIGKILLs it:
with probability ``--in-write`` inside a checkpoint write (as soon as a ``.step-N.partial``
folder appears, plus 0-30 ms), otherwise at a random moment of its life (also during start-up).
After each kill: every process of that trainer is gone within 10 s, and the newest complete
checkpoint is complete. Then a last resume runs to ``trainer.total_steps`` (the steps reached
plus ``--extra-updates`` updates and a remainder, so the last update is a short one) and the run
is verified: the final step count is exactly the budget, ``metrics.csv`` has one row per update
(updates 1..N once each, env steps rising), every checkpoint left is complete and loads (both SB3
zips and the pool), and no process of the run is left. Prints a summary and writes
``<out>/summary.json``. Sizes are flags; the defaults take about 5 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfplay.checkpoint import checkpoint_problem, complete_checkpoints, latest_checkpoint, read_counters  # noqa: E402
from selfplay.processes import descendants  # noqa: E402

TINY = ["game.alice_steps=20", "game.bob_steps_per_object=20", "game.max_goals=2", "alice.width=32", "bob.width=32",
        "alice.head=[32]", "bob.head=[32]", "alice.batch_size=32", "bob.batch_size=32", "trainer.checkpoint_every=1",
        "trainer.keep_checkpoints=3", "eval.every=0", "logger.wandb.mode=disabled", "logger.progress=lines"]
BIG = 10**9  # total_steps while killing: no round finishes on its own


def start(run: Path, log: Path, fresh: bool, args, vec_env: str, total_steps: int) -> subprocess.Popen:
    common = [f"trainer.total_steps={total_steps}", f"trainer.vec_env={vec_env}"]
    command = ([*TINY, f"trainer.rollout_steps={args.rollout}", f"trainer.n_games={args.n_games}", f"seed={args.seed}",
                f"hydra.run.dir={run}"] if fresh else [f"resume={run}"]) + common
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "WANDB_ERROR_REPORTING": "false"}
    with open(log, "a") as out:
        out.write(f"\n$ python -m selfplay.train {' '.join(command)}\n")
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "selfplay.train", *command], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def run_processes(run: Path) -> list[int]:
    """Processes whose command line names the run folder (trainers and their forked workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run) in cmdline and running(int(entry)):
                found.append(int(entry))
    return found


def _interrupted_writes(root: Path) -> set[tuple[str, int]]:
    """Folders of checkpoint writes that did not finish (name, modification time in ns)."""
    found = set()
    for folder in [*root.glob(".step-*.partial"), *root.glob(".step-*.old")]:
        try:
            found.add((folder.name, folder.stat().st_mtime_ns))
        except OSError:
            pass
    return found


def kill_round(process: subprocess.Popen, run: Path, log: Path, offset: int, moment: str, max_alive: float,
               rng: random.Random) -> dict:
    """Wait for the ``moment`` (``start-up``: 0.5-4 s after the start; ``training``: 0 to
    ``max_alive`` s after the first update; ``write``: inside a checkpoint write), SIGKILL the
    trainer; returns what was going on and what survived."""
    partials = run / "checkpoints"
    leftovers = _interrupted_writes(partials)  # from earlier kills
    in_write = moment == "write"
    deadline = time.monotonic() + (120 if in_write else rng.uniform(0.5, 4.0))
    if moment == "training":
        while process.poll() is None and time.monotonic() < deadline + 300:
            with open(log) as f:
                f.seek(offset)
                if "update " in f.read():
                    break
            time.sleep(0.1)
        deadline = time.monotonic() + rng.uniform(0.0, max_alive)
    tree: dict[int, str] = {}
    hit, scanned = False, 0.0
    while time.monotonic() < deadline and process.poll() is None:
        if time.monotonic() - scanned > 0.5:  # the trainer and its game workers, to look for them after the kill
            tree.update(descendants([process.pid]))
            scanned = time.monotonic()
        if in_write and partials.is_dir() and any(partials.glob(".step-*.partial")):
            time.sleep(rng.uniform(0.0, 0.03))
            hit = True
            break
        time.sleep(0.002 if in_write else 0.05)
    tree.update(descendants([process.pid]))
    exited_early = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    in_write_now = bool(_interrupted_writes(partials) - leftovers)
    return {"moment": moment, "saw_partial": hit, "killed_inside_write": bool(in_write_now),
            "exited_before_kill": exited_early, "processes": len(tree), "survivors": survivors(list(tree))}


def verify(run: Path, budget: int) -> dict:
    import torch as th
    from stable_baselines3 import PPO

    final = read_counters(latest_checkpoint(run))
    with open(run / "metrics.csv", newline="") as f:
        import csv

        rows = list(csv.DictReader(f))
    updates = [int(r["updates"]) for r in rows]
    steps = [int(r["env_steps"]) for r in rows]
    folders = sorted(p for p in (run / "checkpoints").iterdir() if p.is_dir())
    loadable = 0
    problems = []
    for folder in folders:
        problem = checkpoint_problem(folder)
        if problem:
            problems.append(f"{folder.name}: {problem}")
            continue
        PPO.load(folder / "alice.zip", device="cpu")
        PPO.load(folder / "bob.zip", device="cpu")
        th.load(folder / "pool.pt", weights_only=False)
        loadable += 1
    return {
        "budget": budget, "final_env_steps": final["env_steps"], "final_updates": final["updates"],
        "metrics_rows": len(rows), "rows_are_updates_1_to_n": updates == list(range(1, final["updates"] + 1)),
        "env_steps_rising": all(a < b for a, b in zip(steps, steps[1:])), "last_row_env_steps": steps[-1] if steps else None,
        "checkpoint_folders": [p.name for p in folders], "checkpoints_loadable": loadable, "checkpoint_problems": problems,
        "complete_checkpoints": [p.name for p in complete_checkpoints(run)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the last, undisturbed resume")
    parser.add_argument("--in-write", type=float, default=0.35, help="share of kills aimed inside a checkpoint write")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fault_soak")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill schedule and the run")
    parser.add_argument("--rollout", type=int, default=128, help="trainer.rollout_steps")
    parser.add_argument("--n-games", type=int, default=2, help="trainer.n_games")
    parser.add_argument("--extra-updates", type=int, default=4, help="updates the last resume runs past the steps reached")
    parser.add_argument("--start-up", type=float, default=0.15, help="share of kills during start-up (0.5-4 s after the start)")
    parser.add_argument("--max-alive", type=float, default=4.0, help="s, latest moment of a kill after the first update")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        parser.error("reads /proc: Linux only")
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run, log = out / "run", out / "train.log"
    rng = random.Random(args.seed)
    started = time.monotonic()
    rounds = []
    for k in range(args.kills):
        vec_env = "subproc" if k % 2 == 0 else "dummy"
        fresh = not (run / "config.yaml").exists()  # else resume, also when killed before the first checkpoint
        offset = log.stat().st_size if log.exists() else 0
        process = start(run, log, fresh, args, vec_env, BIG)
        draw = rng.random()
        moment = "write" if draw < args.in_write else "start-up" if draw < args.in_write + args.start_up else "training"
        result = kill_round(process, run, log, offset, moment, args.max_alive, rng)
        newest = complete_checkpoints(run)[:1] if run.exists() else []
        result.update(round=k + 1, vec_env=vec_env, fresh=fresh,
                      env_steps=read_counters(newest[0])["env_steps"] if newest else 0)
        rounds.append(result)
        print(f"kill {k + 1:>2}/{args.kills} ({vec_env:7}, {'fresh ' if fresh else 'resume'}, aimed at {moment:8}): "
              f"{'inside a checkpoint write' if result['killed_inside_write'] else 'elsewhere':26} "
              f"newest complete checkpoint at {result['env_steps']:>6} env steps; "
              f"{result['processes']} processes, survivors {result['survivors']}", flush=True)
    reached = rounds[-1]["env_steps"]
    budget = reached + args.extra_updates * args.rollout + 2 * args.n_games * (args.rollout // (4 * args.n_games))
    budget -= budget % args.n_games
    process = start(run, log, False, args, "subproc", budget)
    code = process.wait(timeout=1800)
    leftover = run_processes(run)
    summary = {
        "command": "python benchmarks/fault_soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "kills": len(rounds), "kills_inside_checkpoint_writes": sum(r["killed_inside_write"] for r in rounds),
        "kills_aimed_at_writes": sum(r["moment"] == "write" for r in rounds),
        "kills_in_start_up": sum(r["moment"] == "start-up" for r in rounds),
        "kills_before_first_checkpoint": sum(r["env_steps"] == 0 for r in rounds),
        "processes_watched": sum(r["processes"] for r in rounds), "survivors_after_kills": sum(len(r["survivors"]) for r in rounds),
        "final_exit_code": code, "leftover_processes": leftover, **verify(run, budget),
        "wall_s": round(time.monotonic() - started, 1), "rounds": rounds,
    }
    summary["ok"] = (code == 0 and not leftover and summary["survivors_after_kills"] == 0
                     and summary["final_env_steps"] == budget and summary["rows_are_updates_1_to_n"]
                     and summary["env_steps_rising"] and not summary["checkpoint_problems"]
                     and summary["checkpoints_loadable"] == len(summary["checkpoint_folders"]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
