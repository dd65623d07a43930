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

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("WANDB_SILENT", "true")

from selfplay.offpolicy import continuous_actions, is_continuous  # noqa: E402
from selfplay.policies import sample_actions  # noqa: E402
from tabletop_env import TabletopEnv, list_tasks, make_task  # noqa: E402

#: Zero-shot success (%) reported in the paper (docs/method.md section 6) for tasks that match ours.
PUBLISHED = {
    "Tabletop/Push1-v0": ("block push 1", 100),
    "Tabletop/Push8-v0": ("block push 8", 96),
    "Tabletop/PickAndPlace1-v0": ("block pick-and-place 1", 100),
    "Tabletop/Stack2-v0": ("block stacking 2", 100),
    "Tabletop/Stack3-v0": ("block stacking 3", 66),
    "Tabletop/PushUnseen3-v0": ("YCB push 3", 93),
}
MAX_GOALS = 5


@dataclass
class TaskResult:
    """One task's outcome. ``success_rate`` = successes / goals; ``ci_low``/``ci_high``: 95 %
    Wilson interval; ``mean_steps_to_success``: env steps per solved goal (NaN if none);
    ``mean_start_distance`` / ``mean_final_distance``: object position error (m, mean over the
    objects) when each goal was set and when its turn ended, averaged over goals: progress that
    shows before any goal is solved."""

    task: str
    trials: int
    goals: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_steps_to_success: float
    steps: int = 0
    failures: dict = field(default_factory=dict)  # reason -> count
    mean_start_distance: float = float("nan")
    mean_final_distance: float = float("nan")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


class BobPolicy:
    """Bob's SB3 policy acting on a :class:`TabletopEnv` observation through the discretisation.

    Checks the checkpoint against the env: the object slots (``max_objects``) and the action
    space must match, else a plain error says what differs.
    """

    def __init__(self, model, deterministic: bool = True) -> None:
        self.model, self.deterministic = model, deterministic
        extractor = getattr(model.policy, "pi_features_extractor", None)
        if getattr(extractor, "use_goal", True) is False:
            raise ValueError("this policy does not take goals (Alice's alice.zip?); evaluate Bob's bob.zip")
        space = model.action_space
        self.continuous = is_continuous(model.policy)  # an off-policy Bob (bob.algo=sac)
        if self.continuous:
            if space.shape != (6,):
                raise ValueError(f"checkpoint has action space {space}; Bob needs 6 action dimensions")
            return
        nvec = getattr(space, "nvec", None)
        if nvec is None or len(nvec) != 6 or len(set(nvec.tolist())) != 1:
            raise ValueError(f"checkpoint has action space {space}; Bob needs MultiDiscrete with 6 equal dimensions")
        self.values = np.linspace(-1.0, 1.0, int(nvec[0]))

    def check(self, env: TabletopEnv, task_id: str) -> None:
        expected = self.model.observation_space
        for key in ("robot", "objects", "goal", "mask"):
            if key not in expected.spaces:
                raise ValueError(f"checkpoint's observation space lacks {key!r}: not a Bob trained by selfplay")
            if expected[key].shape != env.observation_space[key].shape:
                raise ValueError(
                    f"checkpoint expects {key} of shape {expected[key].shape} but {task_id} gives "
                    f"{env.observation_space[key].shape} (object slots: checkpoint "
                    f"{expected['mask'].shape[0]}, env max_objects {env.max_objects})"
                )

    def __call__(self, obs: dict) -> np.ndarray:
        batch = {k: v[None] for k, v in obs.items()}
        if self.continuous:
            return continuous_actions(self.model.policy, batch, deterministic=self.deterministic)[0]
        actions, _, _ = sample_actions(self.model.policy, batch, deterministic=self.deterministic)
        return self.values[actions[0]]


