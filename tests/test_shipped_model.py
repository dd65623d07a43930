"""The Bob shipped in models/: a real SAC zip that the evaluation opens in the workspace it was
trained in, and that still pushes blocks (a few trials of the holdout it is reported on)."""

import json
from pathlib import Path

from stable_baselines3 import SAC

from selfplay.evaluation import run_workspace
from tests.test_evaluate import evaluate_cli

MODEL = Path(__file__).resolve().parent.parent / "models" / "bob_near_push_sac"


def test_the_shipped_bob_opens_in_its_training_workspace():
    bob = SAC.load(MODEL / "bob.zip", device="cpu")
    assert bob.observation_space["objects"].shape[0] == 1  # one object slot, as trained
    workspace = run_workspace(MODEL / "bob.zip")  # read from the config.yaml beside the zip
    assert workspace is not None and workspace["placement_low"] == (-0.15, -0.1)


def test_the_shipped_bob_solves_push_goals_zero_shot(tmp_path):
    result = evaluate_cli(f"checkpoint={MODEL / 'bob.zip'}", "tasks=[Tabletop/Push1-v0]", "trials=12", "workers=0",
                          f"out={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    push = json.loads((tmp_path / "results.json").read_text())["Tabletop/Push1-v0"]
    # 47 % (40-54 %) over 100 trials (models/bob_near_push_sac/README.md); a random Bob: 5.7 %
    assert push["successes"] >= 3, push
