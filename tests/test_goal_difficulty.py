"""Rung 3's "are Alice's late goals harder?" (benchmarks/goal_difficulty.py and the ladder's
verdict): one fixed Bob plays goals from both ends of a real run's goals.csv; the travel proxy."""

import csv
import json
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from selfplay.training import Trainer
from selfplay.training.alice_goals import read_goals
from tests.helpers import ROOT, tiny_config

sys.path.insert(0, str(ROOT / "benchmarks"))
from goal_difficulty import judge, travel_change  # noqa: E402
from learning_ladder import RUNGS, describe_pooled, pooled_harder, summarise  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real self-play run of 1,024 env steps: goals.csv (with orientations), config.yaml, Bob's zip."""
    run = tmp_path_factory.mktemp("run")
    config = tiny_config(**{"trainer.total_steps": 1024})
    Trainer(config, run).train()
    OmegaConf.save(OmegaConf.structured(config), run / "config.yaml")
    return run


def test_one_fixed_bob_judges_both_ends_of_the_run_the_same_way_twice(tiny_run):
    first = judge(tiny_run, goals_per_tenth=1, steps=20)  # auto: the full rule, as orientations are recorded
    again = judge(tiny_run, goals_per_tenth=1, steps=20, rule="full")
    assert first.judge.endswith("bob.zip") and first.rule == "full" and first.steps == 20
    for name in ("first tenth", "last tenth"):
        assert len(first.success[name]) + first.skipped[name] == 1
        np.testing.assert_array_equal(first.success[name], again.success[name])  # same seed, same verdict
    assert 0.0 <= first.p <= 1.0 and first.harder == (first.p < 0.05)
    assert first.travel_change == travel_change(read_goals(tiny_run / "goals.csv")["travel"])


def test_a_short_tenth_is_an_error_unless_played_whole(tiny_run):
    tenth = len(read_goals(tiny_run / "goals.csv")["travel"]) // 10
    with pytest.raises(SystemExit, match="fewer than --goals"):
        judge(tiny_run, goals_per_tenth=tenth + 1, steps=5)
    whole = judge(tiny_run, goals_per_tenth=tenth + 1, steps=5, at_most=True)
    assert all(len(s) + whole.skipped[name] == tenth for name, s in whole.success.items())


def test_the_full_rule_needs_recorded_orientations(tiny_run, tmp_path):
    for name in ("config.yaml", "checkpoints"):
        (tmp_path / name).symlink_to(tiny_run / name)
    with open(tiny_run / "goals.csv") as f:
        rows = list(csv.DictReader(f))
    kept = [k for k in rows[0] if "_q" not in k]  # an older run's columns
    with open(tmp_path / "goals.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, kept, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SystemExit, match="records no orientations"):
        judge(tmp_path, goals_per_tenth=1, steps=5, rule="full")
    assert judge(tmp_path, goals_per_tenth=1, steps=5).rule == "position"  # auto falls back


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(SystemExit, match="not a self-play run folder"):
        judge(tmp_path / "nowhere", goals_per_tenth=1)


def test_travel_change_compares_the_first_and_last_tenth():
    travel = np.r_[np.full(10, 0.10), np.linspace(0.10, 0.20, 80), np.full(10, 0.20)] + np.tile([0.0, 0.01], 50)
    change = travel_change(travel)
    assert change["first"] == pytest.approx(10.5) and change["last"] == pytest.approx(20.5) and change["p"] < 1e-6
    assert travel_change(travel[::-1])["p"] > 0.99  # shorter at the end: not harder


def test_rung_3_is_met_only_with_harder_goals(tiny_run):
    result = summarise(RUNGS[3], tiny_run)
    assert result.harder is not None and result.harder["rule"] == "full"
    assert result.met == (result.end >= 0.30 and result.minutes <= 63 and result.harder["harder"])
    cached = json.loads((tiny_run / "harder_goals.json").read_text())
    assert cached["p"] == result.harder["p"] and set(cached["travel_cm"]) == {"first", "last", "p"}


def test_the_verdict_is_cached_until_the_run_changes(tiny_run):
    path = tiny_run / "harder_goals.json"
    summarise(RUNGS[3], tiny_run)
    cached = json.loads(path.read_text())
    path.write_text(json.dumps({**cached, "p": 2.0}))  # a marker only the cache can return
    assert summarise(RUNGS[3], tiny_run).harder["p"] == 2.0
    path.write_text(json.dumps({**cached, "p": 2.0, "key": {**cached["key"], "goals_bytes": 1}}))  # goals since
    assert summarise(RUNGS[3], tiny_run).harder["p"] == cached["p"]


def test_pooled_verdict_combines_the_runs_evidence(tiny_run, tmp_path):
    verdicts, alone = pooled_harder([tiny_run])
    assert alone == pytest.approx(verdicts[str(tiny_run)]["p"], abs=1e-9)  # one run: its own p
    twin = tmp_path / "twin"  # a second run folder with the same goals and Bob
    twin.mkdir()
    for name in ("config.yaml", "goals.csv", "checkpoints"):
        (twin / name).symlink_to(tiny_run / name)
    for run in (tiny_run, twin):  # cached verdicts of z 1.75 each
        (run / "harder_goals.json").write_text(json.dumps({**verdicts[str(tiny_run)], "z": 1.7507}))
    assert pooled_harder([tiny_run, tiny_run, twin / ".." / "twin"])[1] == pytest.approx(0.0066, abs=1e-4)  # named twice: once
    verdicts, combined = pooled_harder([tiny_run, twin])
    assert combined == pytest.approx(0.0066, abs=1e-4)  # two runs' z 1.75 each: 2 x 1.75 / sqrt(2) = 2.47
    assert "combined one-sided p = 0.0066" in describe_pooled(verdicts, combined)
