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

from selfplay.config import CONF_DIR, Config, ConfigError, config_error_line, no_such_key, register_configs, unknown_keys  # noqa: E402
from selfplay.run_folder import HYDRA_FILES, LOCK, RunFolderError, fresh_run_problem  # noqa: E402

CONFIG_PATH = str(CONF_DIR)  # hydra wants a string
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
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(no_such_key(unknown[0]))
    try:
        if cfg.resume:
            run_dir = Path(cfg.resume)
            saved = run_dir / "config.yaml"
            if not saved.exists():
                raise ConfigError(f"config error: resume: {run_dir} is not a run folder (no config.yaml)")
            overrides = [o.lstrip("+") for o in _overrides() if not o.startswith("resume=")]
            groups = [o for o in overrides if o.split("=")[0] in ("experiment", "env", "game", "teacher")]
            if groups:
                raise ConfigError(f"config error: resume: config groups cannot change when resuming: {groups}")
            # today's defaults under the saved config: a run saved before a key existed resumes with its
            # default. Merged unlocked, as hydra composes: the saved free-form sections (env.control,
            # env.physics) hold keys today's defaults lack; unknown keys are refused just after.
            OmegaConf.set_struct(cfg, False)
            cfg = OmegaConf.merge(cfg, OmegaConf.load(saved), OmegaConf.from_dotlist(overrides), {"resume": str(run_dir)})
            unknown = unknown_keys(cfg)
            if unknown:
                raise ConfigError(no_such_key(unknown[0]) + f" (in {saved} or this command line)")
            OmegaConf.set_struct(cfg, True)
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(config_error_line(error)) from None
    check_workspace(config)
    if config.trainer.vec_env == "ray":
        from selfplay.vec_env import require_ray

        require_ray()
    return config, cfg


def check_workspace(config: Config) -> None:
    """The game's objects and the light evaluation's tasks must fit the placement area."""
    from selfplay.evaluation import layout_error, workspace_misfits
    from tabletop_env import objects

    error = layout_error(objects=objects.blocks(config.env.n_objects), max_objects=config.env.max_objects, **config.env.workspace())
    if error:
        raise ConfigError(f"config error: env.placement_low/high: {error}")
    if config.eval.every:
        misfits = workspace_misfits(config.eval.tasks, config.env.workspace(), config.env.max_objects)
        if misfits:
            raise ConfigError(f"config error: eval.tasks: {', '.join(misfits)} do not fit the workspace: {next(iter(misfits.values()))}")


def _remove_empty_run_dir() -> None:
    """A fresh run stopped before it started leaves no folder behind (only hydra's own files
    were there)."""
    import shutil

    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_FILES | {LOCK}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:
        return []


def _stop(message: object, code: int, remove_run_dir: bool = False) -> None:
    """End the command with one line on stderr."""
    if remove_run_dir:
        _remove_empty_run_dir()
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        config, raw = resolve_config(cfg)
    except (ConfigError, FileNotFoundError) as error:
        _stop(error, 2, remove_run_dir=not cfg.resume)
    from selfplay.checkpoint import CheckpointWriteError
    from selfplay.processes import StopSignals
    from selfplay.training import Trainer, save_config
    from selfplay.vec_env import GameWorkersLost

    run_dir = Path(config.resume) if config.resume else Path(HydraConfig.get().runtime.output_dir)
    if not config.resume and fresh_run_problem(run_dir):
        _stop(fresh_run_problem(run_dir), 2)
    with StopSignals() as stop:
        try:
            # Locks the folder, loads the checkpoint, starts the games (and Ray): a resume that
            # cannot work stops here, before anything in the run folder is written.
            trainer = Trainer(config, run_dir)
        except (ConfigError, RunFolderError, FileNotFoundError) as error:
            _stop(error, 2, remove_run_dir=not config.resume)
        except KeyboardInterrupt as error:
            _stop(f"{error or 'SIGINT'}: stopped while starting", 128 + _signal_number(error), remove_run_dir=not config.resume)
        save_config(OmegaConf.to_yaml(raw, resolve=True), run_dir)
        log.info("run folder: %s", run_dir)
        try:
            row = trainer.train(stop)
        except GameWorkersLost as error:
            _stop(f"{error}\nrun stopped; its checkpoints are in {run_dir}/checkpoints", 1)
        except (CheckpointWriteError, OSError) as error:
            _stop(f"run stopped: {error}; resume later with resume={run_dir}", 1)
        except KeyboardInterrupt as error:
            _stop(f"{error or 'SIGINT'}: stopped at once; the last checkpoint is kept, resume with resume={run_dir}",
                  128 + _signal_number(error))
    steps = trainer.counters["env_steps"]
    if trainer.stopped_by:
        _stop(f"{trainer.stopped_by}: stopped at {steps:,} env steps with a checkpoint; resume with resume={run_dir}",
              128 + _signal_number(trainer.stopped_by))
    log.info("finished: %d env steps, bob success %.3f", steps, row.get("bob/success_rate", float("nan")))
    print(f"run folder: {run_dir}")
    return float(row.get("bob/success_rate", 0.0))


def _signal_number(name: object) -> int:
    import signal

    try:
        return int(signal.Signals[str(name)])
    except KeyError:
        return int(signal.SIGINT)


def check_command_line(argv: list[str]) -> None:
    """Stop before hydra creates anything when the command line cannot work: an override hydra
    or the schema refuses (unknown key, wrong type, missing group option), ``resume=`` naming no
    usable run folder, or a fresh run pointed at an existing run (``hydra.run.dir``). Each is
    one line on stderr and exit code 2."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from selfplay.checkpoint import resume_point

    if any(arg.startswith("-") for arg in argv):  # hydra's own flags (--help, --cfg, -m): hydra decides
        return
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=") and a != "resume=null"), None)
    if resume:
        try:
            resume_point(Path(resume))
        except FileNotFoundError as error:
            _stop(f"config error: {error}", 2)
    overrides = [a for a in argv if not a.lstrip("+").startswith("hydra.")]
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
            composed = compose("config", overrides=overrides)
    except Exception as error:  # noqa: BLE001 - hydra raises several kinds, all about the command line
        _stop(config_error_line(error), 2)
    finally:
        GlobalHydra.instance().clear()
    unknown = unknown_keys(composed)
    if unknown:
        _stop(no_such_key(unknown[0]), 2)
    if not resume:  # a resume validates its own config: the run's saved one plus these overrides
        try:
            OmegaConf.to_object(composed)
        except ConfigError as error:
            _stop(error, 2)
        except OmegaConfBaseException as error:
            _stop(config_error_line(error), 2)
    run_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")), None)
    if run_dir and not resume and fresh_run_problem(Path(run_dir)):
        _stop(fresh_run_problem(Path(run_dir)), 2)


if __name__ == "__main__":
    check_command_line(sys.argv[1:])
    main()
