"""Dataclass schemas of the hydra config tree (``selfplay/conf/``): the types and limits of every
key, never a value. Every default lives once, in ``selfplay/conf/`` (it ships inside the package,
so an installed ``selfplay`` trains from any folder). A wrong key, type or value stops a run at
once with one line naming it. Every field says what it means and its unit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from tabletop_env.robot import ControlConfig
from tabletop_env.sim import PhysicsConfig

#: The config files: ``config.yaml`` (training), ``evaluate.yaml`` and the groups.
CONF_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config error: {key}: {message}")


@dataclass
class EnvConfig:
    n_objects: int = MISSING  # blocks on the table in every game (1-8)
    max_objects: int = MISSING  # padding of object arrays; 8 lets Bob run every holdout task
    placement_low: list[float] = MISSING  # (x, y) m, placement area corner
    placement_high: list[float] = MISSING  # (x, y) m, opposite corner
    home_tool_position: list[float] = MISSING  # (x, y, z) m, tool at reset
    action_bins: int = MISSING  # discrete actions per dimension
    physics: dict[str, Any] = MISSING  # overrides of the simulator's PhysicsConfig (tabletop_env/sim.py), e.g. substeps: 5; {}: its defaults
    control: dict[str, Any] = MISSING  # overrides of the simulator's ControlConfig (tabletop_env/robot.py), e.g. max_translation: 0.03
    goal_rotation: bool = MISSING  # Bob's goal features end with the rotation to each goal (3 more per object; tabletop_env.state.rotation_to_goal)

    def __post_init__(self) -> None:
        _require(1 <= self.n_objects <= self.max_objects <= 8, "env.n_objects", f"need 1 <= n_objects <= max_objects <= 8, got {self.n_objects}, {self.max_objects}")
        _require(len(self.placement_low) == 2 and len(self.placement_high) == 2, "env.placement_low/high", "need two numbers (x, y)")
        _require(all(a < b for a, b in zip(self.placement_low, self.placement_high)), "env.placement_low", "must be below placement_high")
        _require(len(self.home_tool_position) == 3 and 0.02 <= self.home_tool_position[2] <= 0.4,
                 "env.home_tool_position", f"need (x, y, z) with z in [0.02, 0.4] m, got {list(self.home_tool_position)}")
        _require(self.action_bins >= 2, "env.action_bins", f"need at least 2, got {self.action_bins}")
        for key, settings in (("physics", PhysicsConfig), ("control", ControlConfig)):
            unknown = sorted(set(getattr(self, key)) - {f.name for f in fields(settings)})
            _require(not unknown, f"env.{key}", f"no such setting {unknown[0] if unknown else ''}; "
                     f"settings: {', '.join(f.name for f in fields(settings))}")

    def workspace(self) -> dict:
        """The :class:`tabletop_env.TabletopEnv` arguments that define where and how the game is
        played (placement area, reset pose, physics, control); the holdout evaluation uses the
        same ones."""
        tuples = lambda settings: {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # noqa: E731
        return {
            "placement_low": tuple(self.placement_low),
            "placement_high": tuple(self.placement_high),
            "home_tool_position": tuple(self.home_tool_position),
            "physics": PhysicsConfig(**tuples(self.physics)),
            "control": ControlConfig(**tuples(self.control)),
            "goal_rotation": self.goal_rotation,
        }


@dataclass
class GameSchema:
    alice_steps: int = MISSING  # T: steps of Alice's turn per goal
    max_goals: int = MISSING  # goals per game
    bob_steps_per_object: int = MISSING  # Bob's timeout per goal = this x objects
    success_hold_steps: int = MISSING  # steps all objects must stay at the goal
    alice_start: str = MISSING  # Alice's turns start from her last state (continue), later ones with the arm back home (home), or every one with the tool next to an object (near_object)
    alice_start_distance: list[float] = MISSING  # [min, max] m: with alice_start=near_object, the tool starts this far (horizontally) from the object's centre
    end_out_of_reach: bool = MISSING  # the game ends after a goal that leaves every object beyond the arm's reach (no later turn could move one)
    position_only: bool = MISSING  # success (and "moved") by position alone; the holdouts compare rotation too
    position_first_steps: int = MISSING  # a curriculum: position_only for the first this many env steps of training, then the full rule; 0: off
    rotation_tolerance_from: float | None = MISSING  # a curriculum after position_first_steps: Bob's rotation tolerance (rad) starts here and narrows linearly to the holdouts' 0.2; null: 0.2 throughout
    rotation_tolerance_steps: int = MISSING  # env steps over which rotation_tolerance_from narrows to 0.2
    bob_hindsight: str = MISSING  # final: a failed Bob turn that moved an object also becomes a demonstration, relabelled with the poses he reached; windows: every window of hindsight_window steps in which an object moved >= 1 cm, relabelled with the poses at its end
    hindsight_window: int = MISSING  # steps per window of bob_hindsight=windows
    translation_scale: float = MISSING  # the tool moves this x the action's x/y/z (both agents; in (0, 1])
    bob_fingers_closed: bool = MISSING  # Bob's finger command is ignored: his fingers stay closed
    bob_object_reward: float = MISSING  # Bob: + this when an object enters its goal, - this when one leaves it
    bob_success_reward: float = MISSING  # Bob: when all objects are at their goals (ends his turn)
    alice_valid_reward: float = MISSING  # Alice: a valid goal
    alice_bob_failed_reward: float = MISSING  # Alice: Bob failed her goal
    alice_outside_penalty: float = MISSING  # Alice: added when an object is left outside the placement area
    alice_paid_for_bob_time: bool = MISSING  # Alice: a goal Bob solves pays alice_bob_failed_reward x the share of his turn's steps he needed (the paper's time-based alternative)

    def position_only_at(self, env_steps: int) -> bool:
        """Whether success counts position alone after ``env_steps`` env steps of training
        (``position_only``, or the ``position_first_steps`` curriculum)."""
        return self.position_only or env_steps < self.position_first_steps

    def rotation_tolerance_at(self, env_steps: int) -> float:
        """Bob's rotation tolerance (rad) after ``env_steps`` env steps of training: the holdouts'
        0.2, or with ``rotation_tolerance_from`` that value from the end of ``position_first_steps``,
        narrowing linearly to 0.2 over ``rotation_tolerance_steps``."""
        from tabletop_env.state import ROTATION_TOLERANCE

        if self.rotation_tolerance_from is None:
            return ROTATION_TOLERANCE
        done = min(max(env_steps - self.position_first_steps, 0) / self.rotation_tolerance_steps, 1.0)
        return self.rotation_tolerance_from + done * (ROTATION_TOLERANCE - self.rotation_tolerance_from)

    def __post_init__(self) -> None:
        for key in ("alice_steps", "max_goals", "bob_steps_per_object", "success_hold_steps"):
            _require(getattr(self, key) >= 1, f"game.{key}", f"must be >= 1, got {getattr(self, key)}")
        _require(self.bob_hindsight in ("none", "final", "windows"), "game.bob_hindsight", f"must be none, final or windows, got {self.bob_hindsight!r}")
        _require(self.hindsight_window >= 1, "game.hindsight_window", f"must be >= 1, got {self.hindsight_window}")
        _require(self.position_first_steps >= 0, "game.position_first_steps", f"must be >= 0 (0: off), got {self.position_first_steps}")
        _require(not (self.position_first_steps and self.position_only), "game.position_first_steps",
                 "switches position-only success off after that many steps: it needs game.position_only=false")
        if self.rotation_tolerance_from is not None:
            _require(0.2 < self.rotation_tolerance_from <= math.pi, "game.rotation_tolerance_from",
                     f"must be in (0.2, pi] rad (0.2 is the holdouts' rule it narrows to), got {self.rotation_tolerance_from}")
            _require(self.rotation_tolerance_steps >= 1 and not self.position_only, "game.rotation_tolerance_steps",
                     f"needs >= 1 env steps to narrow over, and game.position_only=false; got {self.rotation_tolerance_steps}")
        _require(0.0 < self.translation_scale <= 1.0, "game.translation_scale", f"must be in (0, 1], got {self.translation_scale}")
        _require(self.alice_start in ("continue", "home", "near_object"), "game.alice_start",
                 f"must be continue, home or near_object, got {self.alice_start!r}")
        from selfplay.game import MIN_ALICE_START_DISTANCE

        d = list(self.alice_start_distance)
        _require(len(d) == 2 and MIN_ALICE_START_DISTANCE <= d[0] <= d[1], "game.alice_start_distance",
                 f"need [min, max] metres with {MIN_ALICE_START_DISTANCE} <= min <= max (closer, the tool would "
                 f"start on the block), got {d}")


@dataclass
class TeacherConfig:
    name: str = MISSING  # the teacher (selfplay/teachers.py): selfplay (Alice proposes goals), uniform (hand-designed random goals, no Alice)
    uniform_tasks: list[str] = MISSING  # goal mix of "uniform"
    goal_distance: list[float] | None = MISSING  # [min, max] m: uniform push goals this far from each block; null: anywhere in the area

    def __post_init__(self) -> None:
        from selfplay.teachers import GOAL_KINDS, TEACHERS

        _require(self.name in TEACHERS, "teacher.name", f"must be one of {', '.join(sorted(TEACHERS))}, got {self.name!r}")
        unknown = set(self.uniform_tasks) - set(GOAL_KINDS)
        _require(not unknown, "teacher.uniform_tasks", f"unknown goal kinds {sorted(unknown)}")
        if self.goal_distance is not None:
            d = list(self.goal_distance)
            _require(len(d) == 2 and 0 <= d[0] <= d[1], "teacher.goal_distance", f"need [min, max] metres with 0 <= min <= max, got {d}")


@dataclass
class AgentConfig:
    learning_rate: float = MISSING  # Adam step size (at the start of the budget)
    learning_rate_end: float | None = MISSING  # step size at trainer.total_steps, linear in between; null: constant
    gamma: float = MISSING  # discount per env step
    gae_lambda: float = MISSING  # GAE lambda
    ent_coef: float = MISSING  # entropy bonus weight
    clip_range: float = MISSING  # PPO ratio clip
    vf_coef: float = MISSING  # value loss weight
    n_epochs: int = MISSING  # passes over each batch
    batch_size: int = MISSING  # minibatch size (transitions)
    max_grad_norm: float = MISSING  # gradient norm clip
    width: int = MISSING  # hidden size of the object-set network
    depth: int = MISSING  # layers of the per-object MLP
    head: list[int] = MISSING  # policy and value head layers
    normalize_inputs: bool = MISSING  # standardise robot and object (+ goal) inputs with running statistics
    normalize_advantage: bool = MISSING  # standardise advantages per minibatch (SB3's default)
    target_kl: float | None = MISSING  # stop an update's epochs early when the approximate KL exceeds 1.5 x this; null: never
    clip_range_vf: float | None = MISSING  # clip the value change per update to +- this (return units); null: no value clipping
    # The learner: ppo (the paper's), or sac for Bob only (off-policy, continuous actions,
    # hindsight goals, Alice's demonstrations cloned by the actor: selfplay/learning/sac.py).
    # The keys below are SAC's; gamma, learning_rate, batch_size and the network sizes are shared.
    algo: str = MISSING
    init_from: str | None = MISSING  # an SB3 zip of this agent to start from (weights and optimiser state); object slots may differ
    buffer_size: int = MISSING  # transitions in the replay buffer
    updates_per_step: float = MISSING  # gradient steps per env step Bob takes
    tau: float = MISSING  # target-network averaging rate
    her_ratio: float = MISSING  # share of replayed samples whose goal is a pose reached later in the turn
    her_informative_only: bool = MISSING  # only hindsight goals the objects do not already satisfy before the step
    moved_share: float = MISSING  # share of each minibatch from turns in which an object moved
    replay_alice: bool = MISSING  # Alice's valid turns (towards the goals she left) join Bob's replay
    action_l2: float = MISSING  # weight of the actor's mean squared action in its loss
    learning_starts: int = MISSING  # transitions in the buffer before the first gradient step
    target_entropy: float | None = MISSING  # SAC's entropy target (nats), its weight tuned to keep it; None: SB3's -6

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "agent.learning_rate", f"must be positive, got {self.learning_rate}")
        _require(self.learning_rate_end is None or self.learning_rate_end >= 0, "agent.learning_rate_end",
                 f"must be >= 0 or null, got {self.learning_rate_end}")
        _require(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "agent.gamma/gae_lambda", "must lie in (0, 1]")
        _require(self.n_epochs >= 1 and self.batch_size >= 2, "agent.n_epochs/batch_size", "n_epochs >= 1, batch_size >= 2")
        _require(self.width >= 1 and self.depth >= 1, "agent.width/depth", "must be >= 1")
        _require(self.target_kl is None or self.target_kl > 0, "agent.target_kl", f"must be positive or null, got {self.target_kl}")
        _require(self.clip_range_vf is None or self.clip_range_vf > 0, "agent.clip_range_vf",
                 f"must be positive or null, got {self.clip_range_vf}")
        _require(self.algo in ("ppo", "sac"), "agent.algo", f"must be ppo or sac, got {self.algo!r}")
        _require(self.buffer_size >= 1 and self.updates_per_step > 0 and 0 < self.tau <= 1 and 0 <= self.her_ratio <= 1
                 and 0 <= self.moved_share <= 1 and self.action_l2 >= 0, "agent.buffer_size/updates_per_step/tau/her_ratio/moved_share/action_l2",
                 "need buffer_size >= 1, updates_per_step > 0, tau in (0, 1], her_ratio and moved_share in [0, 1], action_l2 >= 0")

    def learning_rate_at(self, progress: float) -> float:
        """Adam's step size once ``progress`` (0 at the start, 1 at ``trainer.total_steps``) of the
        budget is spent: ``learning_rate``, or linear from it to ``learning_rate_end``."""
        if self.learning_rate_end is None:
            return self.learning_rate
        progress = min(max(progress, 0.0), 1.0)
        return self.learning_rate + progress * (self.learning_rate_end - self.learning_rate)


@dataclass
class ABCConfig:
    enabled: bool = MISSING  # add Alice behavioural cloning to Bob's loss
    beta: float = MISSING  # weight of the ABC loss
    clip: float = MISSING  # ratio clip of the ABC loss
    batch_size: int | None = MISSING  # demonstration steps per PPO minibatch; null: bob.batch_size
    q_filter: bool = MISSING  # off-policy Bob only: clone a demonstrated action only where his critic rates it above his own

    def __post_init__(self) -> None:
        _require(self.beta >= 0 and 0 < self.clip < 1, "abc.beta/clip", f"need beta >= 0 and 0 < clip < 1, got {self.beta}, {self.clip}")
        _require(self.batch_size is None or self.batch_size >= 1, "abc.batch_size", f"must be >= 1 or null, got {self.batch_size}")


@dataclass
class PoolConfig:
    probability: float = MISSING  # share of games played against a past snapshot
    size: int = MISSING  # snapshots kept per agent
    every: int = MISSING  # updates between snapshots

    def __post_init__(self) -> None:
        _require(0 <= self.probability <= 1, "pool.probability", f"must be in [0, 1], got {self.probability}")
        _require(self.size >= 1 and self.every >= 1, "pool.size/every", "must be >= 1")


@dataclass
class TrainerConfig:
    total_steps: int = MISSING  # budget: Alice's and Bob's env steps together
    n_games: int = MISSING  # games run at once
    vec_env: str = MISSING  # dummy (one process), subproc (one process per game) or ray (games on Ray actors, see ray.*)
    rollout_steps: int = MISSING  # env steps (both agents) collected per update
    checkpoint_every: int = MISSING  # updates between checkpoints (one is always written at the end)
    keep_checkpoints: int = MISSING  # checkpoints kept on disk
    keep_steps: list[int] = MISSING  # env-step marks: the first checkpoint at or after each is kept for good
    video_every: int = MISSING  # updates between game videos; 0: none
    torch_threads: int = MISSING  # torch intra-op threads (the simulator uses the other core)
    device: str = MISSING  # torch device of the learners: cpu, cuda, cuda:<i> or auto (cuda when available)
    time_limit_minutes: float = MISSING  # also stop (with a checkpoint) after this much wall time in this process; 0: no limit
    learn_during_collection: bool = MISSING  # an off-policy Bob takes his gradient steps between the games' steps, overlapping their simulation with vec_env=subproc/ray

    def __post_init__(self) -> None:
        _require(self.total_steps > 0, "trainer.total_steps", f"must be positive, got {self.total_steps}")
        _require(self.n_games >= 1, "trainer.n_games", f"must be >= 1, got {self.n_games}")
        _require(self.vec_env in ("dummy", "subproc", "ray"), "trainer.vec_env", f"must be 'dummy', 'subproc' or 'ray', got {self.vec_env!r}")
        _require(self.rollout_steps >= self.n_games, "trainer.rollout_steps", "must be >= trainer.n_games")
        _require(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "trainer.checkpoint_every/keep_checkpoints", "must be >= 1")
        _require(all(mark > 0 for mark in self.keep_steps), "trainer.keep_steps", f"must be positive env steps, got {self.keep_steps}")
        _require(self.video_every >= 0 and self.torch_threads >= 1, "trainer.video_every/torch_threads", "video_every >= 0, torch_threads >= 1")
        _require(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "trainer.device",
                 f"must be cpu, cuda, cuda:<index>, mps or auto, got {self.device!r}")
        _require(self.time_limit_minutes >= 0, "trainer.time_limit_minutes", f"must be >= 0 (0: no limit), got {self.time_limit_minutes}")


@dataclass
class RayConfig:
    """Where the games run when ``trainer.vec_env=ray`` (the learner stays in the driver process)."""

    address: str | None = MISSING  # null: start a local Ray with this machine's cores; "auto" or "<head ip>:6379": join a running cluster
    workers: int = MISSING  # game-hosting actors, each stepping its share of trainer.n_games together; 0: one per CPU Ray offers, at most n_games
    cpus_per_worker: float = MISSING  # CPUs Ray reserves per actor
    spread: bool = MISSING  # place actors on as many nodes as possible (Ray's SPREAD strategy)
    max_restarts: int = MISSING  # actors replaced after dying before the run stops
    start_timeout_s: float = MISSING  # s, wait for an actor to start (e.g. for a free CPU on some node)

    def __post_init__(self) -> None:
        _require(self.workers >= 0, "ray.workers", f"must be >= 0 (0: one per CPU), got {self.workers}")
        _require(self.cpus_per_worker > 0, "ray.cpus_per_worker", f"must be positive, got {self.cpus_per_worker}")
        _require(self.max_restarts >= 0 and self.start_timeout_s > 0, "ray.max_restarts/start_timeout_s",
                 "max_restarts >= 0 and start_timeout_s > 0")


@dataclass
class EvalSchedule:
    every: int = MISSING  # updates between light holdout evaluations during training; 0: none
    trials: int = MISSING  # episodes per task in each light evaluation
    tasks: list[str] = MISSING
    goals_per_episode: int = MISSING  # goals in a row per episode (fixed-layout tasks: 1), up to the first failure

    def __post_init__(self) -> None:
        _require(self.every >= 0 and self.trials >= 1, "eval.every/trials", "every >= 0 and trials >= 1")
        _require(self.goals_per_episode >= 1, "eval.goals_per_episode", f"must be >= 1, got {self.goals_per_episode}")
        from tabletop_env import list_tasks

        unknown = [t for t in self.tasks if t not in list_tasks()]
        _require(not unknown, "eval.tasks", f"unknown task ids {unknown}; valid ids: {', '.join(list_tasks())}")


@dataclass
class WandbConfig:
    mode: str = MISSING  # offline (files in the run folder; `wandb sync` later), online, disabled
    project: str = MISSING
    entity: str | None = MISSING
    tags: list[str] = MISSING

    def __post_init__(self) -> None:
        _require(self.mode in ("offline", "online", "disabled"), "logger.wandb.mode", f"must be offline, online or disabled, got {self.mode!r}")


@dataclass
class LoggerConfig:
    wandb: WandbConfig = MISSING
    progress: str = MISSING  # auto (a rich bar in a terminal, lines otherwise), bar, lines

    def __post_init__(self) -> None:
        _require(self.progress in ("auto", "bar", "lines"), "logger.progress", f"must be auto, bar or lines, got {self.progress!r}")


@dataclass
class Config:
    env: EnvConfig = MISSING
    game: GameSchema = MISSING
    teacher: TeacherConfig = MISSING
    alice: AgentConfig = MISSING
    bob: AgentConfig = MISSING
    abc: ABCConfig = MISSING
    pool: PoolConfig = MISSING
    trainer: TrainerConfig = MISSING
    ray: RayConfig = MISSING
    eval: EvalSchedule = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING  # seeds games, networks and sampling
    resume: str | None = MISSING  # a run folder to continue from its last checkpoint
    name: str = MISSING  # a label for the run (wandb name, run folder suffix)
    experiment: Any = None  # set by conf/experiment/*.yaml (informational)

    def __post_init__(self) -> None:
        _require(self.alice.algo == "ppo", "alice.algo", f"Alice learns with ppo (sac is for Bob), got {self.alice.algo!r}")
        _require(not self.abc.q_filter or self.bob.algo == "sac", "abc.q_filter", "needs Bob's critic of actions: bob.algo=sac")
        _require(not self.trainer.learn_during_collection or self.bob.algo == "sac", "trainer.learn_during_collection",
                 "interleaves an off-policy Bob's gradient steps with the games' steps: it needs bob.algo=sac")
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
        if key not in schema.keys():  # (``in`` says False for a key whose value is MISSING)
            found.append(f"{prefix}{key}")
            continue
        child, reference = cfg._get_node(key), _schema_child(schema, key)
        if isinstance(child, DictConfig) and isinstance(reference, DictConfig) and not (reference._is_none() or reference._is_missing()):
            found += unknown_keys(child, reference, f"{prefix}{key}.")
    return found


def _schema_child(schema: Any, key: str) -> Any:
    """The schema node under ``key``; a section without values (MISSING) as its dataclass's keys."""
    from omegaconf import DictConfig, OmegaConf

    node = schema._get_node(key)
    schema_type = getattr(node._metadata, "ref_type", None) if isinstance(node, DictConfig) else None
    if node._is_missing() and isinstance(schema_type, type) and hasattr(schema_type, "__dataclass_fields__"):
        return OmegaConf.structured(schema_type)
    return node


