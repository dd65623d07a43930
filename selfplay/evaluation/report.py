"""The evaluation's report: ``results.json``, ``results.md`` (ours beside the paper's numbers),
``success.png``, videos, and the run's wandb run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from selfplay.evaluation.protocol import TaskResult
from selfplay.evaluation.workspace import describe_workspace

#: Zero-shot success (%) reported in the paper (docs/method.md section 6) for tasks that match ours.
PUBLISHED = {
    "Tabletop/Push1-v0": ("block push 1", 100),
    "Tabletop/Push8-v0": ("block push 8", 96),
    "Tabletop/PickAndPlace1-v0": ("block pick-and-place 1", 100),
    "Tabletop/Stack2-v0": ("block stacking 2", 100),
    "Tabletop/Stack3-v0": ("block stacking 3", 66),
    "Tabletop/PushUnseen3-v0": ("YCB push 3", 93),
}


def write_report(
    results: list[TaskResult], out: Path, title: str, workspace: dict | None = None, skipped: dict[str, str] | None = None,
    widened: Sequence[str] = (), trained_slots: int | None = None, timing: dict | None = None,
) -> dict[str, Path]:
    """``results.json``, ``results.md`` (ours next to the paper's) and ``success.png``.
    ``workspace``: the env arguments the tasks ran with (None: :class:`TabletopEnv`'s defaults);
    ``skipped``: task ids not run (too many objects for the Bob, or for the workspace), with the reason;
    ``widened``: task ids played with more object slots than Bob's ``trained_slots``;
    ``timing``: ``seconds`` (wall time of every task) and ``workers`` (game processes)."""
    out.mkdir(parents=True, exist_ok=True)
    workspace_text = describe_workspace(workspace)
    (out / "results.json").write_text(
        json.dumps({r.task: {**asdict(r), "workspace": workspace_text, "trained_object_slots": trained_slots if r.task in widened else None}
                    for r in results}, indent=2)
    )
    lines = [
        f"# Zero-shot holdout evaluation: {title}",
        "",
        f"Workspace: {workspace_text}.",
        "",
        "| task | success | 95 % CI | goals | trials | mean steps to success | object-goal distance, start -> end (cm) "
        "| failed goals: never in place / in place, left / in place at the end | published (paper) |",
        "|---|---:|---|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        published = PUBLISHED.get(r.task)
        paper = f"{published[1]} % ({published[0]})" if published else "—"
        steps = "—" if math.isnan(r.mean_steps_to_success) else f"{r.mean_steps_to_success:.0f}"
        lines.append(
            f"| {r.task}{' †' * (r.task in widened)} | {100 * r.success_rate:.1f} % | {100 * r.ci_low:.1f}-{100 * r.ci_high:.1f} % | {r.goals} | "
            f"{r.trials} | {steps} | {100 * r.mean_start_distance:.1f} -> {100 * r.mean_final_distance:.1f} | "
            f"{' / '.join(str(r.failed_positions.get(k, 0)) for k in ('never', 'left', 'at_end'))} | {paper} |"
        )
    lines += [
        "",
        "Protocol: episodes of up to 5 goals (1 for fixed-layout tasks) ending at the first failure; "
        "success rate = successes / goals. A failed goal was *in place* when every object was within 4 cm "
        "of its goal position (so at the end its rotation was off). The paper's numbers come from one Bob trained at large scale "
        "(about 1,900 CPU cores per policy, vision + state); ours are from this machine's budget.",
    ]
    if widened:
        lines += ["", f"† More objects than Bob trained with ({trained_slots} object slot"
                  f"{'s' * (trained_slots != 1)}): played with his object-set networks widened to the task's objects, "
                  "the same weights (one MLP per object and a max-pool, whatever the number of objects)."]
    if timing:
        trials = sum(r.trials for r in results)
        workers = timing["workers"]
        how = f"{workers} game worker process{'es' * (workers != 1)}" if workers else "one trial at a time (workers=0)"
        seconds = timing["seconds"]
        wall = f"{seconds / 60:.1f} minutes" if seconds >= 120 else f"{seconds:.0f} s"
        lines += ["", f"Wall time: {wall} for {len(results)} task{'s' * (len(results) != 1)}, "
                  f"{trials} trials, {how}."]
    if skipped:
        lines += ["", "Not run:", *[f"- {task}: {reason}" for task, reason in skipped.items()]]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(results, out / "success.png", title)
    return {"json": out / "results.json", "md": out / "results.md", "png": out / "success.png"}


def _plot(results: list[TaskResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.task.split("/")[-1].removesuffix("-v0") for r in results]
    rates = np.array([100 * r.success_rate for r in results])
    errors = np.array([[100 * (r.success_rate - r.ci_low), 100 * (r.ci_high - r.success_rate)] for r in results]).T
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(results)), 4))
    ax.bar(names, rates, yerr=errors, capsize=3, color="#4c72b0", label="ours (95 % CI)")
    paper = [(name, PUBLISHED[r.task][1]) for name, r in zip(names, results) if r.task in PUBLISHED]
    if paper:  # only tasks the paper reports (all-NaN values break a categorical axis)
        ax.scatter([n for n, _ in paper], [v for _, v in paper], marker="_", s=400, color="#dd8452", label="paper", zorder=3)
    ax.set_ylim(0, 105)
    ax.set_ylabel("zero-shot success (%)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar or marker
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_video(frames: list[np.ndarray], path: Path) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=12, macro_block_size=8)
    return path


def log_to_wandb(run_dir: Path, results: list[TaskResult], files: dict, videos: dict) -> None:
    """Add the evaluation to the run's own wandb run (offline runs sync later with the rest)."""
    from selfplay.checkpoint import latest_checkpoint, read_counters

    counters = read_counters(latest_checkpoint(run_dir))
    if not counters.get("wandb_id") or not (run_dir / "wandb").exists():
        return
    import wandb

    run = wandb.init(id=counters["wandb_id"], resume="allow", dir=str(run_dir), mode="offline", project="selfplay")
    table = wandb.Table(columns=["task", "success_rate", "ci_low", "ci_high", "goals"],
                        data=[[r.task, r.success_rate, r.ci_low, r.ci_high, r.goals] for r in results])
    payload = {f"eval/{r.task}/success": r.success_rate for r in results}
    payload.update({"eval/table": table, "eval/success_chart": wandb.Image(str(files["png"]))})
    payload.update({f"eval/{task}/video": wandb.Video(str(path), format="mp4") for task, path in videos.items()})
    run.log(payload)
    run.finish()
