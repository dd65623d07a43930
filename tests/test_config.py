"""One source of truth: every default lives in selfplay/conf/ (inside the package), the schema
only types and limits; Python users and tests start from the user's defaults; the game's rules,
rewards included, come from conf/game/."""

import subprocess
import sys
from dataclasses import fields, is_dataclass

import pytest
from omegaconf import OmegaConf

import selfplay
from selfplay.config import CONF_DIR, Config, ConfigError, EvaluateConfig, compose, compose_config, make_config
from selfplay.events import GoalResult
from selfplay.vec_env import GAME_SCHEDULES, game_config
from tests.helpers import ROOT, import_ray


def _leaves(node, prefix=""):
    for key in node.keys():
        child = node._get_node(key)
        if OmegaConf.is_dict(child) and not child._is_missing():
            yield from _leaves(child, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", child


@pytest.mark.parametrize("schema", [Config, EvaluateConfig])
def test_the_schema_holds_no_default_values(schema):
    with_value = [key for key, node in _leaves(OmegaConf.structured(schema)) if not node._is_missing() and key != "experiment"]
    assert with_value == []


def test_python_users_start_from_the_users_defaults():
    assert make_config() == compose_config()
    default = make_config()
    assert default.bob.learning_rate == 1e-3 and default.bob.width == 64 and default.trainer.n_games == 16  # selfplay/conf's


def test_the_config_files_ship_inside_the_package():
    assert CONF_DIR.parent.samefile(selfplay.__path__[0])
    assert (CONF_DIR / "config.yaml").is_file() and (CONF_DIR / "evaluate.yaml").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"conf/**/*.yaml"' in pyproject  # installed with the package (package-data)


def test_training_composes_its_config_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "selfplay.train", "--cfg", "job", "game.alice_steps=7"], cwd=tmp_path,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "alice_steps: 7" in result.stdout and "alice_bob_failed_reward: 5.0" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_multiruns_land_under_runs():
    hydra = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml").hydra)  # unresolved
    assert hydra["sweep"]["dir"].startswith("runs/") and hydra["run"]["dir"].startswith("${selfplay_run_dir:")


def test_the_games_rules_and_rewards_come_from_the_config():
    cfg = make_config(**{"game.alice_bob_failed_reward": 2.0, "game.alice_outside_penalty": -1.0, "game.bob_success_reward": 9.0})
    rules = game_config(cfg)
    assert rules.bob_success_reward == 9.0
    assert rules.alice_reward(GoalResult(0, valid=True, outside=True, bob_success=False)) == 1.0 + 2.0 - 1.0
    assert rules.alice_reward(GoalResult(0, valid=True, bob_success=True)) == 1.0
    assert rules.alice_reward(GoalResult(0, valid=False)) == 0.0
    schema_rules = {f.name for f in fields(type(cfg.game))} - set(GAME_SCHEDULES)  # the trainer follows those
    assert schema_rules <= {f.name for f in fields(rules)} and is_dataclass(rules)


def test_a_position_first_curriculum_starts_the_games_position_only_and_needs_the_full_rule_after():
    assert game_config(make_config(**{"game.position_first_steps": 5000})).position_only
    assert not game_config(make_config()).position_only
    with pytest.raises(ConfigError, match="game.position_first_steps"):
        make_config(**{"game.position_first_steps": 5000, "game.position_only": True})
    with pytest.raises(ConfigError, match="game.position_first_steps"):
        make_config(**{"game.position_first_steps": -1})


def test_learner_and_evaluation_settings_are_reachable_from_config():
    cfg = compose_config(["bob.target_kl=0.02", "bob.clip_range_vf=0.3", "abc.batch_size=128", "trainer.device=cpu",
                          "eval.goals_per_episode=3"])
    assert (cfg.bob.target_kl, cfg.bob.clip_range_vf, cfg.abc.batch_size, cfg.trainer.device, cfg.eval.goals_per_episode) == (
        0.02, 0.3, 128, "cpu", 3)
    assert OmegaConf.to_object(compose("evaluate", ["checkpoint=x", "goals_per_episode=2"])).goals_per_episode == 2


def test_make_test_all_runs_the_slow_tests_that_make_test_leaves_out():
    import_ray()  # the slow test lives in a Ray module
    collect = lambda *marker: subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *marker, "tests/test_ray_cluster.py"],  # noqa: E731
                                             cwd=ROOT, capture_output=True, text=True, timeout=120).stdout
    assert "test_training_spreads_its_games_over_two_nodes" not in collect()  # make test: pyproject's -m 'not slow'
    assert "test_training_spreads_its_games_over_two_nodes" in collect("-m", "slow or not slow")  # make test-all
    assert '-m "slow or not slow"' in (ROOT / "Makefile").read_text()


def test_physics_and_control_settings_reach_the_simulator(tmp_path):
    from selfplay.vec_env import make_game

    cfg = compose_config(["+env.physics.substeps=5", "+env.control.max_translation=0.03"])
    game = make_game(cfg, seed=0)
    assert game.sim.sim.physics.substeps == 5 and game.sim.robot.control.max_translation == 0.03
    game.close()
    with pytest.raises(Exception, match="env.physics: no such setting bogus"):
        compose_config(["+env.physics.bogus=1"])


def test_a_resume_keeps_the_saved_runs_control_and_physics_settings(tmp_path):
    """The saved config.yaml of an experiment that sets simulator overrides (``env.control``,
    a free-form section) resumes with them, and an unknown key in it is still refused."""
    from selfplay.train import resolve_config

    saved = compose("config", ["experiment=ladder_full_sac_position", "+env.physics.solver_iterations=20"])
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml({k: v for k, v in saved.items() if k != "hydra"}))
    config, _ = resolve_config(compose("config", [f"resume={tmp_path}"]))
    assert config.env.control == {"max_translation": 0.025} and config.env.physics == {"solver_iterations": 20}
    assert config.bob.algo == "sac" and config.resume == str(tmp_path)
    broken = OmegaConf.load(tmp_path / "config.yaml")
    broken.trainer.bogus_key = 1
    OmegaConf.save(broken, tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="trainer.bogus_key"):
        resolve_config(compose("config", [f"resume={tmp_path}"]))