def no_such_key(key: str) -> str:
    """``config error: <key>: no such key`` with the nearest valid key, if one is close."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    parent, _, name = key.rpartition(".")
    node = OmegaConf.structured(Config)
    for part in [p for p in parent.split(".") if p]:
        node = _schema_child(node, part) if isinstance(node, DictConfig) and part in node.keys() else None
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
    """Register the schemas so that ``config.yaml`` and ``evaluate.yaml`` are validated against them."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    cs.store(name="evaluate_schema", node=EvaluateConfig)


def compose(config_name: str = "config", overrides: Sequence[str] = ()) -> Any:
    """The composed ``DictConfig`` of ``selfplay/conf/<config_name>.yaml`` plus hydra overrides
    (``key=value``, ``+key=value``, ``group=option``), not yet validated."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def compose_config(overrides: Sequence[str] = ()) -> Config:
    """The validated :class:`Config` that ``python -m selfplay.train <overrides>`` would run with
    (``selfplay/conf/config.yaml`` plus hydra overrides such as ``experiment=paper_blocks``)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(compose("config", overrides))


def make_config(overrides: dict | None = None, **dotted: Any) -> Config:
    """A validated :class:`Config`: the user's defaults (``selfplay/conf/config.yaml``) plus
    overrides, for use from Python (tests, benchmarks, notebooks):
    ``make_config({"trainer": {"n_games": 2}}, **{"seed": 3})``."""
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(compose("config"), overrides or {}, OmegaConf.from_dotlist([f"{k}={v}" for k, v in dotted.items()]))
    return OmegaConf.to_object(merged)


