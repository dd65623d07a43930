"""Does self-play learn, and does each part earn its place? Zero-shot holdout success against
env steps for four arms at the same budget and seeds, every point with the full protocol.

    python benchmarks/learning.py --out runs/ablation --seeds 0 1 2 --steps 1899520 \
        --marks 604160 1259520 1899520 --set experiment=selfplay_push_sac abc.q_filter=true
    python benchmarks/learning.py --out runs/ablation --report-only ...   # the same flags: evaluate what is missing, plot

Arms (each a run folder ``<arm>-s<seed>`` under --out), all on the config that --set composes
(same workspace, arm, budget and seeds):
  selfplay_abc     self-play with ABC (abc.enabled=true, abc.beta=0.05)
  uniform          teacher=uniform: Bob alone on hand-designed random goals, no Alice
  selfplay_no_abc  self-play without ABC (abc.enabled=false)
  sac_her          what a user would pick instead: SB3 SAC + HER trained directly on
                   Tabletop/Push1-v0 (continuous actions) in the same workspace and budget,
                   one torch thread, observation keys filtered to what HER relabels

Each run keeps its checkpoint at every env-step mark (``trainer.keep_steps``); once it is done,
each kept checkpoint is evaluated zero-shot exactly as ``python -m selfplay.evaluate
checkpoint=<bob.zip>`` does (Push1 and PickAndPlace1, --trials trials, seed 0, goals in a row,
the run's workspace; ``<run>/eval/step-N/results.json``), beside a uniformly random Bob.
Interrupted (Ctrl-C, SIGTERM: every run stops with a checkpoint), the same command resumes the
unfinished runs where they stopped (an off-policy Bob's and SAC + HER's replay buffers included)
and skips finished ones and evaluations already written. Writes ``<out>/learning.png`` (mean over
seeds, min-max band) and ``<out>/learning.md`` (each arm's mean +- sd over seeds and the Wilson
interval of its goals pooled); copy them into benchmarks/ to keep them. Bob acts with his mean
action (``deterministic=true``); ``--sampled`` evaluates his sampled actions instead (his policy
as trained; SAC + HER's too), into ``<run>/eval_sampled`` and ``learning_sampled.png/md``.

A campaign longer than a session: ``--keep DIR`` (e.g. benchmarks/campaign) records each run once
it has reached the budget and been evaluated in both action modes: its results at every mark,
its config and its training metrics (``DIR/<run>/``, a few hundred kB, meant for git). Runs
recorded there are not trained again, and the report includes them beside the runs under --out,
so the same command, on another day and a fresh ``--out``, continues with the missing runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from selfplay.checkpoint import complete_checkpoints, kept_for_marks, read_counters, step_of
from selfplay.config import compose_config as compose

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0"]
SELFPLAY_ARMS = {
    # beta 0.05: at 0.5 cloning cost Push1 (benchmarks/RESULTS.md, "Twelfth session")
    "selfplay_abc": ["abc.enabled=true", "abc.beta=0.05"],
    "uniform": ["teacher=uniform"],
    "selfplay_no_abc": ["abc.enabled=false"],
}
HER_KEYS = ("observation", "achieved_goal", "desired_goal")
HER_GAMES = 4  # SAC + HER's games stepped side by side
EVAL_FOLDERS = {False: "eval", True: "eval_sampled"}  # --sampled -> where a run's evaluations go
KEPT_METRICS = ("env_steps", "alice/valid_goal_rate", "bob/success_rate", "goals/moved", "goals/lifted",
                "goals/stacked", "goals/distance", "abc/demonstrations", "bob/ent_coef", "game/position_only",
                "game/rotation_tolerance", "time/elapsed_s")  # the training metrics a --keep record holds


class Stop:
    """Ctrl-C / SIGTERM: launch nothing more and pass the signal on to the runs (each then stops
    with a checkpoint)."""

    def __init__(self) -> None:
        self.received = False
        self.children: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def __call__(self, signum, frame) -> None:
        self.received = True
        with self.lock:
            for child in self.children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)


STOP = Stop()


# -- the runs -------------------------------------------------------------------------------------
def marks(args) -> list[int]:
    """Env-step marks of the curves: --marks plus the budget."""
    return sorted({*args.marks, args.steps})


def run_steps(folder: Path) -> int:
    """Env steps a self-play run has reached (its newest complete checkpoint); 0 if none."""
    checkpoints = complete_checkpoints(folder)
    return read_counters(checkpoints[0])["env_steps"] if checkpoints else 0


def selfplay_command(arm: str, seed: int, args) -> list[str] | None:
    """The training command of a self-play arm's run: fresh, a resume, or None when it is done."""
    folder = args.out / f"{arm}-s{seed}"
    budget = [f"trainer.total_steps={args.steps}", "trainer.time_limit_minutes=0"]
    if (folder / "config.yaml").is_file():
        if run_steps(folder) >= args.steps:
            return None
        return [sys.executable, "-m", "selfplay.train", f"resume={folder}", *budget, "logger.progress=lines"]
    return [sys.executable, "-m", "selfplay.train", *args.set, *SELFPLAY_ARMS[arm], f"seed={seed}", *budget,
            f"trainer.keep_steps=[{','.join(map(str, marks(args)))}]", "eval.every=0", "logger.progress=lines",
            f"hydra.run.dir={folder}", f"name={arm}"]


