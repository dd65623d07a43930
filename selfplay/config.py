"""Dataclass schemas of the hydra config tree (``conf/``): a wrong key, type or value stops a run
at once with a message naming it. Every field says what it means and its unit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config error: {key}: {message}")


@dataclass
class EnvConfig:
    n_objects: int = 1  # blocks on the table in every game (1-8)
    max_objects: int = 8  # padding of object arrays; 8 lets Bob run every holdout task
    placement_low: list[float] = field(default_factory=lambda: [-0.2, -0.25])  # (x, y) m, placement area corner
    placement_high: list[float] = field(default_factory=lambda: [0.2, 0.25])  # (x, y) m, opposite corner
    home_tool_position: list[float] = field(default_factory=lambda: [-0.05, 0.0, 0.15])  # (x, y, z) m, tool at reset
    action_bins: int = 11  # discrete actions per dimension

    def __post_init__(self) -> None:
        _require(1 <= self.n_objects <= self.max_objects <= 8, "env.n_objects", f"need 1 <= n_objects <= max_objects <= 8, got {self.n_objects}, {self.max_objects}")
        _require(len(self.placement_low) == 2 and len(self.placement_high) == 2, "env.placement_low/high", "need two numbers (x, y)")
        _require(all(a < b for a, b in zip(self.placement_low, self.placement_high)), "env.placement_low", "must be below placement_high")
        _require(len(self.home_tool_position) == 3 and 0.02 <= self.home_tool_position[2] <= 0.4,
                 "env.home_tool_position", f"need (x, y, z) with z in [0.02, 0.4] m, got {list(self.home_tool_position)}")
        _require(self.action_bins >= 2, "env.action_bins", f"need at least 2, got {self.action_bins}")

    def workspace(self) -> dict:
        """The :class:`tabletop_env.TabletopEnv` arguments that define where the game is played
        (placement area, reset pose); the holdout evaluation uses the same ones."""
        return {
            "placement_low": tuple(self.placement_low),
            "placement_high": tuple(self.placement_high),
            "home_tool_position": tuple(self.home_tool_position),
        }


@dataclass
class GameSchema:
    alice_steps: int = 100  # T: steps of Alice's turn per goal
    max_goals: int = 5  # goals per game
    bob_steps_per_object: int = 200  # Bob's timeout per goal = this x objects
    success_hold_steps: int = 1  # steps all objects must stay at the goal
    alice_start: str = "continue"  # Alice's turns start from her last state (continue), later ones with the arm back home (home), or every one with the tool next to an object (near_object)
    position_only: bool = False  # success (and "moved") by position alone; the holdouts compare rotation too
    bob_hindsight: str = "none"  # final: a failed Bob turn that moved an object also becomes a demonstration, relabelled with the poses he reached; windows: every window of hindsight_window steps in which an object moved >= 1 cm, relabelled with the poses at its end
    hindsight_window: int = 10  # steps per window of bob_hindsight=windows
    translation_scale: float = 1.0  # the tool moves this x the action's x/y/z (both agents; in (0, 1])
    bob_fingers_closed: bool = False  # Bob's finger command is ignored: his fingers stay closed

    def __post_init__(self) -> None:
        for key in ("alice_steps", "max_goals", "bob_steps_per_object", "success_hold_steps"):
            _require(getattr(self, key) >= 1, f"game.{key}", f"must be >= 1, got {getattr(self, key)}")
        _require(self.bob_hindsight in ("none", "final", "windows"), "game.bob_hindsight", f"must be none, final or windows, got {self.bob_hindsight!r}")
        _require(self.hindsight_window >= 1, "game.hindsight_window", f"must be >= 1, got {self.hindsight_window}")
        _require(0.0 < self.translation_scale <= 1.0, "game.translation_scale", f"must be in (0, 1], got {self.translation_scale}")
        _require(self.alice_start in ("continue", "home", "near_object"), "game.alice_start",
                 f"must be continue, home or near_object, got {self.alice_start!r}")


@dataclass
class TeacherConfig:
    name: str = "selfplay"  # selfplay: Alice proposes goals; uniform: hand-designed random goals, no Alice
    uniform_tasks: list[str] = field(default_factory=lambda: ["push", "pick_and_place", "stack"])  # goal mix of "uniform"
    goal_distance: list[float] | None = None  # [min, max] m: uniform push goals this far from each block; null: anywhere in the area

    def __post_init__(self) -> None:
        _require(self.name in ("selfplay", "uniform"), "teacher.name", f"must be 'selfplay' or 'uniform', got {self.name!r}")
        unknown = set(self.uniform_tasks) - {"push", "pick_and_place", "stack"}
        _require(not unknown, "teacher.uniform_tasks", f"unknown goal kinds {sorted(unknown)}")
        if self.goal_distance is not None:
            d = list(self.goal_distance)
            _require(len(d) == 2 and 0 <= d[0] <= d[1], "teacher.goal_distance", f"need [min, max] metres with 0 <= min <= max, got {d}")


@dataclass
class AgentConfig:
    learning_rate: float = 3e-4  # Adam step size
    gamma: float = 0.998  # discount per env step
    gae_lambda: float = 0.95  # GAE lambda
    ent_coef: float = 0.01  # entropy bonus weight
    clip_range: float = 0.2  # PPO ratio clip
    vf_coef: float = 1.0  # value loss weight
    n_epochs: int = 3  # passes over each batch
    batch_size: int = 512  # minibatch size (transitions)
    max_grad_norm: float = 0.5  # gradient norm clip
    width: int = 128  # hidden size of the object-set network
    depth: int = 2  # layers of the per-object MLP
    head: list[int] = field(default_factory=lambda: [128])  # policy and value head layers
    normalize_inputs: bool = False  # standardise robot and object (+ goal) inputs with running statistics
    normalize_advantage: bool = True  # standardise advantages per minibatch (SB3's default)
    target_kl: float | None = None  # stop an update's epochs early when the approximate KL exceeds 1.5 x this; null: never
    clip_range_vf: float | None = None  # clip the value change per update to +- this (return units); null: no value clipping
    # The learner: ppo (the paper's), or sac for Bob only (off-policy, continuous actions,
    # hindsight goals, Alice's demonstrations cloned by the actor: selfplay/learning/sac.py).
    # The keys below are SAC's; gamma, learning_rate, batch_size and the network sizes are shared.
    algo: str = "ppo"
    buffer_size: int = 300_000  # transitions in the replay buffer
    updates_per_step: float = 0.5  # gradient steps per env step Bob takes
    tau: float = 0.05  # target-network averaging rate
    her_ratio: float = 0.8  # share of replayed samples whose goal is a pose reached later in the turn
    her_informative_only: bool = False  # only hindsight goals the objects do not already satisfy before the step
    learning_starts: int = 1000  # transitions in the buffer before the first gradient step
    target_entropy: float | None = None  # SAC's entropy target (nats), its weight tuned to keep it; None: SB3's -6

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "agent.learning_rate", f"must be positive, got {self.learning_rate}")
        _require(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "agent.gamma/gae_lambda", "must lie in (0, 1]")
        _require(self.n_epochs >= 1 and self.batch_size >= 2, "agent.n_epochs/batch_size", "n_epochs >= 1, batch_size >= 2")
        _require(self.width >= 1 and self.depth >= 1, "agent.width/depth", "must be >= 1")
        _require(self.target_kl is None or self.target_kl > 0, "agent.target_kl", f"must be positive or null, got {self.target_kl}")
        _require(self.clip_range_vf is None or self.clip_range_vf > 0, "agent.clip_range_vf",
                 f"must be positive or null, got {self.clip_range_vf}")
        _require(self.algo in ("ppo", "sac"), "agent.algo", f"must be ppo or sac, got {self.algo!r}")
        _require(self.buffer_size >= 1 and self.updates_per_step > 0 and 0 < self.tau <= 1 and 0 <= self.her_ratio <= 1,
                 "agent.buffer_size/updates_per_step/tau/her_ratio", "need buffer_size >= 1, updates_per_step > 0, tau in (0, 1], her_ratio in [0, 1]")


@dataclass
class ABCConfig:
    enabled: bool = True  # add Alice behavioural cloning to Bob's loss
    beta: float = 0.5  # weight of the ABC loss
    clip: float = 0.2  # ratio clip of the ABC loss
    batch_size: int | None = None  # demonstration steps per PPO minibatch; null: bob.batch_size

    def __post_init__(self) -> None:
        _require(self.beta >= 0 and 0 < self.clip < 1, "abc.beta/clip", f"need beta >= 0 and 0 < clip < 1, got {self.beta}, {self.clip}")
        _require(self.batch_size is None or self.batch_size >= 1, "abc.batch_size", f"must be >= 1 or null, got {self.batch_size}")


@dataclass
class PoolConfig:
    probability: float = 0.2  # share of games played against a past snapshot
    size: int = 10  # snapshots kept per agent
    every: int = 5  # updates between snapshots

    def __post_init__(self) -> None:
        _require(0 <= self.probability <= 1, "pool.probability", f"must be in [0, 1], got {self.probability}")
        _require(self.size >= 1 and self.every >= 1, "pool.size/every", "must be >= 1")


@dataclass
class TrainerConfig:
    total_steps: int = 20_000  # budget: Alice's and Bob's env steps together
    n_games: int = 4  # games run at once
    vec_env: str = "dummy"  # dummy (one process), subproc (one process per game) or ray (games on Ray actors, see ray.*)
    rollout_steps: int = 2048  # env steps (both agents) collected per update
    checkpoint_every: int = 5  # updates between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2  # checkpoints kept on disk
    video_every: int = 0  # updates between game videos; 0: none
    torch_threads: int = 1  # torch intra-op threads (the simulator uses the other core)
    device: str = "cpu"  # torch device of the learners: cpu, cuda, cuda:<i> or auto (cuda when available)
    time_limit_minutes: float = 0.0  # also stop (with a checkpoint) after this much wall time in this process; 0: no limit

    def __post_init__(self) -> None:
        _require(self.total_steps > 0, "trainer.total_steps", f"must be positive, got {self.total_steps}")
        _require(self.n_games >= 1, "trainer.n_games", f"must be >= 1, got {self.n_games}")
        _require(self.vec_env in ("dummy", "subproc", "ray"), "trainer.vec_env", f"must be 'dummy', 'subproc' or 'ray', got {self.vec_env!r}")
        _require(self.rollout_steps >= self.n_games, "trainer.rollout_steps", "must be >= trainer.n_games")
        _require(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "trainer.checkpoint_every/keep_checkpoints", "must be >= 1")
        _require(self.video_every >= 0 and self.torch_threads >= 1, "trainer.video_every/torch_threads", "video_every >= 0, torch_threads >= 1")
        _require(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "trainer.device",
                 f"must be cpu, cuda, cuda:<index>, mps or auto, got {self.device!r}")
        _require(self.time_limit_minutes >= 0, "trainer.time_limit_minutes", f"must be >= 0 (0: no limit), got {self.time_limit_minutes}")


@dataclass
class RayConfig:
    """Where the games run when ``trainer.vec_env=ray`` (the learner stays in the driver process)."""

    address: str | None = None  # null: start a local Ray with this machine's cores; "auto" or "<head ip>:6379": join a running cluster
    workers: int = 0  # game-hosting actors, each stepping its share of trainer.n_games together; 0: one per CPU Ray offers, at most n_games
    cpus_per_worker: float = 1.0  # CPUs Ray reserves per actor
    spread: bool = True  # place actors on as many nodes as possible (Ray's SPREAD strategy)
    max_restarts: int = 100  # actors replaced after dying before the run stops
    start_timeout_s: float = 300.0  # s, wait for an actor to start (e.g. for a free CPU on some node)

    def __post_init__(self) -> None:
        _require(self.workers >= 0, "ray.workers", f"must be >= 0 (0: one per CPU), got {self.workers}")
        _require(self.cpus_per_worker > 0, "ray.cpus_per_worker", f"must be positive, got {self.cpus_per_worker}")
        _require(self.max_restarts >= 0 and self.start_timeout_s > 0, "ray.max_restarts/start_timeout_s",
                 "max_restarts >= 0 and start_timeout_s > 0")


@dataclass
class EvalSchedule:
    every: int = 0  # updates between light holdout evaluations during training; 0: none
    trials: int = 10  # episodes per task in each light evaluation
    tasks: list[str] = field(default_factory=lambda: ["Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0"])
    goals_per_episode: int = 5  # goals in a row per episode (fixed-layout tasks: 1), up to the first failure

    def __post_init__(self) -> None:
        _require(self.every >= 0 and self.trials >= 1, "eval.every/trials", "every >= 0 and trials >= 1")
        _require(self.goals_per_episode >= 1, "eval.goals_per_episode", f"must be >= 1, got {self.goals_per_episode}")
        from tabletop_env import list_tasks

        unknown = [t for t in self.tasks if t not in list_tasks()]
        _require(not unknown, "eval.tasks", f"unknown task ids {unknown}; valid ids: {', '.join(list_tasks())}")


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline (files in the run folder; `wandb sync` later), online, disabled
    project: str = "selfplay"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(self.mode in ("offline", "online", "disabled"), "logger.wandb.mode", f"must be offline, online or disabled, got {self.mode!r}")


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: str = "auto"  # auto (a rich bar in a terminal, lines otherwise), bar, lines

    def __post_init__(self) -> None:
        _require(self.progress in ("auto", "bar", "lines"), "logger.progress", f"must be auto, bar or lines, got {self.progress!r}")


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    game: GameSchema = field(default_factory=GameSchema)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    alice: AgentConfig = field(default_factory=AgentConfig)
    bob: AgentConfig = field(default_factory=AgentConfig)
    abc: ABCConfig = field(default_factory=ABCConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    eval: EvalSchedule = field(default_factory=EvalSchedule)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0  # seeds games, networks and sampling
    resume: str | None = None  # a run folder to continue from its last checkpoint
    name: str = "selfplay"  # a label for the run (wandb name, run folder suffix)
    experiment: Any = None  # set by conf/experiment/*.yaml (informational)

    def __post_init__(self) -> None:
        _require(self.alice.algo == "ppo", "alice.algo", f"Alice learns with ppo (sac is for Bob), got {self.alice.algo!r}")
        for agent in ("alice", "bob"):
            batch = getattr(self, agent).batch_size
            _require(batch <= self.trainer.rollout_steps or getattr(self, agent).algo == "sac", f"{agent}.batch_size",
                     f"{batch} is larger than trainer.rollout_steps={self.trainer.rollout_steps}, the most one update can collect")


def unknown_keys(cfg: Any, schema: Any = None, prefix: str = "") -> list[str]:
    """Keys of a composed config (a ``DictConfig``) that the schema does not have, e.g. one
    added with hydra's ``+trainer.total_step=100``."""
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.structured(Config) if schema is None else schema
    found = []
    for key in cfg.keys():
        if key == "hydra":
            continue
        if key not in schema:
            found.append(f"{prefix}{key}")
            continue
        child, reference = cfg._get_node(key), schema._get_node(key)
        if isinstance(child, DictConfig) and isinstance(reference, DictConfig) and not reference._is_none():
            found += unknown_keys(child, reference, f"{prefix}{key}.")
    return found


