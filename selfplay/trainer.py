"""The training loop: collect -> relabel -> train Alice -> train Bob (+ ABC) -> log -> checkpoint."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv

from selfplay.checkpoint import checkpoint_problem, read_counters, resume_point, save_checkpoint, write_atomic
from selfplay.collector import Collector, RolloutStats
from selfplay.config import Config, ConfigError
from selfplay.game import ALICE, BOB, STRUCTURED_KEYS
from selfplay.offpolicy import DemonstrationCloning, TurnReplayBuffer, rotation_modes_for
from selfplay.opponents import OpponentPool
from selfplay.policies import policy_kwargs, update_input_stats
from selfplay.ppo import ABCPPO, load_batch
from selfplay.run_folder import MetricsLog, RunLock
from selfplay.vec_env import make_game, make_vec_env
from tabletop_env.env import object_rotation_modes
from tabletop_env.objects import blocks

log = logging.getLogger("selfplay")


class _Spaces(gym.Env):
    """Carries the spaces SB3 needs to build a model; never stepped."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space


def agent_observation_space(game_space: gym.spaces.Dict) -> gym.spaces.Dict:
    """Both agents see a :class:`TabletopEnv` observation (the game's, without ``phase``), so
    Bob's checkpoint acts on any holdout id unchanged."""
    return gym.spaces.Dict({k: v for k, v in game_space.spaces.items() if k != "phase"})


