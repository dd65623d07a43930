"""The training loop: collect (the game relabels Alice's failed goals into demonstrations) ->
train Alice -> train Bob (+ ABC) -> log -> checkpoint."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch as th

from selfplay.checkpoint import read_counters, resume_point, save_checkpoint, write_atomic
from selfplay.collector import Collector
from selfplay.config import Config
from selfplay.game import ALICE, BOB
from selfplay.learning import agent_observation_space, build_learner
from selfplay.opponents import OpponentPool
from selfplay.run_folder import MetricsLog, RunLock
from selfplay.teachers import TEACHERS
from selfplay.training.alice_goals import GOALS_FILE, goal_rows, write_report
from selfplay.training.metrics import Progress, metrics_row
from selfplay.training.resume import REPLAY_FILE, has_replay, restore, start_from
from selfplay.training.video import record_game
from selfplay.training.wandb_run import start_wandb
from selfplay.vec_env import game_config, make_vec_env
from tabletop_env.state import ROTATION_TOLERANCE

log = logging.getLogger("selfplay")


class Trainer:
    """Owns the games, both learners, the snapshot pool and the run folder (locked from here to
    :meth:`close`: a second trainer on the same folder stops with
    :class:`selfplay.run_folder.RunFolderError`).

    With ``cfg.resume``, restores the newest complete checkpoint (an incomplete newer one is
    skipped with a warning); a checkpoint that does not fit this config raises
    :class:`selfplay.config.ConfigError`. Nothing in the run folder is written before all of
    that succeeded.
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
        self.rules = game_config(cfg)
        self.venv = make_vec_env(cfg)
        space, actions = agent_observation_space(self.venv.observation_space), self.venv.action_space
        self.learners = (build_learner(cfg, ALICE, space, actions), build_learner(cfg, BOB, space, actions))
        self.pool = OpponentPool(
            # untrained copies as templates: a trained policy cannot be deep-copied (autograd state)
            (build_learner(cfg, ALICE, space, actions, template=True).policy, build_learner(cfg, BOB, space, actions, template=True).policy),
            probability=cfg.pool.probability if TEACHERS[cfg.teacher.name].alice_proposes else 0.0,  # no Alice: no opponents
            size=cfg.pool.size,
            every=cfg.pool.every,
        )
        self.counters = {"env_steps": 0, "alice_steps": 0, "bob_steps": 0, "updates": 0, "games": 0, "wall_s": 0.0, "wandb_id": None}
        if not cfg.resume:  # a fresh run may start from given zips; a resume restores its checkpoint (else)
            for name, learner, settings in zip(("alice", "bob"), self.learners, (cfg.alice, cfg.bob)):
                if settings.init_from:
                    start_from(learner, Path(settings.init_from), name)
                    log.info("%s starts from %s", name, settings.init_from)
        else:
            checkpoint = resume_point(Path(cfg.resume), report=log.warning)
            if checkpoint is None:
                log.warning("resume: %s was stopped before its first checkpoint; starting it over from step 0", cfg.resume)
            else:
                restore(checkpoint, self.learners, self.pool)
                self.counters.update(read_counters(checkpoint))
                for learner in self.learners:
                    if learner.on_policy:  # SB3's count: passes over a batch
                        learner.n_updates = self.counters["updates"] * learner.settings.n_epochs
                log.info("resumed from %s at %d env steps", checkpoint, self.counters["env_steps"])
        self.collector = Collector(self.venv, *self.learners, pool=self.pool, seed=cfg.seed + self.counters["updates"])
        self.metrics: MetricsLog | None = None
        self.goals_log: MetricsLog | None = None  # goals.csv: Alice's valid goals (with an Alice)
        self._checkpointed_at = self.counters["env_steps"] if cfg.resume else None  # env steps of the last checkpoint written
        # the success rule the games and Bob's replay use now (setter -> value; see _set_rule)
        self._rules_in_force = {"set_position_only": self.rules.position_only, "set_rotation_tolerance": ROTATION_TOLERANCE}
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
        progress = Progress(cfg.logger.progress, cfg.trainer.total_steps, self.counters["env_steps"])
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
            if self._checkpointed_at != self.counters["env_steps"] or has_replay(self.learners[1]):
                self.checkpoint(last=True)
            try:
                self.report_alice_goals()
            except Exception as error:  # a report must not fail a finished run (goals.csv stays)
                log.warning("alice_goals report not written: %s", error)
        finally:
            progress.close()
            self.close()
        return last

    def iteration(self) -> dict:
        """One collect -> update cycle; returns its metrics."""
        cfg = self.cfg
        start = time.perf_counter()
        n_steps, left = cfg.trainer.rollout_steps, cfg.trainer.total_steps - self.counters["env_steps"]
        self._follow_position_first()
        self._follow_rotation_tolerance()
        self._follow_learning_rates()
        alice, bob = self.learners
        while_stepping = None
        if cfg.trainer.learn_during_collection:  # Bob's gradient steps overlap the games' simulation
            while_stepping = lambda bob_steps: bob.learn_some(self.collector.take_turns(), bob_steps)  # noqa: E731
        stats = self.collector.collect(left if 0 < left < n_steps else n_steps, while_stepping)  # the budget's last update may be shorter
        collected = time.perf_counter()
        batches, demos = self.collector.take_batches((alice.gamma, bob.gamma), (alice.gae_lambda, bob.gae_lambda))
        bob.set_demonstrations(demos)  # ABC: Bob's behaviour log-probabilities, before either update
        train_stats = {}
        for name, learner, batch in (("alice", alice, batches[ALICE]), ("bob", bob, batches[BOB])):
            if not learner.on_policy:  # an off-policy Bob learns from his finished turns
                done_during_collection = cfg.trainer.learn_during_collection  # then only the turns since his last step
                result = learner.learn(self.collector.take_turns(), 0 if done_during_collection else stats.steps[BOB])
            elif batch is not None and len(batch["actions"]) >= 2:
                result = learner.update(batch)
            else:
                continue
            train_stats.update({f"{name}/{key}": float(value) for key, value in result.items()})
        updated = time.perf_counter()
        self.counters["env_steps"] += sum(stats.steps)
        self.counters["alice_steps"] += stats.steps[ALICE]
        self.counters["bob_steps"] += stats.steps[BOB]
        self.counters["games"] += stats.games
        self.counters["updates"] += 1
        self.pool.maybe_snapshot(self.counters["updates"], (alice.policy, bob.policy))
        row = metrics_row(cfg, self.rules, self.counters, stats, train_stats, (alice.stat_names, bob.stat_names),
                          batches[BOB], collected - start, updated - collected, getattr(self.venv, "restarts", 0))
        if cfg.game.position_first_steps:
            row["game/position_only"] = float(self._rules_in_force["set_position_only"])  # the rule of this update's games
        if cfg.game.rotation_tolerance_from is not None:
            row["game/rotation_tolerance"] = self._rules_in_force["set_rotation_tolerance"]
        if cfg.eval.every and self.counters["updates"] % cfg.eval.every == 0:
            row.update(self.holdout_eval())
        self.counters["wall_s"] = self.counters.get("wall_s", 0.0) + time.perf_counter() - start
        row["time/elapsed_s"] = self.counters["wall_s"]  # training wall time so far, resumes included
        self._log(row)
        if self.goals_log is not None:
            self.goals_log.extend(goal_rows(stats.goals, self.counters["env_steps"], self.counters["updates"]))
        return row

    def _follow_position_first(self) -> None:
        """``game.position_first_steps``: success by position alone until that many env steps,
        then by the full rule, in every game and in Bob's replay at once."""
        on = self.cfg.game.position_only_at(self.counters["env_steps"])
        if self._set_rule("set_position_only", on):
            log.info("%d env steps: success by %s from now on", self.counters["env_steps"], "position alone" if on else "the full rule")

    def _follow_rotation_tolerance(self) -> None:
        """``game.rotation_tolerance_from``: Bob's rotation tolerance for the coming update, in
        every game and in his replay's hindsight rewards (a resume follows it from the env steps)."""
        self._set_rule("set_rotation_tolerance", self.cfg.game.rotation_tolerance_at(self.counters["env_steps"]))

    def _set_rule(self, setter: str, value) -> bool:
        """A success-rule setting (``set_position_only``, ``set_rotation_tolerance``) in every game
        and both learners, when it differs from the one in force; whether it did."""
        if self._rules_in_force.get(setter) == value:
            return False
        self.venv.env_method(setter, value)
        for learner in self.learners:
            getattr(learner, setter)(value)
        self._rules_in_force[setter] = value
        return True

    def _follow_learning_rates(self) -> None:
        """Each learner's step size for the coming update: ``<agent>.learning_rate``, or linear to
        ``learning_rate_end`` in the share of ``trainer.total_steps`` spent. Set every update, so a
        resume follows the config, not the rate stored in a checkpoint's optimiser state."""
        progress = self.counters["env_steps"] / self.cfg.trainer.total_steps
        for settings, learner in zip((self.cfg.alice, self.cfg.bob), self.learners):
            learner.set_learning_rate(settings.learning_rate_at(progress))

    def holdout_eval(self) -> dict:
        """A light zero-shot evaluation of the live Bob: ``eval/<task>/success`` and ``distance`` per task."""
        from selfplay.evaluation import BobPolicy, evaluate_task

        bob = BobPolicy(self.learners[BOB], deterministic=True)
        out = {}
        for task_id in self.cfg.eval.tasks:
            result, _ = evaluate_task(bob, task_id, self.cfg.eval.trials, seed=self.cfg.seed, max_objects=self.cfg.env.max_objects,
                                      env_kwargs=self.cfg.env.workspace(), max_goals=self.cfg.eval.goals_per_episode)
            out[f"eval/{task_id}/success"] = result.success_rate
            out[f"eval/{task_id}/distance"] = result.mean_final_distance
        return out

    # -- logs -----------------------------------------------------------------------------------
    def _open_logs(self) -> None:
        """metrics.csv cut back to the checkpoint this run starts from (see :class:`MetricsLog`); wandb."""
        self.metrics = MetricsLog(self.run_dir / "metrics.csv", updates=self.counters["updates"])
        if TEACHERS[self.cfg.teacher.name].alice_proposes:
            self.goals_log = MetricsLog(self.run_dir / GOALS_FILE, updates=self.counters["updates"])
        if self.cfg.logger.wandb.mode != "disabled":
            self._wandb = start_wandb(self.cfg, self.run_dir, self.counters.get("wandb_id"))
            self.counters["wandb_id"] = self._wandb.id

    def _log(self, row: dict) -> None:
        self.metrics.append(row)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}, step=self.counters["env_steps"])

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self, last: bool = False) -> Path:
        """Write ``checkpoints/step-N`` (see :mod:`selfplay.checkpoint`), metrics.csv flushed first.
        ``last``: the run's final checkpoint (budget, time limit or a stop signal), which also
        holds an off-policy Bob's replay buffer (``bob_replay.npz``) so that a resume continues it."""
        alice, bob = self.learners
        for log_file in (self.metrics, self.goals_log):
            if log_file is not None:
                log_file.sync()
        writers = {"alice.zip": alice.save, "bob.zip": bob.save, "pool.pt": lambda p: th.save(self.pool.state_dict(), p)}
        if last and has_replay(bob):
            writers[REPLAY_FILE] = bob.save_replay
        path = save_checkpoint(
            self.run_dir,
            self.counters["env_steps"],
            writers,
            self.counters,
            keep=self.cfg.trainer.keep_checkpoints,
            keep_steps=self.cfg.trainer.keep_steps,
        )
        self._checkpointed_at = self.counters["env_steps"]
        return path

    def report_alice_goals(self) -> Path | None:
        """What Alice discovered so far (:mod:`selfplay.training.alice_goals`): the table and
        picture in the run folder, and in wandb. Returns the picture's path (None: no goals)."""
        report = write_report(self.run_dir, (self.cfg.env.placement_low, self.cfg.env.placement_high))
        if report is None:
            return None
        table, picture = report
        if self._wandb is not None:
            import wandb

            from selfplay.training.alice_goals import COLUMNS

            self._wandb.log({"alice/goals_table": wandb.Table(columns=list(COLUMNS), data=table),
                             "alice/goals_picture": wandb.Image(str(picture))}, step=self.counters["env_steps"])
        return picture

    def record_video(self, max_steps: int = 2000) -> Path:
        """One whole game with the current policies: ``videos/game-<env steps>.mp4`` (and wandb)."""
        path = self.run_dir / "videos" / f"game-{self.counters['env_steps']:09d}.mp4"
        record_game(self.cfg, self.learners, self.cfg.seed + 10_000 + self.counters["updates"], path, max_steps)
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


def save_config(cfg_yaml: str, run_dir: Path) -> None:
    """The resolved config next to the checkpoints: a run can be reproduced from its folder."""
    write_atomic(Path(run_dir) / "config.yaml", cfg_yaml)