def evaluate_task(
    act: Callable[[dict], np.ndarray],
    task_id: str,
    trials: int,
    seed: int = 0,
    max_goals: int = MAX_GOALS,
    check: Callable | None = None,
    record: bool = False,
    progress: Callable[[], None] | None = None,
    max_objects: int = 8,
    env_kwargs: dict | None = None,
) -> tuple[TaskResult, list[np.ndarray]]:
    """Run ``trials`` episodes of ``task_id`` with ``act(obs) -> continuous action (6,)``.

    ``env_kwargs``: the workspace (placement area, reset pose; see ``EnvConfig.workspace``),
    default: :class:`TabletopEnv`'s. Returns the result and, when ``record``, the frames of the
    first trial.
    """
    task = make_task(task_id)
    if len(task.objects) > max_objects:
        raise ValueError(f"{task_id} has {len(task.objects)} objects but the checkpoint has {max_objects} object slots")
    env = TabletopEnv(task=task, max_objects=max_objects, terminate_on_success=False, max_episode_steps=2**62,
                      render_mode="rgb_array" if record else None, **(env_kwargs or {}))
    if check is not None:
        check(env, task_id)
    if hasattr(act, "bind"):  # scripted players (tests) may need the env itself
        act.bind(env)
    goals_per_episode = 1 if task.fixed_layout else max_goals
    goals = successes = total_steps = 0
    steps_to_success: list[int] = []
    start_distances: list[float] = []
    final_distances: list[float] = []
    failures: dict[str, int] = {}
    frames: list[np.ndarray] = []
    for trial in range(trials):
        obs, _ = env.reset(seed=seed * 100_003 + trial)
        rng = np.random.default_rng([seed, trial])
        for goal_index in range(goals_per_episode):
            if goal_index > 0:  # the next goal from wherever the objects are now
                goal = task.sample_goal(env, rng)
                env.set_goal(goal.poses, goal.held_object)
                obs = env.refresh()
            goals += 1
            start_distances.append(position_error(env, obs))
            outcome = "timeout"
            for step in range(task.max_episode_steps):
                obs, _, terminated, _, info = env.step(act(obs))
                total_steps += 1
                if record and trial == 0 and step % 2 == 0:
                    frames.append(env.render())
                if info["is_success"]:
                    outcome = "success"
                    break
                if terminated:
                    outcome = "sim_error" if info["sim_error"] else "off_table"
                    break
            final_distances.append(position_error(env, obs))
            if outcome == "success":
                successes += 1
                steps_to_success.append(step + 1)
            else:
                failures[outcome] = failures.get(outcome, 0) + 1
                break
        if progress is not None:
            progress()
    env.close()
    low, high = wilson_interval(successes, goals)
    result = TaskResult(
        task=task_id, trials=trials, goals=goals, successes=successes, success_rate=successes / goals if goals else 0.0,
        ci_low=low, ci_high=high, mean_steps_to_success=float(np.mean(steps_to_success)) if steps_to_success else float("nan"),
        steps=total_steps, failures=failures, mean_start_distance=float(np.mean(start_distances)) if goals else float("nan"),
        mean_final_distance=float(np.mean(final_distances)) if goals else float("nan"),
    )
    return result, frames


def position_error(env: TabletopEnv, obs: dict) -> float:
    """Mean distance (m) between the objects' positions and their goal positions."""
    achieved = obs["achieved_goal"].reshape(-1, 7)[: env.n_objects, :3]
    return float(np.linalg.norm(achieved - env.goal[:, :3], axis=1).mean())


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


def resolve_tasks(tasks: Sequence[str] | None) -> list[str]:
    """The task ids to run (all by default); an unknown id lists the valid ones."""
    valid = list_tasks()
    if not tasks:
        return valid
    unknown = [t for t in tasks if t not in valid]
    if unknown:
        raise ValueError(f"unknown task id(s) {unknown}; valid ids: {', '.join(valid)}")
    return list(tasks)


def run_workspace(checkpoint_path: Path) -> dict | None:
    """The workspace (``EnvConfig.workspace``) of the run a Bob zip belongs to, read from the run
    folder's ``config.yaml`` (``<run>/checkpoints/<step>/bob.zip``); None for a loose zip."""
    from omegaconf import OmegaConf

    from selfplay.config import EnvConfig

    for folder in checkpoint_path.resolve().parents[:3]:
        if (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir():
            saved = OmegaConf.load(folder / "config.yaml").get("env", {})
            env = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvConfig), saved))
            return env.workspace()
    return None


def load_bob(run: str | None, checkpoint: str | None):
    """Bob's SB3 model from a run folder (latest checkpoint) or a zip; plain errors otherwise."""
    import zipfile

    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.save_util import json_to_data
    from stable_baselines3.sac.policies import SACPolicy

    from selfplay.checkpoint import latest_checkpoint

    if bool(run) == bool(checkpoint):
        raise ValueError("give exactly one of run=<run folder> or checkpoint=<bob zip>")
    path = latest_checkpoint(Path(run), report=lambda line: print(line, file=sys.stderr)) / "bob.zip" if run else Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:  # only the model's description: the class of its policy
            data = json_to_data(archive.read("data").decode())
        algo = SAC if isinstance(data.get("policy_class"), type) and issubclass(data["policy_class"], SACPolicy) else PPO
        return algo.load(path, device="cpu"), path
    except Exception as error:  # a zip that is not an SB3 model
        raise ValueError(f"{path} is not a loadable SB3 checkpoint: {error}") from None


