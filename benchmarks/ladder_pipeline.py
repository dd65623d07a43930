"""Learning ladder, rung 0: does our learning pipeline learn as fast as SB3's own PPO?

    python benchmarks/ladder_pipeline.py --seeds 0 1 2 --steps 61440 --out runs/ladder/rung0   # ~2 min, one core

One agent on a small standard task (CartPole-v1 by default), two arms, same env steps, same
hyperparameters, same network, same seeds (hence the same initial weights and env seeds):

  ours  the self-play trainer's pipeline: :class:`selfplay.collector.Collector` (Gumbel-max sampling,
        per-agent trajectories, its own GAE in ``take_batches``) -> ``PPOLearner.update`` with ABC
        off; Bob's learner comes from :func:`selfplay.learning.build_learner`.
  sb3   ``PPO("MultiInputPolicy", ...).learn(steps)`` on the same task, same ``policy_kwargs``.

The task is dressed as one of our games by :class:`GameShaped` (``robot`` = the task's observation,
one zero object, zero goal, ``mask`` 1, ``phase`` 1: Bob always acts). Training-episode returns are
recorded against env steps by the env itself (:class:`Tally`), identically for both arms.

Found with this benchmark:
  - CartPole-v1 truncates at 500 steps. SB3 bootstraps a truncated episode with the value of its last
    state; the collector ended it with bootstrap 0. SB3 made to do the same fell from 467 to 293
    (final return, 5 seeds, runs identical up to the first truncation). The collector now bootstraps
    truncations as SB3 does (tests/test_pipeline.py checks its GAE against SB3's).
  - Our batches vary in size (held-back steps here; the Alice/Bob split in the game), and
    our update took SB3's fixed-size minibatches: a batch of 1 + k * batch_size trains a
    1-sample minibatch (advantage not normalised, a full Adam step) every epoch. Every such update
    blew up (clip fraction 0.2-0.5) and our arm lagged SB3 early (3k-13k steps: lower in 18 of 20
    seeds). Near-equal minibatches removed it (a strict xfail in tests/test_pipeline.py until fixed).
The "large updates" line of the report counts updates with clip fraction > ``LARGE_CLIP_FRACTION``.

Writes <out>/rung0.json (curves), <out>/rung0.md (table) and <out>/rung0.png (mean and min-max
band over seeds). Verdict "within seed noise": at every checkpoint the two arms' ranges over seeds
(min..max of the mean training return in the window before the checkpoint) overlap.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

#: Identical for both arms. SB3's PPO learns CartPole-v1 clearly within ~60k steps with these.
HYPERPARAMETERS = {
    "n_envs": 8,
    "n_steps": 128,  # per env per update: 1024 transitions per update
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "ent_coef": 0.0,
    "clip_range": 0.2,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "width": 64,  # ObjectSetExtractor width (the game uses 128)
    "depth": 2,
    "head": [64],
}
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)  # fractions of the budget where the arms are compared
WINDOW = 0.1  # each comparison averages the training episodes that ended in the last 10 % of steps before it
#: A PPO update that moved the policy far: more than this share of its samples ended beyond the clip
#: range. SB3's PPO on CartPole with these settings stays below 0.1 in every update.
LARGE_CLIP_FRACTION = 0.15
ARMS = ("ours", "sb3")


# -- the task dressed as a game --------------------------------------------------------------------
@dataclass
class Tally:
    """Env steps taken and episodes finished, shared by all envs of one (in-process) VecEnv."""

    steps: int = 0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (env steps so far, return, length)


class GameShaped(gym.Env):
    """A discrete-action gymnasium task in the observation/action shape of our games.

    Observation: ``robot`` (the task's observation), ``objects`` (1, ``object_size``) zeros,
    ``goal`` (1, ``goal_size``) zeros, ``mask`` (1,) ones and, with ``with_phase``, ``phase``
    (1,) = 1.0 (Bob acts). Action: ``MultiDiscrete([n])``. Terminations and truncations (the
    task's TimeLimit) pass through unchanged.
    """

    def __init__(self, env_id: str = "CartPole-v1", tally: Tally | None = None, with_phase: bool = True,
                 object_size: int = 1, goal_size: int = 1) -> None:
        self.task = gym.make(env_id)
        box = self.task.observation_space
        spaces = {
            "robot": gym.spaces.Box(box.low, box.high, dtype=np.float32),
            "objects": gym.spaces.Box(-1.0, 1.0, shape=(1, object_size), dtype=np.float32),
            "goal": gym.spaces.Box(-1.0, 1.0, shape=(1, goal_size), dtype=np.float32),
            "mask": gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
        }
        if with_phase:
            spaces["phase"] = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.MultiDiscrete([self.task.action_space.n])
        self.tally = tally
        self._return, self._length = 0.0, 0

    def _observe(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        out = {k: np.zeros(s.shape, np.float32) for k, s in self.observation_space.spaces.items()}
        out["robot"] = np.asarray(obs, dtype=np.float32)
        out["mask"][:] = 1.0
        if "phase" in out:
            out["phase"][:] = 1.0
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        obs, info = self.task.reset(seed=seed, options=options)
        self._return, self._length = 0.0, 0
        return self._observe(obs), info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.task.step(int(np.asarray(action).reshape(-1)[0]))
        self._return += float(reward)
        self._length += 1
        if self.tally is not None:
            self.tally.steps += 1
            if terminated or truncated:
                self.tally.episodes.append((self.tally.steps, self._return, self._length))
        return self._observe(obs), float(reward), terminated, truncated, info

    def close(self) -> None:
        self.task.close()


def make_venv(env_id: str, n_envs: int, tally: Tally, with_phase: bool):
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: GameShaped(env_id, tally, with_phase) for _ in range(n_envs)])


# -- the two arms ------------------------------------------------------------------------------------
def start_arm(env_id: str, hp: dict | None, with_phase: bool) -> tuple[dict, float, "Tally", object]:
    """What both arms start with: the hyperparameters (defaults + ``hp``), one torch thread, the
    start time, an episode tally and ``hp["n_envs"]`` games."""
    hp = {**HYPERPARAMETERS, **(hp or {})}
    th.set_num_threads(1)
    tally = Tally()
    return hp, time.perf_counter(), tally, make_venv(env_id, hp["n_envs"], tally, with_phase=with_phase)


def build_bob(seed: int, observation_space: gym.spaces.Dict, action_space: gym.spaces.Space, hp: dict):
    """Bob as the trainer builds him (:func:`selfplay.learning.build_learner`), ABC off."""
    from selfplay.config import make_config
    from selfplay.game import BOB
    from selfplay.learning import agent_observation_space, build_learner

    agent = {k: hp[k] for k in ("learning_rate", "gamma", "gae_lambda", "ent_coef", "clip_range", "vf_coef", "n_epochs",
                                "batch_size", "max_grad_norm", "width", "depth", "head")}
    cfg = make_config({"bob": agent, "abc": {"enabled": False}, "seed": seed - BOB})  # Bob's seed is cfg.seed + 1: seed
    return build_learner(cfg, BOB, agent_observation_space(observation_space), action_space)


def run_ours(seed: int, total_steps: int, env_id: str = "CartPole-v1", hp: dict | None = None) -> dict:
    """Our pipeline, as :meth:`selfplay.training.Trainer.iteration` runs it, for Bob alone."""
    from selfplay.collector import Collector
    from selfplay.game import BOB

    hp, start, tally, venv = start_arm(env_id, hp, with_phase=True)
    bob = build_bob(seed, venv.observation_space, venv.action_space, hp)
    venv.seed(seed)  # as SB3 seeds its env: game i resets with seed + i
    collector = Collector(venv, None, bob, seed=seed)  # phase is always 1: Alice is never asked
    rollout = hp["n_envs"] * hp["n_steps"]
    env_steps, updates = 0, []
    while env_steps < total_steps:
        stats = collector.collect(rollout)
        batches, _ = collector.take_batches((bob.gamma, bob.gamma), (bob.gae_lambda, bob.gae_lambda))
        assert batches[0] is None and stats.steps[0] == 0
        batch = batches[BOB]
        if batch is not None and len(batch["actions"]) >= 2:
            result = bob.update(batch)  # also folds the batch into the input statistics, as in the trainer
            updates.append({"batch": len(batch["actions"]), "clip_fraction": result["clip_fraction"], "approx_kl": result["approx_kl"]})
        env_steps += sum(stats.steps)
    venv.close()
    return {"episodes": tally.episodes, "updates": updates, "env_steps": env_steps, "wall_s": time.perf_counter() - start}


def run_sb3(seed: int, total_steps: int, env_id: str = "CartPole-v1", hp: dict | None = None) -> dict:
    """SB3's ``PPO.learn`` on the same task, hyperparameters and network."""
    from stable_baselines3 import PPO

    from selfplay.policies import policy_kwargs

    hp, start, tally, venv = start_arm(env_id, hp, with_phase=False)
    model = PPO(
        "MultiInputPolicy", venv, n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
        learning_rate=hp["learning_rate"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"], ent_coef=hp["ent_coef"],
        clip_range=hp["clip_range"], vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
        policy_kwargs=policy_kwargs(use_goal=True, width=hp["width"], depth=hp["depth"], head=tuple(hp["head"])),
        seed=seed,  # the seed build_bob gives Bob: the same initial weights as ours
        device="cpu", verbose=0,
    )
    updates, train = [], model.train

    def train_and_record() -> None:
        train()
        updates.append(update_stats(model, model.rollout_buffer.buffer_size * model.rollout_buffer.n_envs))

    model.train = train_and_record  # learn() calls self.train()
    model.learn(total_steps)
    venv.close()
    return {"episodes": tally.episodes, "updates": updates, "env_steps": int(model.num_timesteps), "wall_s": time.perf_counter() - start}


def update_stats(model, batch: int) -> dict:
    """What one PPO update did (read from SB3's logger right after ``train()``)."""
    values = model.logger.name_to_value
    return {"batch": int(batch), "clip_fraction": float(values["train/clip_fraction"]), "approx_kl": float(values["train/approx_kl"])}


RUNNERS = {"ours": run_ours, "sb3": run_sb3}


# -- summary ---------------------------------------------------------------------------------------
def window_mean(episodes: list, end: float, width: float) -> float:
    """Mean return of the training episodes that ended in (end - width, end] env steps."""
    returns = [r for step, r, _ in episodes if end - width < step <= end]
    return float(np.mean(returns)) if returns else float("nan")


def summarize(runs: dict, steps: int) -> dict:
    """Per arm and checkpoint: the window mean per seed, its mean/min/max over seeds; the verdict."""
    width = WINDOW * steps
    summary: dict = {"checkpoints": {}, "final": {}}
    for arm in ARMS:
        per_seed = {seed: window_mean(run["episodes"], steps, width) for seed, run in runs[arm].items()}
        values = list(per_seed.values())
        summary["final"][arm] = {"per_seed": per_seed, "mean": float(np.mean(values)), "min": float(np.min(values)),
                                 "max": float(np.max(values)), "wall_s": {s: r["wall_s"] for s, r in runs[arm].items()}}
    overlaps = []
    for fraction in CHECKPOINTS:
        at = fraction * steps
        row = {}
        for arm in ARMS:
            values = [window_mean(run["episodes"], at, width) for run in runs[arm].values()]
            row[arm] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values)),
                        "per_seed": values}
        row["overlap"] = bool(row["ours"]["min"] <= row["sb3"]["max"] and row["sb3"]["min"] <= row["ours"]["max"])
        overlaps.append(row["overlap"])
        summary["checkpoints"][str(int(at))] = row
    summary["large_updates"] = {
        arm: float(np.mean([u["clip_fraction"] > LARGE_CLIP_FRACTION for run in runs[arm].values() for u in run["updates"]]))
        for arm in ARMS
    }
    summary["within_seed_noise"] = all(overlaps)
    summary["verdict"] = "within seed noise" if all(overlaps) else "NOT within seed noise"
    return summary


