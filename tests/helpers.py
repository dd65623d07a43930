"""Shared builders for selfplay tests."""

import os
import subprocess
import sys
from pathlib import Path

from selfplay.config import Config, make_config

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "game": {"alice_steps": 20, "bob_steps_per_object": 20, "max_goals": 2},
    "trainer": {"total_steps": 512, "n_games": 2, "rollout_steps": 256, "checkpoint_every": 1},
    "alice": {"batch_size": 64, "width": 32, "head": [32]},
    "bob": {"batch_size": 64, "width": 32, "head": [32]},
    "logger": {"wandb": {"mode": "disabled"}, "progress": "lines"},
}


#: The same small setup as command-line overrides (``python -m selfplay.train``).
TINY_ARGS = [
    "game.alice_steps=20", "game.bob_steps_per_object=20", "game.max_goals=2",
    "trainer.n_games=2", "trainer.rollout_steps=256", "trainer.checkpoint_every=1",
    "alice.batch_size=64", "bob.batch_size=64", "alice.width=32", "bob.width=32",
    "logger.progress=lines",
]


def tiny_config(**overrides) -> Config:
    """A Config small enough for tests (validated like a command line's)."""
    return make_config(TINY, **overrides)


def train_env(**extra: str) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false", "HYDRA_FULL_ERROR": "0", **extra}


def train_cli(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """``python -m selfplay.train <args>`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "selfplay.train", *args], cwd=ROOT, env=train_env(),
                          capture_output=True, text=True, timeout=timeout, **popen)


def import_ray():
    """Ray, or a skip when the ``ray`` extra is not installed. CI sets SELFPLAY_REQUIRE_RAY=1 so
    that the Ray tests fail there instead of being skipped."""
    import os

    import pytest

    if os.environ.get("SELFPLAY_REQUIRE_RAY") == "1":
        import ray

        return ray
    return pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