def write_report(
    results: list[TaskResult], out: Path, title: str, workspace: dict | None = None, skipped: dict[str, str] | None = None
) -> dict[str, Path]:
    """``results.json``, ``results.md`` (ours next to the paper's) and ``success.png``.
    ``workspace``: the env arguments the tasks ran with (None: :class:`TabletopEnv`'s defaults);
    ``skipped``: task ids that did not fit the workspace, with the reason."""
    out.mkdir(parents=True, exist_ok=True)
    workspace_text = describe_workspace(workspace)
    (out / "results.json").write_text(
        json.dumps({r.task: {**asdict(r), "workspace": workspace_text} for r in results}, indent=2)
    )
    lines = [
        f"# Zero-shot holdout evaluation: {title}",
        "",
        f"Workspace: {workspace_text}.",
        "",
        "| task | success | 95 % CI | goals | trials | mean steps to success | object-goal distance, start -> end (cm) | published (paper) |",
        "|---|---:|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        published = PUBLISHED.get(r.task)
        paper = f"{published[1]} % ({published[0]})" if published else "—"
        steps = "—" if math.isnan(r.mean_steps_to_success) else f"{r.mean_steps_to_success:.0f}"
        lines.append(
            f"| {r.task} | {100 * r.success_rate:.1f} % | {100 * r.ci_low:.1f}-{100 * r.ci_high:.1f} % | {r.goals} | "
            f"{r.trials} | {steps} | {100 * r.mean_start_distance:.1f} -> {100 * r.mean_final_distance:.1f} | {paper} |"
        )
    lines += [
        "",
        "Protocol: episodes of up to 5 goals (1 for fixed-layout tasks) ending at the first failure; "
        "success rate = successes / goals. The paper's numbers come from one Bob trained at large scale "
        "(about 1,900 CPU cores per policy, vision + state); ours are from this machine's budget.",
    ]
    if skipped:
        lines += ["", "Not run (the objects do not fit this workspace; `workspace=default` runs them): "
                  + ", ".join(skipped) + "."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(results, out / "success.png", title)
    return {"json": out / "results.json", "md": out / "results.md", "png": out / "success.png"}


def describe_workspace(workspace: dict | None) -> str:
    """One line: placement area and reset pose of the tool, in metres."""
    from inspect import signature

    defaults = {k: v.default for k, v in signature(TabletopEnv.__init__).parameters.items()}
    w = {key: (workspace or {}).get(key, defaults[key]) for key in ("placement_low", "placement_high", "home_tool_position")}
    fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
    low, high = w["placement_low"], w["placement_high"]
    size = f"{100 * (high[0] - low[0]):.0f} x {100 * (high[1] - low[1]):.0f} cm"
    return f"placement area {fmt(low)}-{fmt(high)} m ({size}), tool starts at {fmt(w['home_tool_position'])} m"


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


# -- command line ---------------------------------------------------------------------------------
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
    slots = model.observation_space["mask"].shape[0]
    workspace = run_workspace(path) if cfg.workspace == "run" else None
    misfits = workspace_misfits(tasks, workspace)
    if misfits and cfg.tasks:  # asked for by name: say so instead of skipping
        raise ValueError(f"{', '.join(misfits)} cannot be laid out in this run's workspace "
                         f"({describe_workspace(workspace)}): {next(iter(misfits.values()))}; "
                         "evaluate with workspace=default")
    for task_id, reason in misfits.items():
        print(f"skipping {task_id}: {reason} (workspace=default runs it)", file=sys.stderr)
    tasks = [t for t in tasks if t not in misfits]
    out = Path(cfg.out) if cfg.out else (Path(cfg.run) / "eval" if cfg.run else path.parent / "eval")
    results, videos = [], {}
    with tqdm(total=len(tasks) * cfg.trials, desc="zero-shot eval", unit="trial", disable=not cfg.progress) as bar:
        for task_id in tasks:
            bar.set_postfix_str(task_id)
            result, frames = evaluate_task(bob, task_id, cfg.trials, seed=cfg.seed, check=bob.check, record=cfg.video,
                                           progress=bar.update, max_objects=slots, env_kwargs=workspace)
            results.append(result)
            if frames:
                videos[task_id] = _save_video(frames, out / "videos" / f"{task_id.split('/')[-1]}.mp4")
    files = write_report(results, out, title=str(path), workspace=workspace, skipped=misfits)
    if cfg.run:
        _log_to_wandb(Path(cfg.run), results, files, videos)
    print((out / "results.md").read_text())
    print(f"wrote {out}")
    return results


def _save_video(frames: list[np.ndarray], path: Path) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=12, macro_block_size=8)
    return path


def _log_to_wandb(run_dir: Path, results: list[TaskResult], files: dict, videos: dict) -> None:
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


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from selfplay.config import ConfigError, EvaluateConfig

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print("keys:", ", ".join(f"{k}={v!r}" for k, v in asdict(EvaluateConfig()).items()))
        return 0
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), OmegaConf.from_cli(argv)))
        run_evaluation(cfg)
    except (ConfigError, ValueError, FileNotFoundError, OmegaConfBaseException) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
