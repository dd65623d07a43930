"""Zero-shot evaluation: protocol, intervals, report files, determinism, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfplay.evaluation import evaluate_task, wilson_interval
from selfplay.game import BOB
from selfplay.learning import agent_observation_space, build_learner
from selfplay.vec_env import make_game
from tabletop_env import list_tasks, make_task
from tabletop_env.state import quaternion_multiply
from tests.helpers import Oracle, idle, tiny_config

ROOT = Path(__file__).resolve().parent.parent


def test_wilson_interval():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_multi_goal_episodes_count_goals_until_the_first_failure():
    solved, _ = evaluate_task(Oracle(), "Tabletop/Push1-v0", trials=3)
    assert (solved.goals, solved.successes, solved.success_rate) == (15, 15, 1.0)  # 5 goals each
    assert solved.mean_steps_to_success == 1.0
    assert solved.mean_final_distance < 0.005 < 0.04 < solved.mean_start_distance  # goals are apart
    stacked, _ = evaluate_task(Oracle(), "Tabletop/Stack2-v0", trials=3)
    assert stacked.goals == 3  # fixed layout: one goal per episode
    failed, _ = evaluate_task(idle, "Tabletop/Push1-v0", trials=2)
    assert (failed.goals, failed.successes, failed.failures) == (2, 0, {"timeout": 2})
    assert failed.steps == 2 * 200  # the task's timeout
    assert failed.mean_final_distance == pytest.approx(failed.mean_start_distance, abs=0.005)  # nothing moved
    assert failed.failed_positions == {"never": 2, "left": 0, "at_end": 0}


class _TurnedOracle(Oracle):
    """Puts the block on its goal position turned 45 degrees (``settle``: then leaves it alone),
    or, with ``leave``, moves it 10 cm off again after 3 steps."""

    def __init__(self, leave: bool = False):
        self.leave, self.calls = leave, 0

    def __call__(self, obs):
        self.calls += 1
        pose = self.env.goal.copy()
        if self.leave and self.calls > 3:
            pose[0, 0] += 0.10
        yaw_45 = np.array([0.0, 0.0, np.sin(np.pi / 8), np.cos(np.pi / 8)])  # 0.79 rad off, whatever the block's symmetry
        pose[0, 3:] = quaternion_multiply(yaw_45, pose[0, 3:])
        self.env.set_object_poses(pose)
        return np.zeros(6)


def test_failed_goals_say_whether_the_block_was_in_place_and_when():
    """The report's near misses: in place with its rotation off at the end, or in place and left."""
    turned, _ = evaluate_task(_TurnedOracle(), "Tabletop/Push1-v0", trials=1)
    assert (turned.successes, turned.failed_positions) == (0, {"never": 0, "left": 0, "at_end": 1})
    left, _ = evaluate_task(_TurnedOracle(leave=True), "Tabletop/Push1-v0", trials=1)
    assert (left.successes, left.failed_positions) == (0, {"never": 0, "left": 1, "at_end": 0})


def _bob_zip(tmp_path, **overrides) -> Path:
    cfg = tiny_config(**overrides)
    game = make_game(cfg, seed=0)
    bob = build_learner(cfg, BOB, agent_observation_space(game.observation_space), game.action_space)
    path = tmp_path / "bob.zip"
    bob.save(path)
    return path


