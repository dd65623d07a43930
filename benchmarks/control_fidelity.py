"""Control fidelity: does the arm do what the action says, within the step?

Run from the repository root (about a minute; panda-gym comes with the ``bench`` extra)::

    python benchmarks/control_fidelity.py                       # Tabletop/Push1-v0 and PandaPush-v3
    python benchmarks/control_fidelity.py --steps 2000 --out runs/control.md

What is measured: :mod:`tabletop_env.fidelity` (R² of the tool displacement on the commanded one,
for x/y/z-only and all-six-dimension random actions in free space; lag-1 correlation; tool speed
at full action; tool-centre drift when only the wrist moves), for our gymnasium ids and for
panda-gym's PandaPush-v3 (x/y/z only: its actions have no wrist), in the same run; and how far
a full-speed push throws a block (:func:`tabletop_env.fidelity.push_block`).

Targets for the tabletop (issue "learnable tabletop"): full action >= 4 cm per step, R² >= 0.9
(x/y/z) and >= 0.8 (six dimensions), lag-1 correlation <= 0.1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from env_throughput import quiet_c_output  # noqa: E402

from tabletop_env.fidelity import Fidelity, Probe, measure, push_block  # noqa: E402


def panda_gym_probe(env: gym.Env) -> Probe:
    """panda-gym: 3-D end-effector displacement actions (0.05 m each), plus fingers for some tasks."""
    size = env.action_space.shape[0]
    return Probe(env, env.unwrapped.robot.get_ee_position, 0.05, np.zeros(size),
                 (np.array([-0.1, -0.15, 0.1]), np.array([0.15, 0.15, 0.3])))


def _row(f: Fidelity) -> str:
    show = lambda v, fmt: "—" if v is None else format(v, fmt)  # noqa: E731
    return (f"| {f.name} | {f.full_action_m * 100:.2f} | {f.r2_xyz:.3f} | {show(f.r2_all, '.3f')} | "
            f"{f.lag1_xyz:+.3f} | {show(f.lag1_all, '+.3f')} | {show(f.wrist_drift_m and f.wrist_drift_m * 1000, '.2f')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="recorded steps per test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ids", nargs="*", default=["Tabletop/Push1-v0"], help="our gymnasium ids")
    parser.add_argument("--no-reference", action="store_true", help="skip panda-gym")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)

    results = []
    for env_id in args.ids:
        env = gym.make(env_id)
        start = time.perf_counter()
        results.append(measure(Probe.tabletop(env), env_id, args.steps, args.seed))
        print(f"{env_id}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        env.close()
    if not args.no_reference:
        try:
            with quiet_c_output():
                import panda_gym  # noqa: F401

                env = gym.make("PandaPush-v3")
            results.append(measure(panda_gym_probe(env), "PandaPush-v3 (panda-gym)", args.steps, args.seed))
            env.close()
        except ImportError:
            print("panda-gym is not installed (pip install -e '.[bench]'): no reference", file=sys.stderr)
    lines = [
        f"Command: `python benchmarks/control_fidelity.py --steps {args.steps}`; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node() or 'this machine'}, Python {platform.python_version()}.",
        "",
        "| env | full action (cm/step) | R² x/y/z | R² all six | lag-1 x/y/z | lag-1 all six | wrist drift (mm/step) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[_row(f) for f in results],
        "",
        "A full-speed push (Tabletop, tool at block height 6 cm behind one block, +1 on x until it has",
        "moved the block for k steps, then still for 1 s; `tabletop_env.fidelity.push_block`):",
        "",
        "| push steps k | speed | peak block speed (m/s) | moved during the push (cm) | moved in all (cm) |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {o.push_steps} | {speed} | {o.peak_block_speed:.2f} | {o.moved_during_push * 100:.1f} | {o.total_move * 100:.1f} |"
          for speed in (1.0, 0.5) for o in (push_block(k, speed) for k in (1, 2, 4))],
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    for f in results:
        print(asdict(f), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