def sac_command(seed: int, args) -> list[str] | None:
    state = args.out / f"sac_her-s{seed}" / "latest" / "state.json"
    if state.is_file() and json.loads(state.read_text())["env_steps"] >= args.steps:
        return None
    return [sys.executable, str(Path(__file__)), "--sac-only", "--steps", str(args.steps), "--seeds", str(seed),
            "--marks", *map(str, marks(args)), "--out", str(args.out), "--set", *args.set]


def launch(name: str, command: list[str], args) -> str:
    """Run one command with its output in ``<out>/<name>.log`` (appended: a resume adds to it)."""
    if STOP.received:
        return f"{name}: not started (stopping)"
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_ERROR_REPORTING": "false",
           "OMP_NUM_THREADS": "1"}
    with open(args.out / f"{name}.log", "a") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        with STOP.lock:
            # its own session: a terminal's Ctrl-C reaches only this process, which passes on one
            # SIGTERM (a run stopped by two signals would skip its last checkpoint)
            child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            STOP.children.add(child)
        code = child.wait()
        with STOP.lock:
            STOP.children.discard(child)
    return f"{name}: exit {code}"


def run_sac(seed: int, args) -> None:
    """SB3 SAC + HER on Push1 in the config's workspace for --steps env steps, its model kept at
    every mark (``checkpoints/step-N/sac.zip``); stopped by SIGTERM / Ctrl-C, it saves model and
    replay buffer in ``latest/`` and the next call continues from there."""
    import gymnasium as gym
    import torch as th
    from gymnasium.wrappers import FilterObservation
    from stable_baselines3 import SAC, HerReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    th.set_num_threads(1)
    folder = args.out / f"sac_her-s{seed}"
    latest = folder / "latest"
    cfg = compose(args.set)  # the self-play arms' workspace and object slots
    make = lambda: FilterObservation(gym.make("Tabletop/Push1-v0", max_objects=cfg.env.max_objects, **cfg.env.workspace()), list(HER_KEYS))  # noqa: E731
    env = DummyVecEnv([make] * HER_GAMES)  # one policy call for several games: batch-1 inference was a third of the time
    if (latest / "state.json").is_file():
        model = SAC.load(latest / "sac.zip", env=env, device="cpu")
        model.load_replay_buffer(latest / "replay.pkl")
        print(f"sac_her-s{seed}: resumed at {model.num_timesteps} env steps", flush=True)
    else:
        # One gradient step per 16 env steps (SB3's step for this 256 x 256 network costs ~2.5x
        # the self-play Bob's fused one, who takes one per ~4 env steps): the budget then takes
        # about as long as a self-play run. gamma as Bob's.
        model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                    replay_buffer_kwargs={"n_sampled_goal": 4, "goal_selection_strategy": "future"},
                    learning_starts=1000, batch_size=256, train_freq=16 // HER_GAMES, gradient_steps=1, gamma=0.95,
                    buffer_size=min(args.steps, 1_000_000), policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu")

    class StopOnSignal(BaseCallback):
        """Ends ``learn`` at a stop signal; a progress line every 50,000 env steps."""

        def _on_step(self) -> bool:
            if self.num_timesteps % 50_000 < HER_GAMES:
                print(f"sac_her-s{seed}: {self.num_timesteps:,} env steps, {time.strftime('%H:%M:%S')}", flush=True)
            return not STOP.received

    signal.signal(signal.SIGTERM, STOP)
    signal.signal(signal.SIGINT, STOP)
    for mark in marks(args):
        if model.num_timesteps >= mark:
            continue
        model.learn(total_timesteps=mark - model.num_timesteps, reset_num_timesteps=False, callback=StopOnSignal())
        if STOP.received:
            break
        (folder / "checkpoints" / f"step-{mark:09d}").mkdir(parents=True, exist_ok=True)
        model.save(folder / "checkpoints" / f"step-{mark:09d}" / "sac.zip")
        print(f"sac_her-s{seed}: {model.num_timesteps} env steps", flush=True)
    partial = folder / ".latest.partial"
    partial.mkdir(parents=True, exist_ok=True)
    model.save(partial / "sac.zip")
    model.save_replay_buffer(partial / "replay.pkl")
    (partial / "state.json").write_text(json.dumps({"env_steps": model.num_timesteps}))
    if latest.exists():
        os.replace(latest, folder / ".latest.old")
    os.replace(partial, latest)
    shutil.rmtree(folder / ".latest.old", ignore_errors=True)


