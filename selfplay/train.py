"""Hydra entry point: ``python -m selfplay.train [experiment=<name>] [key=value ...]``.

Every run folder under ``runs/`` holds the resolved ``config.yaml``, checkpoints, ``metrics.csv``
and the wandb files (offline by default). ``resume=<run folder>`` continues a run from its last
checkpoint, with its saved config plus any ``key=value`` overrides given now.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("WANDB_ERROR_REPORTING", "false")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from selfplay.config import Config, ConfigError, register_configs  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("selfplay")

register_configs()


def _run_dir(resume: str | None, name: str) -> str:
    """``hydra.run.dir``: the resumed run's folder, else ``runs/<date>_<time>_<name>``."""
    from datetime import datetime

    return str(resume) if resume else f"runs/{datetime.now():%Y-%m-%d_%H-%M-%S}_{name}"


OmegaConf.register_new_resolver("selfplay_run_dir", _run_dir, replace=True)


def resolve_config(cfg: DictConfig) -> tuple[Config, DictConfig]:
    """Validate the composed config (dataclass ``__post_init__`` checks) and, when resuming,
    start from the run's saved config with this command line's overrides on top."""
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"config error: resume: {run_dir} is not a run folder (no config.yaml)")
        base = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(saved))
        overrides = [o for o in _overrides() if not o.startswith("resume=")]
        groups = [o for o in overrides if o.split("=")[0] in ("experiment", "env", "game", "teacher")]
        if groups:
            raise ConfigError(f"config error: resume: config groups cannot change when resuming: {groups}")
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides), {"resume": str(run_dir)})
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"config error: {error}") from None
    check_workspace(config)
    if config.trainer.vec_env == "ray":
        from selfplay.vec_env import require_ray

        require_ray()
    return config, cfg


def check_workspace(config: Config) -> None:
    """The game's objects and the light evaluation's tasks must fit the placement area."""
    from selfplay.evaluate import layout_error, workspace_misfits
    from tabletop_env import objects

    error = layout_error(objects=objects.blocks(config.env.n_objects), max_objects=config.env.max_objects, **config.env.workspace())
    if error:
        raise ConfigError(f"config error: env.placement_low/high: {error}")
    if config.eval.every:
        misfits = workspace_misfits(config.eval.tasks, config.env.workspace(), config.env.max_objects)
        if misfits:
            raise ConfigError(f"config error: eval.tasks: {', '.join(misfits)} do not fit the workspace: {next(iter(misfits.values()))}")


def _remove_empty_run_dir() -> None:
    """A run stopped by bad config leaves no folder behind (only hydra's own files were there)."""
    import shutil

    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".hydra", "train.log", "config.yaml"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        config, raw = resolve_config(cfg)
    except (ConfigError, FileNotFoundError) as error:
        _remove_empty_run_dir()
        print(error, file=sys.stderr)
        sys.exit(2)
    from selfplay.checkpoint import latest_checkpoint
    from selfplay.trainer import Trainer, save_config
    from selfplay.vec_env import GameWorkersLost

    run_dir = Path(config.resume) if config.resume else Path(HydraConfig.get().runtime.output_dir)
    if config.resume:
        try:
            latest_checkpoint(run_dir)
        except FileNotFoundError as error:
            print(error, file=sys.stderr)
            sys.exit(2)
    save_config(OmegaConf.to_yaml(raw, resolve=True), run_dir)
    log.info("run folder: %s", run_dir)
    try:
        trainer = Trainer(config, run_dir)  # starts the games (and Ray, with trainer.vec_env=ray)
    except ConfigError as error:
        if not config.resume:
            _remove_empty_run_dir()
        print(error, file=sys.stderr)
        sys.exit(2)
    try:
        row = trainer.train()
    except GameWorkersLost as error:
        print(f"{error}\nrun stopped; its checkpoints are in {run_dir}/checkpoints", file=sys.stderr)
        sys.exit(1)
    log.info("finished: %d env steps, bob success %.3f", trainer.counters["env_steps"], row.get("bob/success_rate", float("nan")))
    print(f"run folder: {run_dir}")
    return float(row.get("bob/success_rate", 0.0))


def check_resume_argument(argv: list[str]) -> None:
    """Stop before hydra creates anything when ``resume=`` names no usable run folder."""
    from selfplay.checkpoint import latest_checkpoint

    for arg in argv:
        if arg.startswith("resume=") and arg != "resume=null":
            try:
                latest_checkpoint(Path(arg.split("=", 1)[1]))
            except FileNotFoundError as error:
                print(f"config error: {error}", file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    main()
