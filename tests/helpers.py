"""Shared builders for selfplay tests."""

from selfplay.config import Config, make_config

TINY = {
    "game": {"alice_steps": 20, "bob_steps_per_object": 20, "max_goals": 2},
    "trainer": {"total_steps": 512, "n_games": 2, "rollout_steps": 256, "checkpoint_every": 1},
    "alice": {"batch_size": 64, "width": 32, "head": [32]},
    "bob": {"batch_size": 64, "width": 32, "head": [32]},
    "logger": {"wandb": {"mode": "disabled"}, "progress": "lines"},
}


def tiny_config(**overrides) -> Config:
    """A Config small enough for tests (validated like a command line's)."""
    return make_config(TINY, **overrides)


def import_ray():
    """Ray, or a skip when the ``ray`` extra is not installed. CI sets SELFPLAY_REQUIRE_RAY=1 so
    that the Ray tests fail there instead of being skipped."""
    import os

    import pytest

    if os.environ.get("SELFPLAY_REQUIRE_RAY") == "1":
        import ray

        return ray
    return pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