# -- evaluation -----------------------------------------------------------------------------------
def evaluation_points(folder: Path, args) -> dict[int, Path]:
    """A run's model at each mark: env steps -> its Bob zip (self-play) or SAC zip."""
    if folder.name.startswith("sac_her"):
        zips = sorted((folder / "checkpoints").glob("step-*/sac.zip"))
        return {step_of(z.parent): z for z in zips if step_of(z.parent) in marks(args)}
    checkpoints = {step_of(c): c for c in complete_checkpoints(folder)}
    return {step: checkpoints[step] / "bob.zip" for step in sorted(kept_for_marks(checkpoints, marks(args)))}


class HerPolicy:
    """An SB3 SAC + HER model as a batch policy of the parallel evaluation (its goal-env keys)."""

    def __init__(self, path: Path, sampled: bool = False) -> None:
        from stable_baselines3 import SAC
        from stable_baselines3.common.buffers import DictReplayBuffer

        self.sampled = sampled

        # acting needs no replay buffer (a HER one would want the training env)
        self.model = SAC.load(path, device="cpu", custom_objects={"replay_buffer_class": DictReplayBuffer,
                                                                   "replay_buffer_kwargs": {}, "buffer_size": 1})

    def act_batch(self, obs: dict[str, np.ndarray], rngs) -> np.ndarray:
        """The actor's mean actions, or (``sampled``) actions drawn with each trial's generator,
        as our Bob's sampled evaluation draws them (deterministic for a seed)."""
        from selfplay.evaluation.parallel import sampled_sac_actions

        goal_obs = {k: obs[k] for k in HER_KEYS}
        if not self.sampled:
            return self.model.predict(goal_obs, deterministic=True)[0]
        return sampled_sac_actions(self.model.actor, self.model.policy.obs_to_tensor(goal_obs)[0], rngs)


def evaluate_point(policy_path: Path | None, out: Path, args) -> dict:
    """Zero-shot results of one model (None: a uniformly random Bob) on TASKS with the protocol of
    ``python -m selfplay.evaluate``, cached in ``out/results.json``. Each evaluation runs in a
    process of its own (its game workers are forked from a process without threads)."""
    if not (out / "results.json").is_file():
        if policy_path is not None and policy_path.name == "bob.zip":
            command = [sys.executable, "-m", "selfplay.evaluate", f"checkpoint={policy_path}", f"tasks=[{','.join(TASKS)}]",
                       f"trials={args.trials}", f"workers={args.eval_workers}", "progress=false", f"out={out}",
                       f"deterministic={str(not args.sampled).lower()}"]
        else:
            command = [sys.executable, str(Path(__file__)), "--evaluate-point", str(policy_path or "random"), str(out),
                       "--trials", str(args.trials), "--eval-workers", str(args.eval_workers), *["--sampled"] * args.sampled,
                       "--set", *args.set]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})
    return json.loads((out / "results.json").read_text())


