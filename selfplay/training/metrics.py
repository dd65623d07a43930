"""What one update logs: the metrics row (stable namespaces ``alice/``, ``bob/``, ``goals/``,
``abc/``, ``game/``, ``time/``, ``eval/<task>/``) and the progress line or bar."""

from __future__ import annotations

import sys

import numpy as np

from selfplay.collector import RolloutStats
from selfplay.config import Config
from selfplay.events import INVALID_REASONS
from selfplay.game import GameConfig


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def metrics_row(cfg: Config, rules: GameConfig, counters: dict, stats: RolloutStats, train_stats: dict,
                stat_names: tuple[tuple[str, ...], tuple[str, ...]], bob_batch: dict | None, collect_s: float,
                update_s: float, restarts: int = 0) -> dict:
    """One update's row of metrics.csv (and wandb).

    ``train_stats``: the learners' statistics as ``alice/<name>`` / ``bob/<name>``;
    ``stat_names``: (Alice's, Bob's) statistic names, logged every update (NaN when an agent did
    not train) so that metrics.csv keeps one header; ``bob_batch``: Bob's PPO batch, if any;
    ``collect_s`` / ``update_s``: seconds; ``restarts``: Ray workers replaced so far.
    """
    goals = stats.goals
    valid = [g for g in goals if g.valid]
    played = [g for g in valid if g.bob_success is not None]
    row: dict = {
        "env_steps": counters["env_steps"],
        "updates": counters["updates"],
        "alice/reward": _mean([rules.alice_reward(g) for g in goals]),
        "alice/valid_goal_rate": len(valid) / len(goals) if goals else float("nan"),
        "alice/outside_rate": _mean([g.outside for g in valid]),
        # why the others were not valid: shares of all goals, summing to 1 - valid_goal_rate
        **{f"alice/{reason}_rate": _mean([g.invalid_reason == reason for g in goals]) for reason in INVALID_REASONS},
        "alice/valid_first_goal_rate": _mean([g.valid for g in goals if g.index == 0]),
        "bob/success_rate": _mean([g.bob_success for g in played]),
        "bob/reward": float(bob_batch["rewards"].mean()) if bob_batch is not None else float("nan"),
        "goals/moved": _mean([g.moved for g in valid]),
        "goals/lifted": _mean([g.lifted for g in valid]),
        "goals/stacked": _mean([g.stacked for g in valid]),
        "goals/distance": _mean([g.distance for g in valid]),  # m
        "goals/turn": _mean([float(g.turns.max()) for g in valid if g.turns is not None]),  # rad, the most-turned object
        "abc/demonstrations": stats.demonstrations,
        "abc/demonstration_steps": stats.demonstration_steps,
        "abc/hindsight_demonstrations": stats.hindsight_demonstrations,
        "abc/replayed_alice_turns": stats.replayed_alice_turns,
        "game/games": stats.games,
        "game/snapshot_games": stats.snapshot_games,
        "game/sim_errors": stats.sim_errors,
        "game/out_of_reach_games": stats.out_of_reach_games,  # ended early: nothing left within reach
        "game/lost_games": stats.lost_games,  # dropped half-played: their Ray worker died
        "game/worker_restarts": restarts,  # Ray workers replaced so far in this process
        "time/sps": sum(stats.steps) / max(collect_s + update_s, 1e-9),
        "time/collect_s": collect_s,
        "time/update_s": update_s,
        **{f"time/{k}_s": v for k, v in stats.seconds.items()},
    }
    for k in range(cfg.game.max_goals):
        row[f"bob/success_goal_{k}"] = _mean([g.bob_success for g in played if g.index == k])
    row["abc/loss"] = train_stats.get("bob/abc_loss", float("nan"))
    if cfg.abc.q_filter:  # the share of demonstration steps the critic let through
        row["abc/q_filter_kept"] = train_stats.get("bob/abc_kept", float("nan"))
    for name, names in zip(("alice", "bob"), stat_names):
        for key in names:
            row[f"{name}/{key}"] = train_stats.get(f"{name}/{key}", float("nan"))
    if cfg.eval.every:
        row.update({f"eval/{task}/{key}": float("nan") for task in cfg.eval.tasks for key in ("success", "distance")})
    return row


class Progress:
    """A rich progress bar in a terminal, plain log lines otherwise (``logger.progress``)."""

    KEYS = ("bob/success_rate", "alice/valid_goal_rate", "alice/reward", "abc/demonstrations", "time/sps")

    def __init__(self, mode: str, total: int, done: int) -> None:
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]self-play"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
                                TimeRemainingColumn(), TextColumn("{task.fields[summary]}"))
            self.task = self.bar.add_task("train", total=total, completed=done, summary="")
            self.bar.start()
        self.total = total

    def update(self, done: int, row: dict) -> None:
        summary = "  ".join(f"{k.split('/')[-1]}={row[k]:.3g}" for k in self.KEYS if k in row and not np.isnan(row[k]))
        if self.bar is not None:
            self.bar.update(self.task, completed=done, summary=summary)
        else:
            print(f"[{done:>10,}/{self.total:,} steps] update {row['updates']}: {summary}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


__all__ = ["Progress", "metrics_row"]
