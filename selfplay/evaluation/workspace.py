"""Where the holdout tasks run: the training run's workspace (placement area, tool start), and
which tasks' objects fit it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabletop_env import TabletopEnv, make_task


def layout_error(**env_args) -> str | None:
    """Why a :class:`TabletopEnv` with ``env_args`` cannot lay out its objects (e.g. 8 blocks in
    a small placement area), or None when it can; checked by building the scene once."""
    try:
        env = TabletopEnv(**env_args)
        try:
            env.reset(seed=0)
        finally:
            env.close()
    except ValueError as error:
        return str(error)
    return None


def workspace_misfits(task_ids: Sequence[str], workspace: dict | None, max_objects: int = 8) -> dict[str, str]:
    """Task ids whose objects cannot be laid out in ``workspace``, with the simulator's reason."""
    reasons = {t: layout_error(task=t, max_objects=max(max_objects, len(make_task(t).objects)), **(workspace or {}))
               for t in task_ids}
    return {t: reason for t, reason in reasons.items() if reason is not None}


def slot_misfits(task_ids: Sequence[str], slots: int) -> dict[str, str]:
    """Task ids with more objects than a Bob's ``slots`` (object inputs), with the reason."""
    counts = {t: len(make_task(t).objects) for t in task_ids}
    return {t: f"{n} objects, but this Bob has {slots} object slot{'s' * (slots != 1)} (train with env.max_objects >= {n})"
            for t, n in counts.items() if n > slots}


def saved_env_config(run: Path):
    """The ``EnvConfig`` a run folder's ``config.yaml`` holds (also a shipped model's folder),
    with today's defaults under the saved keys: a run saved before a key existed has its default;
    physics / control hold only the run's overrides (keys the defaults do not list)."""
    from omegaconf import OmegaConf

    from selfplay.config import compose

    saved = OmegaConf.load(run / "config.yaml").get("env", {})
    defaults = compose("config").env
    for free in ("physics", "control"):
        OmegaConf.set_struct(defaults[free], False)
    return OmegaConf.to_object(OmegaConf.merge(defaults, saved))


def run_workspace(checkpoint_path: Path) -> dict | None:
    """The workspace (``EnvConfig.workspace``) of the run a Bob zip belongs to, read from the run
    folder's ``config.yaml`` (``<run>/checkpoints/<step>/bob.zip``) or from a ``config.yaml``
    beside the zip (a shipped model, ``models/<name>/``); None for a loose zip."""
    beside = checkpoint_path.resolve().parent
    for folder in checkpoint_path.resolve().parents[:3]:
        if (folder / "config.yaml").is_file() and ((folder / "checkpoints").is_dir() or folder == beside):
            return saved_env_config(folder).workspace()
    return None


def describe_workspace(workspace: dict | None) -> str:
    """One line: placement area and reset pose of the tool, in metres."""
    from inspect import signature

    defaults = {k: v.default for k, v in signature(TabletopEnv.__init__).parameters.items()}
    w = {key: (workspace or {}).get(key, defaults[key]) for key in ("placement_low", "placement_high", "home_tool_position")}
    fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
    low, high = w["placement_low"], w["placement_high"]
    size = f"{100 * (high[0] - low[0]):.0f} x {100 * (high[1] - low[1]):.0f} cm"
    return f"placement area {fmt(low)}-{fmt(high)} m ({size}), tool starts at {fmt(w['home_tool_position'])} m"
