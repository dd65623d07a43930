"""``python -m selfplay.alice_goals run=<run folder>``: what Alice discovered in a run (a table
per phase of training and a picture, from the run's ``goals.csv``): writes ``alice_goals.md`` and
``alice_goals.png`` into the run folder and prints the table. Training writes them at its end too.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selfplay.training.alice_goals import GOALS_FILE, REPORT_TABLE, write_report


def main(argv: list[str]) -> int:
    runs = [a.split("=", 1)[1] for a in argv if a.startswith("run=")]
    if len(runs) != 1 or len(argv) != 1:
        print("usage: python -m selfplay.alice_goals run=<run folder>", file=sys.stderr)
        return 2
    run_dir = Path(runs[0])
    if not (run_dir / GOALS_FILE).exists():
        print(f"error: {run_dir} has no {GOALS_FILE} (not a run folder, or a run without Alice)", file=sys.stderr)
        return 1
    from omegaconf import OmegaConf

    saved = run_dir / "config.yaml"
    env = OmegaConf.load(saved).get("env", {}) if saved.exists() else {}
    placement = (tuple(env["placement_low"]), tuple(env["placement_high"])) if "placement_low" in env else None
    if write_report(run_dir, placement) is None:
        print(f"error: {run_dir / GOALS_FILE} holds no goals yet", file=sys.stderr)
        return 1
    print((run_dir / REPORT_TABLE).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
