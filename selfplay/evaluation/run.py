"""One evaluation: load Bob, run the tasks that fit the workspace, write the report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from selfplay.evaluation.parallel import ParallelEvaluator
from selfplay.evaluation.policy import BobPolicy, load_bob, object_slots, widen_object_slots
from selfplay.evaluation.protocol import TaskResult, resolve_tasks
from selfplay.evaluation.report import log_to_wandb, save_video, write_report
from selfplay.evaluation.workspace import describe_workspace, run_workspace, slot_misfits, workspace_misfits
from tabletop_env import make_task
from tabletop_env.env import reads_goal_rotation


def run_evaluation(cfg) -> list[TaskResult]:
    """Evaluate per ``cfg`` (an :class:`selfplay.config.EvaluateConfig`) and write the report."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(cfg.torch_threads)
    tasks = resolve_tasks(cfg.tasks)
    model, path = load_bob(cfg.run, cfg.checkpoint)
    try:
        bob = BobPolicy(model, deterministic=cfg.deterministic)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    trained_slots = object_slots(model)
    workspace = run_workspace(path) if cfg.workspace == "run" else None
    # goal features as this Bob reads them (with or without the rotation to the goal)
    workspace = {**(workspace or {}), "goal_rotation": reads_goal_rotation(model.observation_space)}
    too_many = slot_misfits(tasks, trained_slots) if cfg.more_objects == "skip" else {}
    if too_many and cfg.tasks:  # asked for by name: say so at once instead of skipping
        raise ValueError(f"{', '.join(too_many)}: {next(iter(too_many.values()))} or more_objects=widen")
    misfits = workspace_misfits([t for t in tasks if t not in too_many], workspace)
    if misfits and cfg.tasks:
        raise ValueError(f"{', '.join(misfits)} cannot be laid out in this run's workspace "
                         f"({describe_workspace(workspace)}): {next(iter(misfits.values()))}; "
                         "evaluate with workspace=default")
    misfits = {t: f"{reason} (workspace=default runs it)" for t, reason in misfits.items()}
    for task_id, reason in {**too_many, **misfits}.items():
        print(f"skipping {task_id}: {reason}", file=sys.stderr)
    tasks = [t for t in tasks if t not in too_many and t not in misfits]
    players = {trained_slots: bob}  # object slots -> Bob with that many
    widened = {t: n for t in tasks if (n := len(make_task(t).objects)) > trained_slots}
    for slots in sorted(set(widened.values())):
        players[slots] = BobPolicy(widen_object_slots(model, path, slots), deterministic=cfg.deterministic)
    out = Path(cfg.out) if cfg.out else (Path(cfg.run) / "eval" if cfg.run else path.parent / "eval")
    results, videos = [], {}
    started = time.perf_counter()
    with tqdm(total=len(tasks) * cfg.trials, desc="zero-shot eval", unit="trial", disable=not cfg.progress) as bar, \
            ParallelEvaluator(cfg.workers) as engine:  # workers=0: one trial at a time
        for task_id in tasks:
            bar.set_postfix_str(task_id)
            slots = widened.get(task_id, trained_slots)
            task_started = time.perf_counter()
            result, frames = engine.evaluate_task(players[slots], task_id, cfg.trials, seed=cfg.seed, check=players[slots].check,
                                                  record=cfg.video, progress=bar.update, max_objects=slots,
                                                  env_kwargs=workspace, max_goals=cfg.goals_per_episode)
            result.seconds = time.perf_counter() - task_started
            results.append(result)
            if frames:
                videos[task_id] = save_video(frames, out / "videos" / f"{task_id.split('/')[-1]}.mp4")
    timing = {"seconds": time.perf_counter() - started, "workers": engine.workers}
    files = write_report(results, out, title=str(path), workspace=workspace, skipped={**too_many, **misfits},
                         widened=list(widened), trained_slots=trained_slots, timing=timing)
    if cfg.run:
        log_to_wandb(Path(cfg.run), results, files, videos)
    print((out / "results.md").read_text())
    print(f"wrote {out}")
    return results