@dataclass
class EvaluateConfig:
    """``python -m selfplay.evaluate key=value ...`` (defaults: ``selfplay/conf/evaluate.yaml``)."""

    run: str | None = MISSING  # a run folder: evaluate its latest Bob, write to <run>/eval
    checkpoint: str | None = MISSING  # or a Bob zip: write next to it (eval/)
    tasks: list[str] = MISSING  # task ids; empty: every holdout task
    trials: int = MISSING  # episodes per task
    goals_per_episode: int = MISSING  # goals in a row per episode (fixed-layout tasks: 1), up to the first failure
    seed: int = MISSING  # seeds layouts and goals: the same seed gives the same results
    deterministic: bool = MISSING  # greedy actions (False: sample from Bob's policy)
    video: bool = MISSING  # record the first trial of each task
    out: str | None = MISSING  # report folder (default: see run / checkpoint)
    progress: bool = MISSING  # a progress bar
    workspace: str = MISSING  # run: the training run's placement area and reset pose; default: TabletopEnv's
    torch_threads: int = MISSING  # torch intra-op threads (batch-1 inference gains nothing from more)
    workers: int | None = MISSING  # game worker processes, trials in parallel with batched inference (None: one per CPU; 0: one trial at a time)
    more_objects: str = MISSING  # tasks with more objects than Bob's object slots: widen (same weights) or skip

    def __post_init__(self) -> None:
        _require(self.trials >= 1, "trials", f"must be >= 1, got {self.trials}")
        _require(self.goals_per_episode >= 1, "goals_per_episode", f"must be >= 1, got {self.goals_per_episode}")
        _require(self.workspace in ("run", "default"), "workspace", f"must be 'run' or 'default', got {self.workspace!r}")
        _require(self.torch_threads >= 1, "torch_threads", f"must be >= 1, got {self.torch_threads}")
        _require(self.workers is None or self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        _require(self.more_objects in ("widen", "skip"), "more_objects", f"must be 'widen' or 'skip', got {self.more_objects!r}")
        _require(bool(self.run) != bool(self.checkpoint), "run/checkpoint", "give exactly one of run=<run folder> or checkpoint=<bob zip>")
