"""The training entry point end to end: run folder contents, resume, a real kill, bad config."""

import csv
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import pytest
from stable_baselines3 import PPO

from selfplay.checkpoint import latest_checkpoint, read_counters
from selfplay.events import INVALID_REASONS
from selfplay.training import Trainer
from tabletop_env import DiscreteActions
from tests.helpers import ROOT, TINY_ARGS, tiny_config, train_cli

TINY = TINY_ARGS


def test_a_short_run_writes_config_checkpoints_metrics_and_wandb(tmp_path):
    run = tmp_path / "run"
    result = train_cli(*TINY, "trainer.total_steps=512", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "config.yaml").exists()
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "bob/success_rate" in rows[0] and "abc/demonstrations" in rows[0]
    for row in rows:  # every goal is valid or invalid for one reason
        shares = [float(row["alice/valid_goal_rate"])] + [float(row[f"alice/{r}_rate"]) for r in INVALID_REASONS]
        assert sum(shares) == pytest.approx(1.0)
    checkpoint = latest_checkpoint(run)
    assert read_counters(checkpoint)["env_steps"] >= 512
    assert list((run / "wandb").glob("offline-run-*")), "no offline wandb run"
    # Bob's checkpoint is a standard SB3 zip that acts on a holdout task
    bob = PPO.load(checkpoint / "bob.zip", device="cpu")
    env = DiscreteActions(gym.make("Tabletop/Push1-v0", structured_keys=True))  # the keys Bob reads
    obs, _ = env.reset(seed=0)
    action, _ = bob.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    env.step(action)


def test_resume_continues_counters_pool_and_weights(tmp_path):
    cfg = tiny_config(**{"trainer.total_steps": 512, "pool.every": 1})
    first = Trainer(cfg, tmp_path)
    first.train()
    weights = {k: v.clone() for k, v in first.learners[1].policy.state_dict().items()}
    resumed_cfg = tiny_config(**{"trainer.total_steps": 1024, "pool.every": 1, "resume": str(tmp_path)})
    second = Trainer(resumed_cfg, tmp_path)
    assert second.counters["env_steps"] == first.counters["env_steps"]
    assert second.counters["updates"] == first.counters["updates"]
    assert len(second.pool.snapshots[0]) == len(first.pool.snapshots[0]) > 0
    for k, v in second.learners[1].policy.state_dict().items():
        assert (v == weights[k]).all(), k
    second.train()
    assert second.counters["env_steps"] >= 1024
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + second.counters["updates"]


def test_an_agent_starts_from_a_zip_trained_with_other_object_slots(tmp_path):
    """bob.init_from: the weights of another run's Bob (one object slot) in a run with two; a
    zip of another network width is refused, naming the key."""
    import torch

    from selfplay.config import ConfigError

    folders = {name: tmp_path / name for name in ("one", "two", "fresh", "wider")}
    for folder in folders.values():
        folder.mkdir()
    source = Trainer(tiny_config(**{"trainer.total_steps": 256, "env.max_objects": 1}), folders["one"])
    source.train()
    weights = source.learners[1].policy.state_dict()
    zip_path = latest_checkpoint(folders["one"]) / "bob.zip"
    two_blocks = {"env.max_objects": 2, "env.n_objects": 2}
    started = Trainer(tiny_config(**two_blocks, **{"bob.init_from": str(zip_path)}), folders["two"])
    fresh = Trainer(tiny_config(**two_blocks), folders["fresh"])
    try:
        for key, value in started.learners[1].policy.state_dict().items():
            assert torch.equal(value, weights[key]), key
        assert not all(torch.equal(v, weights[k]) for k, v in fresh.learners[1].policy.state_dict().items())
    finally:
        started.close(), fresh.close()
    width = source.cfg.bob.width + 8
    with pytest.raises(ConfigError, match=f"bob.init_from: bob.width is {width}"):
        Trainer(tiny_config(**{"bob.width": width, "bob.init_from": str(zip_path)}), folders["wider"])


def test_checkpoints_at_the_keep_steps_marks_survive_pruning_and_a_resume(tmp_path):
    settings = {"trainer.checkpoint_every": 1, "trainer.keep_checkpoints": 1, "trainer.keep_steps": [300, 600, 5000]}
    Trainer(tiny_config(**settings, **{"trainer.total_steps": 768}), tmp_path).train()  # updates of 256 steps
    kept = lambda: sorted(int(p.name.split("-")[1]) for p in (tmp_path / "checkpoints").glob("step-*"))  # noqa: E731
    assert kept() == [512, 768]  # the first at or after 300 and 600; 768 is also the newest
    Trainer(tiny_config(**settings, **{"trainer.total_steps": 1280, "resume": str(tmp_path)}), tmp_path).train()
    assert kept() == [512, 768, 1280]  # the marks' checkpoints stay when newer ones come; 1024 went
    assert read_counters(latest_checkpoint(tmp_path))["env_steps"] == 1280