def evaluate_in_process(policy: str, out: Path, args) -> None:
    """``--evaluate-point``: a SAC + HER zip, or ``random``, through the parallel evaluation."""
    import torch

    from selfplay.evaluation.parallel import ParallelEvaluator, RandomPolicy
    from selfplay.evaluation.report import write_report

    torch.set_num_threads(1)
    cfg = compose(args.set)
    workspace = cfg.env.workspace()
    bob = RandomPolicy() if policy == "random" else HerPolicy(Path(policy), args.sampled)
    with ParallelEvaluator(args.eval_workers) as engine:
        results = [engine.evaluate_task(bob, task, args.trials, seed=0, env_kwargs=workspace, max_objects=cfg.env.max_objects)[0]
                   for task in TASKS]
    write_report(results, out, title="uniformly random actions" if policy == "random" else policy, workspace=workspace)


def eval_folder(args) -> str:
    """Where a run's evaluations are cached: ``eval`` (mean actions) or ``eval_sampled``."""
    return EVAL_FOLDERS[args.sampled]


def evaluate_run(folder: Path, args) -> dict[int, dict]:
    """Results at every mark a run has reached: env steps -> {task: result}."""
    return {step: evaluate_point(path, folder / eval_folder(args) / f"step-{step:09d}", args)
            for step, path in evaluation_points(folder, args).items()}


def run_and_evaluate(name: str, command: list[str] | None, args) -> str:
    if kept_budget(name, args) >= args.steps:  # recorded by an earlier session: nothing to train or evaluate
        return f"{name}: done before (kept in {args.keep})"
    line = launch(name, command, args) if command else f"{name}: done before"
    if not STOP.received:
        evaluate_run(args.out / name, args)
        if args.keep is not None:
            keep_run(args.out / name, args)
    return line


# -- the record of finished runs (--keep) ---------------------------------------------------------
def kept_budget(name: str, args) -> int:
    """The env-step budget a run recorded under --keep reached; 0 when it has no record."""
    record = args.keep / name / "record.json" if args.keep is not None else None
    return json.loads(record.read_text())["env_steps"] if record is not None and record.is_file() else 0


def keep_run(folder: Path, args) -> None:
    """Record a run that reached the budget under ``<keep>/<run>/``: its evaluations at every mark
    in both action modes (the missing mode is evaluated first), its config, and its training
    metrics (:data:`KEPT_METRICS`, 4 significant digits). ``record.json`` is written last: a
    record without it is incomplete and is rewritten."""
    reached = max(evaluation_points(folder, args), default=0)
    if reached < args.steps or kept_budget(folder.name, args) >= reached:  # not there yet, or recorded
        return
    target = args.keep / folder.name
    for sampled, name in EVAL_FOLDERS.items():
        for step, result in evaluate_run(folder, argparse.Namespace(**{**vars(args), "sampled": sampled})).items():
            (target / name / f"step-{step:09d}").mkdir(parents=True, exist_ok=True)
            (target / name / f"step-{step:09d}" / "results.json").write_text(json.dumps(result, indent=1))
    if (folder / "config.yaml").is_file():
        shutil.copy(folder / "config.yaml", target / "config.yaml")
    if (folder / "metrics.csv").is_file():
        with open(folder / "metrics.csv") as source, open(target / "metrics.csv", "w", newline="") as kept:
            writer = csv.writer(kept)
            writer.writerow(KEPT_METRICS)
            for row in csv.DictReader(source):
                writer.writerow([_short(row.get(key, "")) for key in KEPT_METRICS])
    (target / "record.json").write_text(json.dumps({"env_steps": reached, "marks": marks(args), "set": args.set,
                                                    "recorded": time.strftime("%Y-%m-%d %H:%M")}, indent=1))