def no_such_key(key: str) -> str:
    """``config error: <key>: no such key`` with the nearest valid key, if one is close."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    parent, _, name = key.rpartition(".")
    node = OmegaConf.structured(Config)
    for part in [p for p in parent.split(".") if p]:
        node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
    siblings = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(name, siblings, n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    return f"config error: {key}: no such key{hint}"


def config_error_line(error: BaseException) -> str:
    """One line for hydra's and OmegaConf's multi-line errors: ``config error: <key>: <what>``."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    chain, seen = [], error
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, MissingConfigException):
            group = (e.missing_cfg_file or "").rpartition("/")[0]
            options = f" (options: {', '.join(e.options)})" if e.options else ""
            return f"config error: {group or 'config'}: no config named {e.missing_cfg_file.rpartition('/')[2]!r}{options}"
        key = getattr(e, "full_key", None)
        if key:
            if isinstance(e, (ConfigAttributeError, ConfigKeyError)):
                return no_such_key(key)
            return f"config error: {key}: {str(getattr(e, 'msg', e)).strip().splitlines()[0]}"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return "config error: " + ": ".join(lines[:2]) if lines else f"config error: {type(error).__name__}"


def register_configs() -> None:
    """Register the schema so that ``conf/config.yaml`` is validated against it."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)


def make_config(overrides: dict | None = None, **dotted: Any) -> Config:
    """A validated :class:`Config` from the schema defaults plus overrides, for use from Python
    (tests, benchmarks, notebooks): ``make_config({"trainer": {"n_games": 2}}, **{"seed": 3})``.
    Note: the defaults are the schema's, not ``conf/config.yaml``'s."""
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(
        OmegaConf.structured(Config), overrides or {}, OmegaConf.from_dotlist([f"{k}={v}" for k, v in dotted.items()])
    )
    return OmegaConf.to_object(merged)


def compose_config(overrides: Sequence[str] = ()) -> Config:
    """The validated :class:`Config` that ``python -m selfplay.train <overrides>`` would run with
    (``conf/config.yaml`` plus hydra overrides such as ``experiment=paper_blocks``)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=list(overrides)))


