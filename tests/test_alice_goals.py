"""What Alice discovers: goals.csv rows agree with the game's goals, and the report (table,
picture, command line) is written from them."""

import subprocess
import sys

import numpy as np

from selfplay.events import GoalResult
from selfplay.training import Trainer
from selfplay.training.alice_goals import COLUMNS, GOALS_FILE, goal_rows, phase_table, read_goals
from tests.helpers import ROOT, tiny_config


def test_goal_rows_are_one_per_object_of_each_valid_goal():
    start = np.array([[0.0, 0.0, 0.025, 0, 0, 0, 1], [0.1, 0.0, 0.025, 0, 0, 0, 1]])
    goal = start.copy()
    goal[0, :3] = [0.03, 0.04, 0.125]  # 5 cm across, 10 cm up
    goals = [GoalResult(index=0, valid=True, moved=1, lifted=1, bob_success=False, start=start, goal=goal,
                        turns=np.array([0.0, 0.5])),
             GoalResult(index=1, valid=False)]
    rows = goal_rows(goals, env_steps=100, updates=2)
    assert [r["object"] for r in rows] == [0, 1]
    assert np.isclose(rows[0]["travel"], np.sqrt(0.03**2 + 0.04**2 + 0.1**2)) and np.isclose(rows[0]["rise"], 0.1)
    assert rows[1]["travel"] == 0.0 and rows[0]["bob_success"] == 0 and rows[0]["updates"] == 2
    assert [r["turn"] for r in rows] == [0.0, 0.5]
    assert [rows[0][f"goal_q{axis}"] for axis in "xyzw"] == [0, 0, 0, 1] and rows[1]["start_qw"] == 1


def test_a_self_play_run_logs_alice_goals_and_reports_them(tmp_path):
    trainer = Trainer(tiny_config(**{"trainer.total_steps": 1024}), tmp_path)
    trainer.train()
    goals = read_goals(tmp_path / GOALS_FILE)
    assert len(goals["env_steps"]) >= 1
    assert (goals["travel"] > 0.0).any() and (goals["env_steps"] <= 1024).all()
    assert np.all((goals["turn"] >= 0.0) & (goals["turn"] <= np.pi))
    # the table covers every valid goal once
    table = phase_table(goals)
    assert sum(int(row[1]) for row in table) == int((goals["object"] == 0).sum())
    assert all(len(row) == len(COLUMNS) for row in table)
    assert (tmp_path / "alice_goals.png").stat().st_size > 10_000 and "objects moved" in (tmp_path / "alice_goals.md").read_text()
    # and from the command line, for any run folder
    (tmp_path / "alice_goals.md").unlink()
    done = subprocess.run([sys.executable, "-m", "selfplay.alice_goals", f"run={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "travel cm" in done.stdout and (tmp_path / "alice_goals.md").exists()


def test_the_report_command_says_what_is_wrong(tmp_path):
    done = subprocess.run([sys.executable, "-m", "selfplay.alice_goals", f"run={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "no goals.csv" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "selfplay.alice_goals"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