def _short(value: str) -> str:
    """A metrics cell in 4 significant digits (integers and empty cells as they are)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.4g}"


def kept_curves(args) -> dict[str, dict[int, dict]]:
    """The runs recorded under --keep: run name -> {env steps: {task: result}} in --sampled's mode."""
    if args.keep is None:
        return {}
    curves = {}
    for record in sorted(args.keep.glob("*-s*/record.json")):
        points = sorted((record.parent / eval_folder(args)).glob("step-*/results.json"))
        curves[record.parent.name] = {step_of(p.parent): json.loads(p.read_text()) for p in points
                                      if step_of(p.parent) in marks(args)}
    return curves


# -- the report -----------------------------------------------------------------------------------
TRAINING_KEYS = {
    "alice/valid_goal_rate": "Alice valid-goal rate",
    "bob/success_rate": "Bob success on training goals",
    "abc/demonstrations": "ABC demonstrations / update",
}


def training_table(folders: list[Path], window: int = 20) -> list[str]:
    """Where each run stands: training metrics, means over its first and last ``window`` updates
    (``folders``: where to look for runs, the first holding a run wins)."""
    lines = [f"Training metrics, first -> last {window} updates:", "",
             "| run | " + " | ".join(TRAINING_KEYS.values()) + " |", "|---|" + "---|" * len(TRAINING_KEYS)]
    found: dict[str, Path] = {}
    for folder in folders:
        for metrics in folder.glob("*-s*/metrics.csv"):
            found.setdefault(metrics.parent.name, metrics)
    for _, metrics in sorted(found.items()):
        with open(metrics) as f:
            rows = list(csv.DictReader(f))
        if not rows or "bob/success_rate" not in rows[0]:
            continue
        cells = []
        for key in TRAINING_KEYS:
            means = []
            for part in (rows[:window], rows[-window:]):
                values = [float(r[key]) for r in part if r.get(key) not in (None, "", "nan")]
                means.append(float(np.mean(values)) if values else float("nan"))
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