@dataclass
class EvaluateConfig:
    """``python -m selfplay.evaluate key=value ...``"""

    run: str | None = None  # a run folder: evaluate its latest Bob, write to <run>/eval
    checkpoint: str | None = None  # or a Bob zip: write next to it (eval/)
    tasks: list[str] = field(default_factory=list)  # task ids; empty: every holdout task
    trials: int = 100  # episodes per task
    goals_per_episode: int = 5  # goals in a row per episode (fixed-layout tasks: 1), up to the first failure
    seed: int = 0  # seeds layouts and goals: the same seed gives the same results
    deterministic: bool = True  # greedy actions (False: sample from Bob's policy)
    video: bool = False  # record the first trial of each task
    out: str | None = None  # report folder (default: see run / checkpoint)
    progress: bool = True  # a progress bar
    workspace: str = "run"  # run: the training run's placement area and reset pose; default: TabletopEnv's
    torch_threads: int = 1  # torch intra-op threads (batch-1 inference gains nothing from more)

    def __post_init__(self) -> None:
        _require(self.trials >= 1, "trials", f"must be >= 1, got {self.trials}")
        _require(self.goals_per_episode >= 1, "goals_per_episode", f"must be >= 1, got {self.goals_per_episode}")
        _require(self.workspace in ("run", "default"), "workspace", f"must be 'run' or 'default', got {self.workspace!r}")
        _require(self.torch_threads >= 1, "torch_threads", f"must be >= 1, got {self.torch_threads}")
        _require(bool(self.run) != bool(self.checkpoint), "run/checkpoint", "give exactly one of run=<run folder> or checkpoint=<bob zip>")
