"""The Ray backend (trainer.vec_env=ray) on a private local Ray: the same games as DummyVecEnv,
and a worker killed mid-run whose half-played games never reach a buffer."""

import csv
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfplay.training import Trainer
from selfplay.vec_env import GameWorkersLost, make_vec_env
from tests.helpers import import_ray, tiny_config

ray = import_ray()
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_ray_games_match_dummy_vec_env(local_ray):
    """Same factories, same actions: identical observations, rewards, dones and auto-resets,
    with games split unevenly over three workers."""
    dummy = make_vec_env(tiny_config(**{"trainer.n_games": 4}))
    remote = make_vec_env(tiny_config(**{"trainer.n_games": 4, "trainer.vec_env": "ray", "ray.workers": 3}))
    try:
        assert [len(share) for share in remote.shares] == [2, 1, 1]
        expected, got = dummy.reset(), remote.reset()
        assert expected.keys() == got.keys() and all(np.array_equal(expected[k], got[k]) for k in expected)
        rng = np.random.default_rng(0)
        finished = 0
        for _ in range(120):
            actions = rng.integers(0, 11, size=(4, 6))
            (obs_d, rew_d, done_d, info_d), (obs_r, rew_r, done_r, info_r) = dummy.step(actions), remote.step(actions)
            assert all(np.array_equal(obs_d[k], obs_r[k]) for k in obs_d)
            np.testing.assert_array_equal(rew_d, rew_r)
            np.testing.assert_array_equal(done_d, done_r)
            assert [sorted(i) for i in info_d] == [sorted(i) for i in info_r]
            finished += int(done_d.sum())
        assert finished > 0  # auto-resets were exercised
        remote.set_attr("tag", "x", indices=[1, 3])
        assert remote.get_attr("tag", indices=[1, 3]) == ["x", "x"]
        assert [p["games"] for p in remote.places()] == [2, 1, 1]
        assert sum(p["steps"] for p in remote.places()) == 4 * 120
        assert remote.restarts == 0
    finally:
        dummy.close()
        remote.close()
    assert ray.is_initialized()  # an env that found Ray running leaves it running


def test_killed_worker_restarts_and_its_games_never_reach_a_buffer(local_ray, tmp_path):
    cfg = tiny_config(**{"trainer.n_games": 4, "trainer.vec_env": "ray", "ray.workers": 2, "trainer.total_steps": 10**6})
    trainer = Trainer(cfg, tmp_path)
    trainer._open_logs()
    handed = []  # what the collector hands to the learners (PPO buffers, ABC demonstrations)
    take_batches = trainer.collector.take_batches
    trainer.collector.take_batches = lambda *args: handed.append(take_batches(*args)) or handed[-1]
    try:
        trainer.iteration()
        collector, venv = trainer.collector, trainer.venv
        victim_games = venv.shares[0]
        for _ in range(100):  # mid-update: step until the victim's games hold transitions not yet handed over
            collector.collect(venv.num_envs)
            if all(collector.streams[g][0] or collector.streams[g][1] for g in victim_games):
                break
        else:
            pytest.fail("the victim's games never held open trajectories")
        dead = {collector.episodes[g] for g in victim_games}
        old_pid = venv.places()[0]["pid"]
        os.kill(old_pid, signal.SIGKILL)

        row = trainer.iteration()
        assert row["game/worker_restarts"] == 1 and row["game/lost_games"] == len(victim_games)
        assert set(collector.lost_episodes) == dead
        batches, demos = handed[-1]
        handed_episodes = set().union(*(set(b["episodes"]) for b in batches if b is not None))
        assert not handed_episodes & dead
        assert demos is None or not set(demos["episodes"]) & dead
        assert handed_episodes  # the other worker's games were kept

        # the run goes on: the replaced worker's fresh games feed the next update
        fresh = {collector.episodes[g] for g in victim_games}
        trainer.iteration()
        assert trainer.counters["updates"] == 3
        assert venv.places()[0]["pid"] != old_pid and venv.places()[0]["steps"] > 0
        handed_now = set().union(*(set(b["episodes"]) for b in handed[-1][0] if b is not None))
        assert handed_now & fresh and not handed_now & dead
        trainer.checkpoint()
    finally:
        trainer.close()
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["game/worker_restarts"]) for r in rows] == [0, 1, 1]
    assert [int(r["game/lost_games"]) for r in rows] == [0, len(victim_games), 0]


def test_past_max_restarts_the_run_stops_with_game_workers_lost(local_ray, tmp_path):
    cfg = tiny_config(**{"trainer.n_games": 2, "trainer.vec_env": "ray", "ray.workers": 2, "ray.max_restarts": 0})
    trainer = Trainer(cfg, tmp_path)
    try:
        os.kill(trainer.venv.places()[1]["pid"], signal.SIGKILL)
        with pytest.raises(GameWorkersLost, match="max_restarts=0"):
            trainer.iteration()
    finally:
        trainer.close()


@pytest.mark.parametrize("override, message", [
    ("ray.address=127.0.0.1:1", "config error: ray.address: no Ray head answers at 127.0.0.1:1"),
    ("ray.cpus_per_worker=1000", "config error: ray.workers:"),
])
def test_unusable_ray_settings_stop_at_once_with_a_message_and_no_run_folder(override, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "selfplay.train", "trainer.vec_env=ray", override, "logger.wandb.mode=disabled",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