def build_model(cfg: Config, agent: int, observation_space: gym.spaces.Dict, action_space: gym.spaces.Space):
    """Alice: :class:`ABCPPO` without goal features and ABC; Bob: with both, or with
    ``bob.algo=sac`` an SB3 ``SAC`` (:func:`build_sac_bob`)."""
    a = cfg.alice if agent == ALICE else cfg.bob
    if agent == BOB and a.algo == "sac":
        return build_sac_bob(cfg, observation_space)
    kwargs = dict(
        learning_rate=a.learning_rate,
        n_steps=max(a.batch_size, 64),  # placeholder buffer; the collector supplies each batch
        batch_size=a.batch_size,
        n_epochs=a.n_epochs,
        gamma=a.gamma,
        gae_lambda=a.gae_lambda,
        ent_coef=a.ent_coef,
        clip_range=a.clip_range,
        vf_coef=a.vf_coef,
        max_grad_norm=a.max_grad_norm,
        normalize_advantage=a.normalize_advantage,
        policy_kwargs=policy_kwargs(use_goal=agent == BOB, width=a.width, depth=a.depth, head=tuple(a.head),
                                    normalize=a.normalize_inputs),
        seed=cfg.seed + agent,
        device="cpu",
        verbose=0,
    )
    env = DummyVecEnv([lambda: _Spaces(observation_space, action_space)])
    # Both agents train with ABCPPO's update (near-equal minibatches for batches of any size);
    # Alice without the ABC term.
    beta = cfg.abc.beta if cfg.abc.enabled and agent == BOB else 0.0
    model = ABCPPO("MultiInputPolicy", env, abc_coef=beta, abc_clip=cfg.abc.clip, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def build_sac_bob(cfg: Config, observation_space: gym.spaces.Dict) -> SAC:
    """An off-policy Bob: SB3's ``SAC`` on continuous actions in [-1, 1] with the object-set
    network. The learning one gets a :class:`TurnReplayBuffer` (:func:`turn_buffer`) instead of
    SB3's buffer. ``bob.zip`` stays a standard SB3 zip: ``SAC.load`` opens it."""
    b = cfg.bob
    space = gym.spaces.Dict({k: observation_space[k] for k in STRUCTURED_KEYS})
    actions = gym.spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
    kwargs = policy_kwargs(use_goal=True, width=b.width, depth=b.depth, head=tuple(b.head), normalize=b.normalize_inputs)
    kwargs["net_arch"] = list(b.head)  # SAC: the same head sizes for actor and critics
    model = SAC("MultiInputPolicy", DummyVecEnv([lambda: _Spaces(space, actions)]), learning_rate=b.learning_rate,
                buffer_size=1, batch_size=b.batch_size, tau=b.tau, gamma=b.gamma, learning_starts=0,
                target_entropy="auto" if b.target_entropy is None else b.target_entropy,
                policy_kwargs=kwargs, seed=cfg.seed + BOB, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def turn_buffer(cfg: Config, observation_space: gym.spaces.Dict) -> TurnReplayBuffer:
    """The replay buffer of a learning off-policy Bob, with the game's success rule per object slot."""
    b, n = cfg.bob, cfg.env.n_objects
    modes = rotation_modes_for(n, cfg.env.max_objects, object_rotation_modes(blocks(n), cfg.game.position_only))
    return TurnReplayBuffer(b.buffer_size, observation_space, modes, her_ratio=b.her_ratio, seed=cfg.seed,
                            informative_only=b.her_informative_only)


#: SB3's PPO statistics logged per agent (``train/<key>`` in SB3's logger).
PPO_STATS = ("learning_rate", "entropy_loss", "policy_gradient_loss", "value_loss", "approx_kl", "clip_fraction",
             "loss", "explained_variance", "n_updates", "clip_range")
#: SB3's SAC statistics, logged for an off-policy Bob.
SAC_STATS = ("learning_rate", "actor_loss", "critic_loss", "ent_coef", "ent_coef_loss", "n_updates")


def alice_reward(result) -> float:
    """Alice's reward for one goal (docs/method.md section 3's table)."""
    if not result.valid:
        return 0.0
    reward = 1.0 + (5.0 if not result.bob_success else 0.0)
    return reward - 3.0 if result.outside else reward


class Trainer:
    """Owns the games, both models, the snapshot pool and the run folder (locked from here to
    :meth:`close`: a second trainer on the same folder stops with
    :class:`selfplay.run_folder.RunFolderError`).

    With ``cfg.resume``, restores the newest complete checkpoint (an incomplete newer one is
    skipped with a warning); a checkpoint that does not fit this config raises
    :class:`ConfigError`. Nothing in the run folder is written before all of that succeeded.
    """

    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.venv = None
        self._wandb = None
        self._lock = RunLock(self.run_dir)
        self._lock.acquire()
        try:
            self._build(cfg)
        except BaseException:
            self.close()
            raise

    def _build(self, cfg: Config) -> None:
        th.set_num_threads(cfg.trainer.torch_threads)
        np.random.seed(cfg.seed)
        th.manual_seed(cfg.seed)
        self.venv = make_vec_env(cfg)
        space = agent_observation_space(self.venv.observation_space)
        self.models = (build_model(cfg, ALICE, space, self.venv.action_space), build_model(cfg, BOB, space, self.venv.action_space))
        if isinstance(self.models[BOB], SAC):
            self.models[BOB].replay_buffer = turn_buffer(cfg, self.models[BOB].observation_space)
        self.pool = OpponentPool(
            # untrained copies as templates: a trained policy cannot be deep-copied (autograd state)
            (build_model(cfg, ALICE, space, self.venv.action_space).policy, build_model(cfg, BOB, space, self.venv.action_space).policy),
            probability=cfg.pool.probability if cfg.teacher.name == "selfplay" else 0.0,
            size=cfg.pool.size,
            every=cfg.pool.every,
        )
        self.counters = {"env_steps": 0, "alice_steps": 0, "bob_steps": 0, "updates": 0, "games": 0, "wall_s": 0.0, "wandb_id": None}
        if cfg.resume:
            checkpoint = resume_point(Path(cfg.resume), report=log.warning)
            if checkpoint is None:
                log.warning("resume: %s was stopped before its first checkpoint; starting it over from step 0", cfg.resume)
            else:
                self._restore(checkpoint)
        self.collector = Collector(self.venv, *self.models, pool=self.pool, seed=cfg.seed + self.counters["updates"])
        # An off-policy Bob clones Alice's demonstrations with a loss of its own (the ABC weight).
        self.bob_cloning = DemonstrationCloning(cfg.abc.beta if cfg.abc.enabled else 0.0, seed=cfg.seed)
        self._gradient_credit = 0.0  # an off-policy Bob's gradient steps owed (fractions carried over)
        self.metrics: MetricsLog | None = None
        self._checkpointed_at = self.counters["env_steps"] if cfg.resume else None  # env steps of the last checkpoint written
        self.stopped_by: str | None = None  # the signal that ended train() early, if any

    # -- the loop -------------------------------------------------------------------------------
    def train(self, stop=None) -> dict:
        """Run until ``trainer.total_steps`` env steps (or ``trainer.time_limit_minutes``, or
        ``stop.received`` is set, see :class:`selfplay.processes.StopSignals`), then checkpoint;
        returns the last metrics row.

        The budget is exact up to one step of every game: the last update collects only what is
        left of it, rounded up to a multiple of ``trainer.n_games`` (so it may be shorter than
        ``trainer.rollout_steps``)."""
        cfg = self.cfg
        self._open_logs()
        last: dict = {}
        progress = _Progress(cfg.logger.progress, cfg.trainer.total_steps, self.counters["env_steps"])
        deadline = time.monotonic() + 60 * cfg.trainer.time_limit_minutes if cfg.trainer.time_limit_minutes else float("inf")
        stopped = lambda: stop is not None and stop.received is not None  # noqa: E731
        try:
            while self.counters["env_steps"] < cfg.trainer.total_steps and time.monotonic() < deadline and not stopped():
                last = self.iteration()
                progress.update(self.counters["env_steps"], last)
                if self.counters["updates"] % cfg.trainer.checkpoint_every == 0:
                    self.checkpoint()
                if cfg.trainer.video_every and self.counters["updates"] % cfg.trainer.video_every == 0 and not stopped():
                    self.record_video()
            self.stopped_by = stop.received if stopped() else None
            if self._checkpointed_at != self.counters["env_steps"]:
                self.checkpoint()
        finally:
            progress.close()
            self.close()
        return last

    def iteration(self) -> dict:
        """One collect -> update cycle; returns its metrics."""
        cfg = self.cfg
        start = time.perf_counter()
        n_steps, left = cfg.trainer.rollout_steps, cfg.trainer.total_steps - self.counters["env_steps"]
        stats = self.collector.collect(left if 0 < left < n_steps else n_steps)  # the budget's last, shorter update
        collected = time.perf_counter()
        alice, bob = self.models
        discounts = (alice.gamma, bob.gamma)
        lambdas = (alice.gae_lambda, getattr(bob, "gae_lambda", 1.0))  # an off-policy Bob has no PPO batch
        batches, demos = self.collector.take_batches(discounts, lambdas)
        self._store_demonstrations(demos)
        progress_remaining = max(0.0, 1.0 - self.counters["env_steps"] / cfg.trainer.total_steps)
        train_stats = {}
        for agent, model, batch in ((ALICE, alice, batches[ALICE]), (BOB, bob, batches[BOB])):
            if batch is None or len(batch["actions"]) < 2:
                continue
            load_batch(model, batch)
            model._current_progress_remaining = progress_remaining
            model.num_timesteps = self.counters["env_steps"]
            model.train()
            name = "alice" if agent == ALICE else "bob"
            train_stats.update({f"{name}/{k.split('/')[-1]}": float(v) for k, v in model.logger.name_to_value.items()})
            model.logger.name_to_value.clear()
            update_input_stats(model.policy, batch["observations"])  # after the update: see its docstring
        if isinstance(bob, SAC):
            train_stats.update(self._update_off_policy_bob(stats.steps[BOB]))
        updated = time.perf_counter()
        self.counters["env_steps"] += sum(stats.steps)
        self.counters["alice_steps"] += stats.steps[ALICE]
        self.counters["bob_steps"] += stats.steps[BOB]
        self.counters["games"] += stats.games
        self.counters["updates"] += 1
        self.pool.maybe_snapshot(self.counters["updates"], (alice.policy, bob.policy))
        row = self._metrics(stats, train_stats, collected - start, updated - collected, batches)
        if cfg.eval.every and self.counters["updates"] % cfg.eval.every == 0:
            row.update(self.holdout_eval())
        self.counters["wall_s"] = self.counters.get("wall_s", 0.0) + time.perf_counter() - start
        row["time/elapsed_s"] = self.counters["wall_s"]  # training wall time so far, resumes included
        self._log(row)
        return row

    def holdout_eval(self) -> dict:
        """A light zero-shot evaluation of the live Bob: ``eval/<task>/success`` per task."""
        from selfplay.evaluate import BobPolicy, evaluate_task

        bob = BobPolicy(self.models[BOB], deterministic=True)
        out = {}
        for task_id in self.cfg.eval.tasks:
            result, _ = evaluate_task(bob, task_id, self.cfg.eval.trials, seed=self.cfg.seed,
                                      max_objects=self.cfg.env.max_objects, env_kwargs=self.cfg.env.workspace())
            out[f"eval/{task_id}/success"] = result.success_rate
            out[f"eval/{task_id}/distance"] = result.mean_final_distance
        return out

    def _update_off_policy_bob(self, new_steps: int) -> dict:
        """Bob's finished turns into his replay buffer, then ``bob.updates_per_step`` SAC gradient
        steps per env step he took, each followed by one cloning step on Alice's demonstrations."""
        bob, b = self.models[BOB], self.cfg.bob
        for observations, actions in self.collector.take_turns():
            bob.replay_buffer.add_turn(observations, actions)
        if len(bob.replay_buffer) < b.learning_starts:
            return {}
        self._gradient_credit += new_steps * b.updates_per_step
        steps = int(self._gradient_credit)
        self._gradient_credit -= steps
        cloning = []
        for _ in range(steps):
            bob.train(gradient_steps=1, batch_size=b.batch_size)
            cloning.append(self.bob_cloning.step(bob, b.batch_size))
        stats = {f"bob/{k.split('/')[-1]}": float(v) for k, v in bob.logger.name_to_value.items()}
        bob.logger.name_to_value.clear()
        if steps and not np.isnan(cloning).all():
            stats["bob/abc_loss"] = float(np.nanmean(cloning))
        return stats

    def _store_demonstrations(self, demos: dict | None) -> None:
        """Bob's behaviour log-probabilities of Alice's actions, for the coming update (an
        off-policy Bob: the demonstrations, as action values, for his cloning term)."""
        bob = self.models[BOB]
        if isinstance(bob, SAC):
            if demos is not None and self.cfg.abc.enabled:
                values = -1.0 + 2.0 * demos["actions"] / (self.cfg.env.action_bins - 1)
                self.bob_cloning.add(demos["observations"], values)
            return
        bob.demonstrations.clear()
        if demos is None or not self.cfg.abc.enabled:
            return
        observations = {k: v for k, v in demos["observations"].items() if k in bob.observation_space.spaces}
        log_probs = []
        with th.no_grad():
            for start in range(0, len(demos["actions"]), 1024):
                chunk = {k: v[start : start + 1024] for k, v in observations.items()}
                obs_tensor, _ = bob.policy.obs_to_tensor(chunk)
                actions = th.as_tensor(demos["actions"][start : start + 1024])
                _, log_prob, _ = bob.policy.evaluate_actions(obs_tensor, actions)
                log_probs.append(log_prob.cpu().numpy())
        bob.demonstrations.add(observations, demos["actions"], np.concatenate(log_probs))

    # -- metrics --------------------------------------------------------------------------------
    def _metrics(self, stats: RolloutStats, train_stats: dict, collect_s: float, update_s: float, batches) -> dict:
        goals = stats.goals
        valid = [g for g in goals if g.valid]
        played = [g for g in valid if g.bob_success is not None]
        row: dict = {
            "env_steps": self.counters["env_steps"],
            "updates": self.counters["updates"],
            "alice/reward": float(np.mean([alice_reward(g) for g in goals])) if goals else float("nan"),
            "alice/valid_goal_rate": len(valid) / len(goals) if goals else float("nan"),
            "alice/outside_rate": float(np.mean([g.outside for g in valid])) if valid else float("nan"),
            "bob/success_rate": float(np.mean([g.bob_success for g in played])) if played else float("nan"),
            "bob/reward": float(batches[BOB]["rewards"].mean()) if batches[BOB] is not None else float("nan"),
            "goals/moved": float(np.mean([g.moved for g in valid])) if valid else float("nan"),
            "goals/lifted": float(np.mean([g.lifted for g in valid])) if valid else float("nan"),
            "goals/stacked": float(np.mean([g.stacked for g in valid])) if valid else float("nan"),
            "goals/distance": float(np.mean([g.distance for g in valid])) if valid else float("nan"),  # m
            "abc/demonstrations": stats.demonstrations,
            "abc/demonstration_steps": stats.demonstration_steps,
            "abc/hindsight_demonstrations": stats.hindsight_demonstrations,
            "game/games": stats.games,
            "game/snapshot_games": stats.snapshot_games,
            "game/sim_errors": stats.sim_errors,
            "game/lost_games": stats.lost_games,  # dropped half-played: their Ray worker died
            "game/worker_restarts": getattr(self.venv, "restarts", 0),  # Ray workers replaced so far in this process
            "time/sps": sum(stats.steps) / max(collect_s + update_s, 1e-9),
            "time/collect_s": collect_s,
            "time/update_s": update_s,
            **{f"time/{k}_s": v for k, v in stats.seconds.items()},
        }
        for k in range(self.cfg.game.max_goals):
            at_k = [g.bob_success for g in played if g.index == k]
            row[f"bob/success_goal_{k}"] = float(np.mean(at_k)) if at_k else float("nan")
        row["abc/loss"] = train_stats.pop("bob/abc_loss", float("nan"))
        train_stats.pop("bob/abc_demonstrations", None)
        # the same columns every update, trained or not (metrics.csv keeps its first header)
        for name, model in (("alice", self.models[ALICE]), ("bob", self.models[BOB])):
            for key in SAC_STATS if isinstance(model, SAC) else PPO_STATS:
                row[f"{name}/{key}"] = train_stats.get(f"{name}/{key}", float("nan"))
        if self.cfg.eval.every:
            row.update({f"eval/{task}/{key}": float("nan") for task in self.cfg.eval.tasks for key in ("success", "distance")})
        return row

    def _open_logs(self) -> None:
        """metrics.csv cut back to the checkpoint this run starts from (see :class:`MetricsLog`); wandb."""
        self.metrics = MetricsLog(self.run_dir / "metrics.csv", updates=self.counters["updates"])
        if self.cfg.logger.wandb.mode != "disabled":
            self._wandb = self._start_wandb()

    def _start_wandb(self):
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        os.environ.setdefault("WANDB_SILENT", "true")  # no banner lines between progress lines
        import wandb

        w = self.cfg.logger.wandb
        mode = w.mode
        if mode == "online":
            problem = wandb_online_problem()
            if problem:
                print(f"logger.wandb.mode=online: {problem}; logging offline instead "
                      f"(upload later: wandb sync {self.run_dir}/wandb/offline-run-*)", file=sys.stderr, flush=True)
                mode = "offline"
        kwargs = dict(project=w.project, entity=w.entity, name=self.run_dir.name, tags=list(w.tags), dir=str(self.run_dir),
                      id=self.counters.get("wandb_id") or None, resume="allow", config=asdict(self.cfg))
        try:
            run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=30), **kwargs)
        except Exception as error:  # noqa: BLE001 - wandb raises many kinds; tracking must not end the run
            if mode == "offline":
                raise
            print(f"logger.wandb.mode=online: wandb could not start ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
                  "logging offline instead", file=sys.stderr, flush=True)
            run = wandb.init(mode="offline", **kwargs)
        self.counters["wandb_id"] = run.id
        return run

    def _log(self, row: dict) -> None:
        self.metrics.append(row)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}, step=self.counters["env_steps"])

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> Path:
        """Write ``checkpoints/step-N`` (see :mod:`selfplay.checkpoint`), metrics.csv flushed first."""
        alice, bob = self.models
        if self.metrics is not None:
            self.metrics.sync()
        path = save_checkpoint(
            self.run_dir,
            self.counters["env_steps"],
            {"alice.zip": alice.save, "bob.zip": bob.save, "pool.pt": lambda p: th.save(self.pool.state_dict(), p)},
            self.counters,
            keep=self.cfg.trainer.keep_checkpoints,
        )
        self._checkpointed_at = self.counters["env_steps"]
        return path

    def _restore(self, checkpoint: Path) -> None:
        """Load a checkpoint; :class:`ConfigError` naming the file when it does not fit."""
        alice, bob = self.models
        for name, model in (("alice", alice), ("bob", bob)):
            mismatch = architecture_mismatch(checkpoint / f"{name}.zip", model, name)
            if mismatch:
                raise ConfigError(f"config error: resume: {mismatch} (checkpoint {checkpoint}); "
                                  "resume with the checkpoint's value, or start a new run")
        for name, load in (("alice.zip", lambda p: alice.set_parameters(str(p), exact_match=True)),
                           ("bob.zip", lambda p: bob.set_parameters(str(p), exact_match=True)),
                           ("pool.pt", lambda p: self.pool.load_state_dict(th.load(p, weights_only=False)))):
            try:
                load(checkpoint / name)
            except Exception as error:  # noqa: BLE001 - torch / SB3 / zipfile raise many kinds
                damaged = checkpoint_problem(checkpoint)
                reason = f"it is incomplete ({damaged})" if damaged else "it does not fit this config"
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ConfigError(f"config error: resume: cannot load {checkpoint / name}: {reason}: {first}") from None
        self.counters.update(read_counters(checkpoint))
        for model in self.models:
            if isinstance(model, PPO):
                model._n_updates = self.counters["updates"] * model.n_epochs
        log.info("resumed from %s at %d env steps", checkpoint, self.counters["env_steps"])

    # -- videos ---------------------------------------------------------------------------------
    def record_video(self, max_steps: int = 2000) -> Path:
        """One whole game (Alice's turns, then Bob's) with the current policies, as an mp4."""
        import imageio.v2 as imageio

        game = make_game(self.cfg, seed=self.cfg.seed + 10_000 + self.counters["updates"], render_mode="rgb_array")
        obs, _ = game.reset()
        frames = []
        for step in range(max_steps):
            model = self.models[int(obs["phase"][0])]
            action, _ = model.predict({k: v for k, v in obs.items() if k in model.observation_space.spaces}, deterministic=False)
            obs, _, done, _, _ = game.step(action)
            if step % 2 == 0:
                frames.append(game.render())
            if done:
                break
        game.close()
        path = self.run_dir / "videos" / f"game-{self.counters['env_steps']:09d}.mp4"
        path.parent.mkdir(exist_ok=True)
        imageio.mimsave(path, frames, fps=12, macro_block_size=8)
        if self._wandb is not None:
            import wandb

            self._wandb.log({"video/game": wandb.Video(str(path), format="mp4")}, step=self.counters["env_steps"])
        return path

    def close(self) -> None:
        """Stop the games and wandb, release the run folder (safe to call more than once)."""
        if self.venv is not None:
            self.venv.close()
            self.venv = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        self._lock.release()