def evaluate_cli(*args):
    return subprocess.run([sys.executable, "-m", "selfplay.evaluate", *args, "progress=false"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_writes_the_report_and_is_deterministic(tmp_path):
    bob = _bob_zip(tmp_path)
    tasks = "tasks=[Tabletop/Push1-v0,Tabletop/Row3-v0]"
    first = evaluate_cli(f"checkpoint={bob}", tasks, "trials=2", "deterministic=false", f"out={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-2000:]
    second = evaluate_cli(f"checkpoint={bob}", tasks, "trials=2", "deterministic=false", f"out={tmp_path / 'b'}")
    assert second.returncode == 0, second.stderr[-2000:]
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in "ab")
    for task in a:
        assert a[task].pop("seconds") > 0 and b[task].pop("seconds") > 0  # wall time: the one thing that may differ
    assert a == b and set(a) == {"Tabletop/Push1-v0", "Tabletop/Row3-v0"}
    assert a["Tabletop/Push1-v0"]["goals"] >= 2
    assert "block push 1" in (tmp_path / "a" / "results.md").read_text()  # the paper's number beside ours
    assert (tmp_path / "a" / "success.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, message",
    [
        (["tasks=[Tabletop/Juggle-v0]"], "valid ids"),
        (["checkpoint=/nonexistent/bob.zip"], "no checkpoint"),
        (["run=/nonexistent/run"], "no run folder"),
        (["trials=0"], "trials"),
        (["workspace=mine"], "workspace"),
        (["more_objects=maybe"], "more_objects"),
    ],
)
def test_bad_input_is_named(args, message, tmp_path):
    if not any(a.startswith(("checkpoint=", "run=")) for a in args):
        args = [f"checkpoint={_bob_zip(tmp_path)}", *args]
    result = evaluate_cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_task_with_more_objects_than_slots_is_refused_by_name_when_not_widened(tmp_path):
    bob = _bob_zip(tmp_path, **{"env.max_objects": 4, "env.n_objects": 1})
    result = evaluate_cli(f"checkpoint={bob}", "tasks=[Tabletop/Push8-v0]", "trials=1", "more_objects=skip")
    assert result.returncode == 2 and "object slot" in result.stderr and "more_objects=widen" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_task_with_skip_means_those_the_bob_has_object_slots_for(tmp_path):
    """A one-slot Bob evaluated on every holdout with more_objects=skip runs the one-object tasks
    and lists the others as not run, with the reason."""
    bob = _bob_zip(tmp_path, **{"env.max_objects": 1})
    result = evaluate_cli(f"checkpoint={bob}", "trials=1", "workers=0", "more_objects=skip", f"out={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    ran = set(json.loads((tmp_path / "eval" / "results.json").read_text()))
    one_object = {t for t in list_tasks() if len(make_task(t).objects) == 1}
    assert ran == one_object and "Tabletop/Push1-v0" in ran
    report = (tmp_path / "eval" / "results.md").read_text()
    assert "- Tabletop/Stack2-v0: 2 objects, but this Bob has 1 object slot" in report


def test_a_one_slot_bob_plays_tasks_with_more_objects_widened_and_the_report_says_so(tmp_path):
    bob = _bob_zip(tmp_path, **{"env.max_objects": 1})
    result = evaluate_cli(f"checkpoint={bob}", "tasks=[Tabletop/Push1-v0,Tabletop/Stack2-v0,Tabletop/Row3-v0]", "trials=2",
                          f"out={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {t: r["trained_object_slots"] for t, r in results.items()} == {
        "Tabletop/Push1-v0": None, "Tabletop/Stack2-v0": 1, "Tabletop/Row3-v0": 1}
    assert all(r["trials"] == 2 and r["seconds"] > 0 for r in results.values())
    report = (tmp_path / "eval" / "results.md").read_text()
    assert "| Tabletop/Stack2-v0 † |" in report and "| Tabletop/Push1-v0 |" in report
    assert "More objects than Bob trained with (1 object slot)" in report and "Wall time:" in report


def test_widening_the_object_slots_keeps_bobs_policy_on_the_objects_he_has(tmp_path):
    """A two-slot Bob widened to eight slots acts and values a two-block scene as before: the
    object-set network pools over the real objects only (the env pads the rest)."""
    import torch

    from selfplay.evaluation.policy import load_bob, object_slots, widen_object_slots
    from tabletop_env import TabletopEnv

    model, path = load_bob(None, str(_bob_zip(tmp_path, **{"env.max_objects": 2, "env.n_objects": 2})))
    wide = widen_object_slots(model, path, 8)
    assert (object_slots(model), object_slots(wide)) == (2, 8)
    values = []
    for bob, slots in ((model, 2), (wide, 8)):
        env = TabletopEnv(task="Tabletop/Push2-v0", max_objects=slots)
        obs, _ = env.reset(seed=3)
        env.close()
        batch = {k: obs[k][None] for k in bob.observation_space.spaces}
        tensors, _ = bob.policy.obs_to_tensor(batch)
        with torch.no_grad():
            values.append((bob.policy.predict_values(tensors).item(), bob.policy.get_distribution(tensors).distribution))
    assert values[0][0] == pytest.approx(values[1][0], abs=1e-5)
    for before, after in zip(values[0][1], values[1][1]):  # one categorical per action dimension
        assert torch.allclose(before.logits, after.logits, atol=1e-5)


class PoseRecorder:
    """Stands still and records where objects and goals are (x, y) at every step."""

    def bind(self, env):
        self.env, self.xy = env, []

    def __call__(self, obs):
        n = self.env.n_objects
        self.xy += [obs["achieved_goal"].reshape(-1, 7)[:n, :2], self.env.goal[:, :2]]
        return np.array([0, 0, 0, 0, 0, 1.0])


SMALL = {"placement_low": (-0.12, -0.05), "placement_high": (0.0, 0.05), "home_tool_position": (-0.05, 0.0, 0.06)}


def test_tasks_run_in_the_given_workspace():
    recorder = PoseRecorder()
    evaluate_task(recorder, "Tabletop/Push2-v0", trials=4, env_kwargs=SMALL)
    xy = np.concatenate(recorder.xy)
    assert np.all(xy >= np.array(SMALL["placement_low"]) - 0.01) and np.all(xy <= np.array(SMALL["placement_high"]) + 0.01)
    assert recorder.env.home_tool_position == SMALL["home_tool_position"]
    evaluate_task(recorder, "Tabletop/Push2-v0", trials=4)  # the default area is larger
    xy = np.concatenate(recorder.xy)
    assert np.any(xy < np.array(SMALL["placement_low"])) or np.any(xy > np.array(SMALL["placement_high"]))


def test_a_runs_arm_and_physics_overrides_reach_its_evaluation(tmp_path):
    from selfplay.evaluation import run_workspace

    step = tmp_path / "checkpoints" / "step-000000001"
    step.mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("env:\n  control:\n    max_translation: 0.025\n  physics:\n    solver_iterations: 40\n")
    workspace = run_workspace(step / "bob.zip")
    assert workspace["control"].max_translation == 0.025 and workspace["physics"].solver_iterations == 40


def test_a_bob_that_reads_the_rotation_to_its_goal_is_evaluated_with_it(tmp_path):
    """env.goal_rotation changes Bob's goal features (13 per object, not 10): the evaluation
    builds its envs to match the zip, even a loose one with no run config beside it."""
    bob = _bob_zip(tmp_path, **{"env.goal_rotation": "true"})
    result = evaluate_cli(f"checkpoint={bob}", "tasks=[Tabletop/Push1-v0]", "trials=1", f"out={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["Tabletop/Push1-v0"]["trials"] == 1


def test_a_resume_that_would_change_the_goal_features_names_the_key(tmp_path):
    from selfplay.training.resume import architecture_mismatch

    saved = _bob_zip(tmp_path, **{"env.goal_rotation": "true"})
    cfg = tiny_config()
    game = make_game(cfg, seed=0)
    learner = build_learner(cfg, BOB, agent_observation_space(game.observation_space), game.action_space)
    assert architecture_mismatch(saved, learner, "bob") == "env.goal_rotation is False but the checkpoint was trained with True"


def test_a_run_is_evaluated_in_its_own_workspace(tmp_path):
    from selfplay.evaluation import run_workspace
    from omegaconf import OmegaConf

    from selfplay.training import Trainer, save_config

    overrides = {f"env.{key}": "[" + ",".join(map(str, value)) + "]" for key, value in SMALL.items()}
    cfg = tiny_config(**overrides, **{"trainer.total_steps": 256})
    (tmp_path / "run").mkdir()
    save_config(OmegaConf.to_yaml(cfg), tmp_path / "run")
    Trainer(cfg, tmp_path / "run").train()
    assert run_workspace(next((tmp_path / "run" / "checkpoints").glob("step-*")) / "bob.zip") == cfg.env.workspace()
    assert run_workspace(_bob_zip(tmp_path)) is None  # a loose zip: the default workspace
    for workspace, expected in [("run", "(-0.12, -0.05)-(0, 0.05)"), ("default", "(-0.2, -0.25)-(0.2, 0.25)")]:
        result = evaluate_cli(f"run={tmp_path / 'run'}", "tasks=[Tabletop/Push1-v0]", "trials=1", f"workspace={workspace}")
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
        assert expected in report["Tabletop/Push1-v0"]["workspace"]
        assert expected in (tmp_path / "run" / "eval" / "results.md").read_text()
    # 8 blocks do not fit its 12 x 10 cm area: named tasks stop with a clear line, "all" skips them
    result = evaluate_cli(f"run={tmp_path / 'run'}", "tasks=[Tabletop/Push8-v0]", "trials=1")
    assert result.returncode == 2 and "workspace=default" in result.stderr and "Traceback" not in result.stderr