def seed_band(curves: list[dict[int, dict]], task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Env steps every seed was evaluated at, and the mean, min and max success over seeds there."""
    steps = sorted(set.intersection(*(set(curve) for curve in curves)))
    table = np.array([[curve[s][task]["success_rate"] for s in steps] for curve in curves])
    return np.array(steps), table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def arm_summary(results: list[dict], task: str) -> str:
    """One arm's success on ``task`` over its seeds: mean, sd, range, and the Wilson interval of
    all its goals pooled."""
    from selfplay.evaluation.protocol import wilson_interval

    rates = np.array([r[task]["success_rate"] for r in results])
    goals = sum(r[task]["goals"] for r in results)
    successes = sum(round(r[task]["success_rate"] * r[task]["goals"]) for r in results)
    low, high = wilson_interval(successes, goals)
    spread = f" ± {100 * rates.std(ddof=1):.1f} (range {100 * rates.min():.1f}-{100 * rates.max():.1f})" if len(rates) > 1 else ""
    return f"{100 * rates.mean():.1f}{spread}; pooled {100 * successes / max(goals, 1):.1f} % ({100 * low:.0f}-{100 * high:.0f}, {goals} goals)"


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folders = [folder for folder in sorted(args.out.glob("*-s*")) if folder.is_dir()]
    if args.keep is not None:  # runs trained without --keep are recorded too, once at the budget
        for folder in folders:
            keep_run(folder, args)
    curves = {folder.name: evaluate_run(folder, args) for folder in folders}
    curves = {name: curve for name, curve in {**kept_curves(args), **curves}.items() if curve}
    curves = dict(sorted(curves.items()))
    random = evaluate_point(None, args.out / "random", args)
    short = [t.split("/")[-1].removesuffix("-v0") for t in TASKS]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(6 * len(TASKS), 4), sharey=True)
    for ax, task, name in zip(axes, TASKS, short):
        for arm, runs in by_arm(curves).items():
            steps, mean, low, high = seed_band(list(runs.values()), task)
            line, = ax.plot(steps, 100 * mean, marker="o", label=f"{arm} ({len(runs)} seed{'s' * (len(runs) > 1)})")
            if len(runs) > 1:
                ax.fill_between(steps, 100 * low, 100 * high, color=line.get_color(), alpha=0.2)
        ax.axhline(100 * random[task]["success_rate"], color="grey", linestyle="--", label="random actions")
        ax.set_title(f"zero-shot {name}, full success rule, {'sampled' if args.sampled else 'mean'} actions")
        ax.set_xlabel("env steps (Alice + Bob)")
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel(f"success (%), {args.trials} trials per point\nline: mean over seeds, band: min-max")
    axes[-1].legend()
    fig.tight_layout()
    stem = "learning_sampled" if args.sampled else "learning"
    fig.savefig(args.out / f"{stem}.png", dpi=120)
    lines = [f"Zero-shot success at each mark ({args.trials} trials per task, seed 0, the run's workspace, "
             f"`python -m selfplay.evaluate`'s protocol, Bob's {'sampled' if args.sampled else 'mean'} actions), %:", "",
             "| run | " + " | ".join(f"{s} at {step:,}" for step in marks(args) for s in short) + " |",
             "|---|" + "---:|" * (len(marks(args)) * len(TASKS))]
    for name, curve in curves.items():
        cells = [f"{100 * curve[step][task]['success_rate']:.1f}" if step in curve else "—" for step in marks(args) for task in TASKS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| random actions | " + " | ".join(f"{100 * random[task]['success_rate']:.1f}" for _ in marks(args) for task in TASKS) + " |")
    lines += ["", f"At {args.steps:,} env steps, per arm over its seeds: success % mean ± sd (range); pooled: all seeds' goals, "
              "95 % Wilson interval.", "", "| arm | seeds | " + " | ".join(short) + " |", "|---|---:|" + "---|" * len(TASKS)]
    for arm, runs in by_arm({n: c[args.steps] for n, c in curves.items() if args.steps in c}).items():
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(arm_summary(list(runs.values()), task) for task in TASKS) + " |")
    lines += ["", *training_table([args.out, *[args.keep] * (args.keep is not None)])]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out / stem}.png and {args.out / stem}.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600_000, help="env-step budget per run")
    parser.add_argument("--marks", type=int, nargs="*", default=[], help="env steps to evaluate at besides the budget "
                        "(multiples of trainer.checkpoint_every x trainer.rollout_steps land exactly)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=["selfplay_abc", "uniform", "selfplay_no_abc", "sac_her"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each uses about one core)")
    parser.add_argument("--trials", type=int, default=100, help="episodes per task per evaluation")
    parser.add_argument("--eval-workers", type=int, default=1, help="game processes per evaluation")
    parser.add_argument("--sampled", action="store_true", help="evaluate Bob's sampled actions (deterministic=false) "
                        "instead of his mean actions: cached in <run>/eval_sampled, reported as learning_sampled.png/md")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "learning", help="folder for the runs")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every arm, e.g. experiment=selfplay_push_sac")
    parser.add_argument("--report-only", action="store_true", help="no training: evaluate what is missing, plot")
    parser.add_argument("--keep", type=Path, default=None, help="record finished runs here (results in both action "
                        "modes, config, metrics) and report them with the others, e.g. benchmarks/campaign")
    parser.add_argument("--sac-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--evaluate-point", nargs=2, metavar=("POLICY", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate_point:
        evaluate_in_process(args.evaluate_point[0], Path(args.evaluate_point[1]), args)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.sac_only:
        for seed in args.seeds:
            run_sac(seed, args)
        return 0
    if not args.report_only:
        signal.signal(signal.SIGTERM, STOP)
        signal.signal(signal.SIGINT, STOP)
        # commands first, in this thread: composing the config (hydra) is not thread-safe
        jobs = [(f"{arm}-s{seed}", sac_command(seed, args) if arm == "sac_her" else selfplay_command(arm, seed, args))
                for seed in args.seeds for arm in args.arms]
        (args.out / "settings.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2))
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: run_and_evaluate(*job, args), jobs):
                print(line, flush=True)
        if STOP.received:
            print("stopped: run the same command again to continue", flush=True)
            return 130
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