class _Progress:
    """A rich progress bar in a terminal, plain log lines otherwise."""

    KEYS = ("bob/success_rate", "alice/valid_goal_rate", "alice/reward", "abc/demonstrations", "time/sps")

    def __init__(self, mode: str, total: int, done: int) -> None:
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]self-play"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
                                TimeRemainingColumn(), TextColumn("{task.fields[summary]}"))
            self.task = self.bar.add_task("train", total=total, completed=done, summary="")
            self.bar.start()
        self.total = total

    def update(self, done: int, row: dict) -> None:
        summary = "  ".join(f"{k.split('/')[-1]}={row[k]:.3g}" for k in self.KEYS if k in row and not np.isnan(row[k]))
        if self.bar is not None:
            self.bar.update(self.task, completed=done, summary=summary)
        else:
            print(f"[{done:>10,}/{self.total:,} steps] update {row['updates']}: {summary}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def save_config(cfg_yaml: str, run_dir: Path) -> None:
    write_atomic(Path(run_dir) / "config.yaml", cfg_yaml)


def _architecture(agent: str, policy_kwargs: dict, observation_space: gym.spaces.Dict, action_space) -> dict:
    """The config keys that fix a network's shapes, with their values in one model."""
    extractor, head = policy_kwargs["features_extractor_kwargs"], policy_kwargs["net_arch"]
    continuous = not hasattr(action_space, "nvec")  # an off-policy Bob (bob.algo=sac)
    shapes = {
        f"{agent}.algo": "sac" if continuous else "ppo",
        f"{agent}.width": extractor["width"],
        f"{agent}.depth": extractor["depth"],
        f"{agent}.normalize_inputs": extractor.get("normalize", False),
        f"{agent}.head": list(head["pi"] if isinstance(head, dict) else head),
        "env.max_objects": observation_space["mask"].shape[0],
    }
    if not continuous:
        shapes["env.action_bins"] = int(action_space.nvec[0])
    return shapes


def architecture_mismatch(zip_path: Path, model: PPO, agent: str) -> str | None:
    """The config key whose value differs between ``model`` and the network saved in
    ``zip_path`` (an SB3 zip), e.g. ``bob.width is 64 but the checkpoint was trained with 32``;
    None if they match or the zip cannot be read (loading it then says why)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, _, _ = load_from_zip_file(zip_path, device="cpu", load_data=True)
        saved = _architecture(agent, data["policy_kwargs"], data["observation_space"], data["action_space"])
    except Exception:  # noqa: BLE001 - a damaged zip: the load reports it
        return None
    ours = _architecture(agent, model.policy_kwargs, model.observation_space, model.action_space)
    for key, value in ours.items():
        if saved[key] != value:
            return f"{key} is {value} but the checkpoint was trained with {saved[key]}"
    return None


def wandb_online_problem(timeout_s: float = 5.0) -> str | None:
    """What stops wandb from logging online (no API key, the server unreachable), or None.
    Checked in seconds, before wandb itself would wait minutes."""
    import netrc
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc(os.environ.get("NETRC")).authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return f"no wandb API key (set WANDB_API_KEY or run `wandb login`; none in ~/.netrc for {host})"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return f"cannot reach the wandb server {host}:{port} ({error.strerror or error})"
    return None