def test_a_killed_run_loses_at_most_one_checkpoint_interval(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_ERROR_REPORTING": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "selfplay.train", *TINY, "trainer.total_steps=100000", "logger.wandb.mode=disabled",
         f"hydra.run.dir={run}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(list((run / "checkpoints").glob("step-*"))) < 2:
            time.sleep(0.2)
        time.sleep(0.7)  # land somewhere inside the next interval, maybe mid-write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    checkpoint = latest_checkpoint(run)
    counters = read_counters(checkpoint)
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert counters["updates"] >= len(rows) - 1  # at most one update (= one interval) lost
    PPO.load(checkpoint / "bob.zip", device="cpu")
    PPO.load(checkpoint / "alice.zip", device="cpu")
    result = train_cli(*TINY, f"resume={run}", f"trainer.total_steps={counters['env_steps'] + 256}", "logger.wandb.mode=disabled")
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_counters(latest_checkpoint(run))["env_steps"] > counters["env_steps"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.total_steps=-5", "trainer.total_steps"),
        ("trainer.vec_env=ray9", "trainer.vec_env"),
        ("trainer.keep_steps=[600000,0]", "trainer.keep_steps"),
        ("trainer.bogus=1", "bogus"),
        ("experiment=nonexistent", "experiment"),
        ("resume=/nonexistent/run", "resume"),
        ("trainer.n_games=two", "n_games"),
        ("env.home_tool_position=[0,0,-1]", "env.home_tool_position"),
        ("env=blocks2 env.placement_low=[0,0] env.placement_high=[0.06,0.06]", "env.placement_low/high"),
        ("eval.every=1 eval.tasks=[Tabletop/Push8-v0]", "eval.tasks"),
        ("trainer.vec_env=ray ray.workers=-1", "ray.workers"),
        ("teacher=uniform teacher.goal_distance=[0.08,0.04]", "teacher.goal_distance"),
        ("game.alice_start=reset", "game.alice_start"),
        ("game.alice_start_distance=[0.01,0.03]", "game.alice_start_distance"),
        ("game.bob_hindsight=all", "game.bob_hindsight"),
        ("game.translation_scale=0", "game.translation_scale"),
        ("game.rotation_tolerance_from=0.1 game.rotation_tolerance_steps=1000", "game.rotation_tolerance_from"),
        ("game.rotation_tolerance_from=0.6", "game.rotation_tolerance_steps"),
        ("bob.algo=dqn", "agent.algo"),
        ("bob.init_from=/nonexistent/bob.zip", "bob.init_from"),
        ("trainer.learn_during_collection=true", "trainer.learn_during_collection"),  # Bob learns by PPO
    ],
)
def test_bad_config_stops_at_once_with_a_message_naming_it(override, message, tmp_path):
    result = train_cli(*override.split(), f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ray_backend_without_ray_installed_is_one_line_saying_how_to_install(tmp_path):
    """Ray hidden from the import system (as on a machine without the extra)."""
    from selfplay.vec_env import RAY_INSTALL_HINT

    code = ("import runpy, sys; sys.modules['ray'] = None; "
            f"sys.argv = ['selfplay.train', 'trainer.vec_env=ray', 'hydra.run.dir={tmp_path / 'run'}']; "
            "runpy.run_module('selfplay.train', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("pybullet build time")]  # pybullet's import banner
    assert lines == [RAY_INSTALL_HINT]
    assert not (tmp_path / "run").exists()


def test_named_experiments_compose():
    from selfplay.config import Config, compose_config

    names = sorted(p.stem for p in (ROOT / "selfplay" / "conf" / "experiment").glob("*.yaml"))
    assert {"quickstart", "paper_blocks", "ladder_bob_near", "ladder_bob_near_sac", "baseline_uniform"} <= set(names)
    for name in names:  # every shipped experiment composes and validates
        cfg = compose_config([f"experiment={name}"])
        assert isinstance(cfg, Config) and cfg.name == name
    sac_rung = compose_config(["experiment=ladder_bob_near_sac"])
    assert sac_rung.bob.algo == "sac" and sac_rung.teacher.goal_distance == [0.04, 0.08] and sac_rung.game.position_only
    assert compose_config(["experiment=ablation_no_abc"]).abc.enabled is False
    assert compose_config(["experiment=baseline_uniform"]).teacher.name == "uniform"
    assert compose_config(["experiment=ablation_single_goal"]).game.max_goals == 1
    default, paper = compose_config(), compose_config(["experiment=paper_blocks"])
    assert paper.bob.learning_rate == 3e-4 and paper.game.alice_steps == 100  # docs/method.md's numbers
    assert paper.env.placement_high == [0.2, 0.25] and default.env.placement_high != paper.env.placement_high


def test_light_holdout_evaluation_during_training_is_logged(tmp_path):
    cfg = tiny_config(**{"trainer.total_steps": 256, "eval.every": 1, "eval.trials": 1, "eval.tasks": "[Tabletop/Stack2-v0]"})
    trainer = Trainer(cfg, tmp_path)
    row = trainer.train()
    assert row["eval/Tabletop/Stack2-v0/success"] in (0.0, 1.0)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "eval/Tabletop/Stack2-v0/success" in header and "eval/Tabletop/Stack2-v0/distance" in header
    assert 0 <= row["eval/Tabletop/Stack2-v0/distance"] < 1  # metres


def test_game_video_is_written(tmp_path):
    trainer = Trainer(tiny_config(**{"game.alice_steps": 5, "game.bob_steps_per_object": 5}), tmp_path)
    path = trainer.record_video(max_steps=40)
    trainer.close()
    assert path.exists() and path.stat().st_size > 1000
