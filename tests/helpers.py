"""Shared builders for selfplay tests: tiny configs and models."""

from omegaconf import OmegaConf

from selfplay.config import Config


def tiny_config(**overrides) -> Config:
    """A Config small enough for tests (validated like a command line's)."""
    base = OmegaConf.structured(Config)
    small = {
        "game": {"alice_steps": 20, "bob_steps_per_object": 20, "max_goals": 2},
        "trainer": {"total_steps": 512, "n_games": 2, "rollout_steps": 256, "checkpoint_every": 1},
        "alice": {"batch_size": 64, "width": 32, "head": [32]},
        "bob": {"batch_size": 64, "width": 32, "head": [32]},
        "logger": {"wandb": {"mode": "disabled"}, "progress": "lines"},
    }
    merged = OmegaConf.merge(base, small, OmegaConf.from_dotlist([f"{k}={v}" for k, v in overrides.items()]))
    return OmegaConf.to_object(merged)
