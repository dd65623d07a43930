"""Multi-node on one machine: a Ray cluster with a head and a second node (both local
processes; nothing leaves this machine), and a training run pointed at it from the command line."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import import_ray

ray = import_ray()
pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a two-node Ray cluster: the slowest test (~25 s); make test-all

REPO = Path(__file__).resolve().parent.parent


def test_training_spreads_its_games_over_two_nodes(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        second = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        head_id, second_id = cluster.head_node.node_id, second.node_id
        run_dir = tmp_path / "run"
        result = subprocess.run(
            [sys.executable, "-m", "selfplay.train", "trainer.vec_env=ray", f"ray.address={cluster.address}", "ray.workers=2",
             "trainer.n_games=4", "trainer.total_steps=1024", "trainer.rollout_steps=256", "game.alice_steps=20",
             "game.bob_steps_per_object=20", "alice.batch_size=64", "bob.batch_size=64", "eval.every=0",
             "logger.wandb.mode=disabled", "logger.progress=lines", f"hydra.run.dir={run_dir}"],
            cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        cluster.shutdown()
    log = (run_dir / "train.log").read_text()
    # "worker k on <host> (node <id8>): <steps>" for every worker when the run closes its env
    steps = {node: int(n) for node, n in re.findall(r"worker \d+ on \S+ \(node (\w+)\): (\d+)", log)}
    assert set(steps) == {head_id[:8], second_id[:8]}, log
    assert all(n > 0 for n in steps.values()) and sum(steps.values()) >= 1024
    assert (run_dir / "checkpoints").is_dir()
