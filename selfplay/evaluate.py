"""Zero-shot evaluation of Bob on the holdout tasks (docs/method.md section 6's protocol).

    python -m selfplay.evaluate run=<run folder>            # the run's latest Bob
    python -m selfplay.evaluate checkpoint=<bob.zip> tasks=[Tabletop/Push1-v0] trials=20

Per task: ``trials`` episodes; an episode is up to 5 goals in a row (a single goal for
fixed-layout tasks: stacks, arrangements), ending at the first failure (timeout, object off the
table). Success rate = successes / goals attempted, with a 95 % Wilson interval. Writes
``eval/results.json``, ``eval/results.md`` and ``eval/success.png`` into the run folder (or next
to the checkpoint), logs them to wandb when the run has a wandb run, and can record a video per
task. Deterministic for a given ``seed``. The tasks run in the training run's workspace
(placement area, tool start; ``workspace=default`` for :class:`TabletopEnv`'s), stated in the report.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")


def main(argv: list[str] | None = None) -> int:
    """Evaluate with ``selfplay/conf/evaluate.yaml`` plus hydra overrides (``key=value``, as for
    ``selfplay.train``); returns the exit code (2: a bad key, value, checkpoint or task, in one line)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from selfplay.config import ConfigError, EvaluateConfig, compose, config_error_line

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print("keys (selfplay/conf/evaluate.yaml):", ", ".join(f"{k}={v!r}" for k, v in compose("evaluate").items()))
        return 0
    try:
        cfg: EvaluateConfig = OmegaConf.to_object(compose("evaluate", argv))
    except ConfigError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - hydra and OmegaConf raise several kinds, all about the command line
        print(f"evaluate: {config_error_line(error)}", file=sys.stderr)
        return 2
    try:
        from selfplay.evaluation.run import run_evaluation

        run_evaluation(cfg)
    except (ConfigError, ValueError, FileNotFoundError, OmegaConfBaseException) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