def curve(episodes: list, steps: int, points: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Window means (width ``WINDOW * steps``) on a grid of env steps, for plotting."""
    grid = np.linspace(steps / points, steps, points)
    return grid, np.array([window_mean(episodes, x, WINDOW * steps) for x in grid])


def write_report(out: Path, env_id: str, steps: int, seeds: list[int], runs: dict, summary: dict, hp: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    payload = {"env": env_id, "steps": steps, "seeds": seeds, "hyperparameters": hp, "summary": summary,
               "runs": {arm: {str(s): r for s, r in runs[arm].items()} for arm in ARMS}}
    (out / "rung0.json").write_text(json.dumps(payload, indent=1))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, color in zip(ARMS, ("tab:red", "tab:blue")):
        curves = [curve(run["episodes"], steps) for run in runs[arm].values()]
        grid, values = curves[0][0], np.array([c[1] for c in curves])
        label = "ours (Collector + PPOLearner.update)" if arm == "ours" else "SB3 PPO.learn"
        ax.plot(grid, np.nanmean(values, axis=0), color=color, label=f"{label}, mean of {len(curves)} seeds")
        ax.fill_between(grid, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"training episode return ({int(WINDOW * 100)} % window)")
    ax.set_title(f"rung 0: {env_id}, same hyperparameters and seeds ({summary['verdict']})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "rung0.png", dpi=120)
    plt.close(fig)

    lines = [f"# Rung 0: our pipeline vs SB3 PPO on {env_id}", "",
             f"{steps} env steps per run, seeds {seeds}, hyperparameters (both arms): `{json.dumps(hp)}`.", "",
             f"Mean training-episode return over the last {int(WINDOW * 100)} % of steps:", "",
             "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min..max | wall s (per seed) |",
             "|---|" + "---|" * len(seeds) + "---|---|---|"]
    for arm in ARMS:
        f = summary["final"][arm]
        walls = ", ".join(f"{f['wall_s'][s]:.0f}" for s in seeds)
        lines.append(f"| {arm} | " + " | ".join(f"{f['per_seed'][s]:.1f}" for s in seeds)
                     + f" | {f['mean']:.1f} | {f['min']:.1f}..{f['max']:.1f} | {walls} |")
    lines += ["", f"At checkpoints (mean return of the episodes ending in the {int(WINDOW * 100)} % of steps before it; "
              "mean [min..max] over seeds):", "", "| env steps | ours | sb3 | ranges overlap |", "|---|---|---|---|"]
    for at, row in summary["checkpoints"].items():
        cell = {arm: f"{row[arm]['mean']:.1f} [{row[arm]['min']:.1f}..{row[arm]['max']:.1f}]" for arm in ARMS}
        lines.append(f"| {at} | {cell['ours']} | {cell['sb3']} | {'yes' if row['overlap'] else 'no'} |")
    large = ", ".join(f"{arm} {summary['large_updates'][arm]:.0%}" for arm in ARMS)
    lines += ["", f"Updates that moved the policy far (clip fraction > {LARGE_CLIP_FRACTION}), share of all updates: {large}."]
    lines += ["", f"Verdict: **{summary['verdict']}** (within seed noise = the arms' min..max ranges over seeds "
              "overlap at every checkpoint).", "", "![curves](rung0.png)", ""]
    (out / "rung0.md").write_text("\n".join(lines))


def rung0(out_dir: str | Path, seeds=(0, 1, 2), steps: int = 61440, env_id: str = "CartPole-v1", hp: dict | None = None,
          log=print) -> dict:
    """Run both arms for every seed, one after the other; write JSON, markdown and PNG to ``out_dir``.
    Returns the summary: ``final`` and ``checkpoints`` (per arm mean/min/max, per seed) and ``verdict``."""
    hp = {**HYPERPARAMETERS, **(hp or {})}
    seeds = list(seeds)
    runs: dict = {arm: {} for arm in ARMS}
    for seed in seeds:
        for arm in ARMS:
            run = RUNNERS[arm](seed, steps, env_id, hp)
            runs[arm][seed] = run
            final = window_mean(run["episodes"], steps, WINDOW * steps)
            large = sum(u["clip_fraction"] > LARGE_CLIP_FRACTION for u in run["updates"])
            log(f"{arm:>4} seed {seed}: final return {final:7.1f}, {len(run['episodes'])} episodes, "
                f"{run['env_steps']} env steps, {large}/{len(run['updates'])} large updates, {run['wall_s']:.0f} s")
    summary = summarize(runs, steps)
    write_report(Path(out_dir), env_id, steps, seeds, runs, summary, hp)
    summary["plot"] = str(Path(out_dir) / "rung0.png")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=61440, help="env steps per run (a multiple of n_envs * n_steps)")
    parser.add_argument("--env", default="CartPole-v1", help="a gymnasium task with a Discrete action space")
    parser.add_argument("--out", type=Path, default=Path("runs/ladder/rung0"))
    args = parser.parse_args()
    summary = rung0(args.out, args.seeds, args.steps, args.env)
    for arm in ARMS:
        f = summary["final"][arm]
        print(f"{arm:>4}: final return mean {f['mean']:.1f} (seeds {f['min']:.1f}..{f['max']:.1f}); "
              f"updates with clip fraction > {LARGE_CLIP_FRACTION}: {summary['large_updates'][arm]:.0%}")
    print(f"verdict: {summary['verdict']}; plot {summary['plot']}")


if __name__ == "__main__":
    main()
