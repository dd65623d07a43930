"""The Bobs shipped in models/: real SAC zips that the evaluation opens in the workspace they were
trained in, and that still push blocks (a few trials of the holdout they are reported on)."""

import json
from pathlib import Path

import pytest
from stable_baselines3 import SAC

from selfplay.evaluation import run_workspace
from tests.test_evaluate import evaluate_cli

MODELS = Path(__file__).resolve().parent.parent / "models"
# name -> the arm's step (m) its training run used; each README.md reports 100 trials of Push1
SHIPPED = {"bob_near_push_sac": 0.05, "bob_selfplay_sac": 0.025}


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_bob_opens_in_its_training_workspace(name):
    bob = SAC.load(MODELS / name / "bob.zip", device="cpu")
    assert bob.observation_space["objects"].shape[0] == 1  # one object slot, as trained
    workspace = run_workspace(MODELS / name / "bob.zip")  # read from the config.yaml beside the zip
    assert workspace is not None and workspace["placement_low"] == (-0.15, -0.1)
    assert workspace["control"].max_translation == SHIPPED[name]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_bob_solves_push_goals_zero_shot(tmp_path, name):
    result = evaluate_cli(f"checkpoint={MODELS / name / 'bob.zip'}", "tasks=[Tabletop/Push1-v0]", "trials=12", "workers=0",
                          f"out={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    push = json.loads((tmp_path / "results.json").read_text())["Tabletop/Push1-v0"]
    # 41 % and 78 % over 100 trials (models/<name>/README.md); a random Bob: 2-6 %, i.e. ~1 of 12 trials
    assert push["successes"] >= 3, push
