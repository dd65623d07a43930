"""Random actions in a holdout task: a video and a JSON summary under ``runs/``.

    python -m tabletop_env.demo --task Tabletop/Push2-v0 --steps 500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import tabletop_env
from tabletop_env import TabletopEnv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Tabletop/Push2-v0", help="a holdout task id (see --list)")
    parser.add_argument("--steps", type=int, default=500, help="env steps to play (0.04 s each)")
    parser.add_argument("--video-every", type=int, default=2, help="record every k-th step; 0: no video")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/demo-<time>)")
    parser.add_argument("--list", action="store_true", help="print the task ids and exit")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be positive, got {args.steps}")
    if args.task not in tabletop_env.list_tasks() and not args.list:
        parser.error(f"unknown task {args.task!r}; valid ids: {', '.join(tabletop_env.list_tasks())}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.list:
        print("\n".join(tabletop_env.list_tasks()))
        return {}
    out = args.out or Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    env = TabletopEnv(task=args.task, render_mode="rgb_array" if args.video_every else None)
    rng = np.random.default_rng(args.seed)
    env.reset(seed=args.seed)
    frames, episodes, successes, sim_time = [], 1, 0, 0.0
    for step in range(args.steps):
        start = time.perf_counter()
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 6))
        sim_time += time.perf_counter() - start
        successes += bool(info["is_success"])
        if args.video_every and step % args.video_every == 0:
            frames.append(env.render())
        if terminated or truncated:
            env.reset()
            episodes += 1
    summary = {
        "task": args.task,
        "steps": args.steps,
        "episodes": episodes,
        "successes": successes,
        "env_steps_per_second": round(args.steps / sim_time, 1),
        "simulated_seconds": round(args.steps * env.sim.physics.control_dt, 2),
    }
    if frames:
        import imageio.v2 as imageio

        fps = round(1 / (env.sim.physics.control_dt * args.video_every))
        imageio.mimsave(out / "random_actions.mp4", frames, fps=fps, macro_block_size=8)
        summary["video"] = str(out / "random_actions.mp4")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    env.close()
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
