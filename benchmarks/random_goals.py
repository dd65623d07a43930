"""What a random Alice's goals look like at each goal index of a game, under each turn-start rule.

Run from the repository root (about 2 minutes on one core)::

    python benchmarks/random_goals.py --games 100 --out runs/random_goals.md

A random Alice (uniform over the 6 x 11 action bins) plays every goal of the game alone: Bob's
timeout is one step, so he fails the first goal and sits out, and every later goal is Alice's.
Per goal index the table shows the tool height when her turn starts, the share of turns that give
a valid goal (a block moved, none off the table), and among valid goals the share left outside
the placement area, the share that need a yaw correction above 0.2 rad (modulo the cube's
symmetry) and the mean block displacement. Compared: ``game.alice_start`` = continue (the
paper: no resets between goals), home (the arm back home, objects stay) and near_object (the
tool next to an object), in the default 20 x 20 cm workspace and the paper's 40 x 50 cm one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from selfplay.config import compose_config
from selfplay.events import GoalFinished, GoalProposed, event_of
from selfplay.game import ALICE, ALICE_STARTS, SelfPlayGame
from selfplay.vec_env import game_config
from tabletop_env.state import ROTATION_CUBE, rotation_error

WORKSPACES = {
    "default 20x20 cm": [],
    "paper 40x50 cm": ["env.placement_low=[-0.2,-0.25]", "env.placement_high=[0.2,0.25]"],
}


def play(overrides: list[str], games: int, seed: int) -> list[list[dict]]:
    """Per goal index, one dict per Alice turn: tool height at its start, valid, outside, yaw, moved."""
    cfg = compose_config([*overrides, "game.bob_steps_per_object=1"])
    game = SelfPlayGame(cfg.env.n_objects, game_config(cfg), cfg.env.workspace(), cfg.env.action_bins, cfg.env.max_objects)
    rng = np.random.default_rng(seed)
    by_index: list[list[dict]] = [[] for _ in range(cfg.game.max_goals)]
    for episode in range(games):
        game.reset(seed=seed * 100_000 + episode)
        done, turn_start = False, True
        while not done:
            if game.phase == ALICE and turn_start:
                height = float(game.sim.robot.tool_pose()[0][2])
                start = game.sim.object_poses()
                index = game._goal_index  # goals so far in this game
                turn_start = False
            actor = game.phase
            _, _, done, _, info = game.step(rng.integers(0, len(game.action_values), 6))
            if actor != ALICE:
                turn_start = turn_start or game.phase == ALICE
                continue
            proposed = event_of(info, GoalProposed)
            if proposed is not None:  # a valid goal (Bob plays it, or sits out)
                goal = proposed.goal
            elif event_of(info, GoalFinished):  # invalid: nothing moved, or a block off the table
                goal = None
            else:
                continue
            turn_start = True
            record = {"height": height, "valid": goal is not None}
            if goal is not None:
                low, high = game.sim.placement_low, game.sim.placement_high
                yaw = rotation_error(goal[:, 3:], start[:, 3:], np.full(len(goal), ROTATION_CUBE))
                record.update(outside=bool(((goal[:, :2] < low) | (goal[:, :2] > high)).any()),
                              yaw=bool((yaw > 0.2).any()), moved=float(np.linalg.norm(goal[:, :2] - start[:, :2], axis=1).max()))
            by_index[index].append(record)
    return by_index


def table(name: str, by_index: list[list[dict]]) -> list[str]:
    rows = []
    for index, turns in enumerate(by_index):
        if not turns:
            continue
        valid = [t for t in turns if t["valid"]]
        share = lambda key: 100 * np.mean([t[key] for t in valid]) if valid else float("nan")  # noqa: E731
        rows.append(f"| {name} | {index + 1} | {len(turns)} | {100 * np.mean([t['height'] for t in turns]):.1f} | "
                    f"{100 * len(valid) / len(turns):.0f} % | {share('outside'):.0f} % | {share('yaw'):.0f} % | "
                    f"{100 * np.mean([t['moved'] for t in valid]) if valid else float('nan'):.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rules", nargs="*", default=list(ALICE_STARTS), help="game.alice_start values to compare")
    parser.add_argument("--workspaces", nargs="*", default=list(WORKSPACES), help=f"any of {list(WORKSPACES)}")
    args = parser.parse_args(argv)
    lines = ["| setup | goal | turns | tool height at start (cm) | valid | outside area (of valid) | "
             "yaw > 0.2 rad (of valid) | block moved (cm, valid) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for workspace in args.workspaces:
        overrides = WORKSPACES[workspace]
        for rule in args.rules:
            name = f"{workspace}, alice_start={rule}"
            lines += table(name, play([*overrides, f"game.alice_start={rule}"], args.games, args.seed))
            print(name, file=sys.stderr)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
