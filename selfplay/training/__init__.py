"""Training a run: the loop (:mod:`~selfplay.training.loop`), its metrics and progress
(:mod:`~selfplay.training.metrics`), wandb (:mod:`~selfplay.training.wandb_run`), videos
(:mod:`~selfplay.training.video`) and resuming (:mod:`~selfplay.training.resume`)."""

from selfplay.training.loop import Trainer, save_config

__all__ = ["Trainer", "save_config"]
