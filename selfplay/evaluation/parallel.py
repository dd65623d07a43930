"""Zero-shot evaluation with the trials of a task in parallel games (issue #11, "Evaluation at
the speed this needs").

:class:`ParallelEvaluator` runs ``workers`` processes, each stepping up to ``games_per_worker``
games (:class:`tabletop_env.TabletopEnv`); the main process evaluates the policy once per step
on the batch of all live games and sends the actions back through pipes (as SB3's
``SubprocVecEnv`` does). A finished trial's game starts the next trial.

Same numbers as :func:`selfplay.evaluation.protocol.evaluate_task` for the same seed: every trial keeps its
own seeds (layout ``seed * 100_003 + trial``, goals ``default_rng([seed, trial])``), its own game
and evaluate_task's rules (goals in a row until the first failure), and the results are summed
in trial order, so they do not depend on how many workers or games run. A sampling policy draws
its noise from a generator of its trial (``default_rng([seed, trial, POLICY_STREAM])``), so its
results do not depend on the batching either (but differ from the sequential path's, which
draws from torch's global generator). Batches are padded to :data:`MIN_ROWS` rows: torch's CPU
matmul rounds rows of 1-3-row batches differently from larger ones (a continuous action then
differs in the last bit), and from 4 rows on a row's result does not depend on the others.

Policies: :class:`BatchBob` (Bob's SB3 PPO or SAC policy; a :class:`~selfplay.evaluation.policy.BobPolicy`
is converted), :class:`RandomPolicy`, or anything with ``act_batch(obs, rngs)``; those run in
the main process. Any other ``act(obs) -> action`` (scripted players, with ``bind(env)`` if they
need their game) is copied into the workers and acts there, one copy per game.

Workers die with the main process (:func:`selfplay.processes.follow_parent`) and are ended by
:meth:`ParallelEvaluator.close` (also on an exception or Ctrl-C in the main process).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np
import torch as th

from selfplay.evaluation.policy import BobPolicy
from selfplay.evaluation.protocol import (MAX_GOALS, TaskResult, TaskSpec, TrialPlayer, TrialRecord, evaluate_task, make_eval_env,
                                         summarize)
from selfplay.learning.sac import continuous_actions
from tabletop_env.env import STRUCTURED_KEYS
from tabletop_env import make_task

#: Smallest batch the network sees (rows are padded): see the module's docstring.
MIN_ROWS = 8
#: Third seed word of a trial's policy generator (the goal generator is ``[seed, trial]``).
POLICY_STREAM = 1
#: Games per worker process by default: enough that stepping them outlasts a batched inference.
GAMES_PER_WORKER = 8


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- policies on a batch of games -----------------------------------------------------------------
class BatchPolicy(Protocol):
    """Acts on a batch of games in the main process."""

    def act_batch(self, obs: dict[str, np.ndarray], rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Actions (B, 6) in [-1, 1] for observations (dict of (B, ...) arrays); ``rngs[i]`` is
        the generator of row i's trial, for any random draw (one per row and step)."""
        ...


class BatchBob(BobPolicy):
    """Bob's SB3 policy (discrete PPO or continuous SAC) on a batch of games; the same checks
    as :class:`~selfplay.evaluation.policy.BobPolicy`. Greedy actions are the sequential path's; sampled
    ones draw their noise (Gumbel for PPO's categoricals, Gaussian for SAC) from each row's
    trial generator."""

    def act_batch(self, obs: dict[str, np.ndarray], rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Actions (B, 6) in [-1, 1] (:meth:`BatchPolicy.act_batch`)."""
        rows = len(rngs)
        batch = {k: _pad_rows(obs[k], MIN_ROWS) for k in STRUCTURED_KEYS}
        policy = self.model.policy
        if self.continuous:
            if self.deterministic:
                return continuous_actions(policy, batch, deterministic=True)[:rows]
            if policy.actor.use_sde:
                raise ValueError("sampling a gSDE actor is not supported; evaluate with deterministic=true")
            return sampled_sac_actions(policy.actor, _tensors(batch), rngs)
        with th.no_grad():
            features = policy.pi_features_extractor(_tensors(batch))
            logits = policy.action_net(policy.mlp_extractor.forward_actor(features))[:rows]
            log_p = logits.view(rows, 6, -1)
            log_p = log_p - log_p.logsumexp(dim=-1, keepdim=True)  # as selfplay.policies.sample_actions
            if not self.deterministic:
                log_p = log_p + th.as_tensor(np.stack([rng.gumbel(size=log_p.shape[1:]) for rng in rngs]), dtype=log_p.dtype)
            return self.values[log_p.argmax(dim=-1).numpy()]


def sampled_sac_actions(actor, observations, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Actions (len(rngs), A) a SAC ``actor`` samples for a batch of observation tensors (rows
    beyond ``len(rngs)`` are padding), each row's Gaussian noise from its trial generator."""
    with th.no_grad():
        mean, log_std, _ = actor.get_action_dist_params(observations)
        rows = len(rngs)
        noise = th.as_tensor(np.stack([rng.standard_normal(mean.shape[1]) for rng in rngs]), dtype=mean.dtype)
        return th.tanh(mean[:rows] + log_std[:rows].exp() * noise).numpy()


class RandomPolicy:
    """Uniform random actions in [-1, 1], from each row's trial generator (a baseline)."""

    def act_batch(self, obs: dict[str, np.ndarray], rngs: Sequence[np.random.Generator]) -> np.ndarray:
        return np.stack([rng.uniform(-1.0, 1.0, 6) for rng in rngs]) if rngs else np.zeros((0, 6))


def batch_policy(act: Any) -> BatchPolicy | None:
    """The main-process policy for ``act``: a :class:`BobPolicy` becomes a :class:`BatchBob`,
    anything with ``act_batch`` is used as it is; None for a per-game ``act(obs)`` (it runs in
    the workers)."""
    if hasattr(act, "act_batch"):
        return act
    if isinstance(act, BobPolicy):
        return BatchBob(act.model, deterministic=act.deterministic)
    return None


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` (B, ...) with its first row repeated up to ``rows`` rows (at least B)."""
    return array if len(array) >= rows else np.concatenate([array, np.repeat(array[:1], rows - len(array), axis=0)])


def _tensors(batch: dict[str, np.ndarray]) -> dict[str, th.Tensor]:
    return {k: th.as_tensor(v, dtype=th.float32) for k, v in batch.items()}


# -- the workers -----------------------------------------------------------------------------------
def _worker(conn: Connection, parent_pid: int) -> None:
    """A worker process: plays the games (slots) of the current task the main process starts
    trials in, on its commands (``task``, ``step``, ``close``); replies ``("ok", ...)`` or
    ``("error", traceback)``."""
    from selfplay.processes import follow_parent

    follow_parent(parent_pid)  # SIGKILL when the main process ends; Ctrl-C is the main process's
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # but SIGTERM ends us (multiprocessing's exit handler sends it)
    task, spec, slots, live = None, None, {}, []  # slots: slot -> TrialPlayer; live: slots playing a trial
    try:
        while True:
            command, *args = conn.recv()
            if command == "close":
                break
            try:
                if command == "task":
                    for game in slots.values():
                        game.close()
                    spec, slots, live = args[0], {}, []
                    task = make_task(spec.task_id)
                    conn.send(("ok", None))
                elif command == "step":
                    actions, starts = args
                    finished = []
                    for i, slot in enumerate(live):
                        record = slots[slot].step(None if actions is None else actions[i])
                        if record is not None:
                            finished.append(record)
                    for slot, trial in starts:
                        if slot not in slots:
                            slots[slot] = TrialPlayer(task, spec)
                        slots[slot].start(trial)
                    live = sorted(s for s in slots if slots[s].record is not None)
                    obs = None
                    if live and spec.local_act is None:
                        obs = {k: np.stack([slots[s].obs[k] for s in live]) for k in slots[live[0]].obs}
                    conn.send(("ok", (live, obs, finished)))
            except Exception:  # the main process raises it with this traceback
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        for game in slots.values():
            game.close()


class WorkerError(RuntimeError):
    """A game worker failed; the message holds its traceback."""


# -- the engine -----------------------------------------------------------------------------------
class ParallelEvaluator:
    """Evaluates tasks with their trials spread over ``workers`` processes x ``games_per_worker``
    games, the policy batched over all live games in this process. ``workers=0``: the sequential
    :func:`~selfplay.evaluation.protocol.evaluate_task` (one trial at a time, batch-1 inference).

    Use as a context manager (or call :meth:`close`): the worker processes start with the first
    task and serve every task until closed; an error in a task ends them (the next task starts
    new ones).
    """

    def __init__(self, workers: int | None = None, games_per_worker: int = GAMES_PER_WORKER) -> None:
        self.workers = default_workers() if workers is None else workers
        if self.workers < 0 or games_per_worker < 1:
            raise ValueError(f"need workers >= 0 and games_per_worker >= 1, got {workers}, {games_per_worker}")
        self.games_per_worker = games_per_worker
        self._processes: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []

    def __enter__(self) -> "ParallelEvaluator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._processes if p.is_alive()]

    def _start(self) -> None:
        context = mp.get_context("fork")  # the workers need nothing of torch; fork starts in ms
        for _ in range(self.workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, os.getpid()), daemon=True,
                                      name="eval-worker")
            process.start()
            child.close()
            self._processes.append(process)
            self._conns.append(parent)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers: ask them to exit, then kill whichever has not within ``timeout_s``."""
        for conn in self._conns:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        for process in self._processes:
            process.join(timeout_s)
            if process.is_alive():  # busy, or blocked on a reply nobody reads
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()
        self._processes, self._conns = [], []

    def _call(self, index: int, *message: Any) -> None:
        self._conns[index].send(message)

    def _reply(self, index: int) -> Any:
        try:
            status, payload = self._conns[index].recv()
        except EOFError:
            raise WorkerError(f"game worker {index} ended unexpectedly") from None
        if status == "error":
            raise WorkerError(f"game worker {index} failed:\n{payload}")
        return payload

    def evaluate_task(
        self,
        act: Any,
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
        """:func:`~selfplay.evaluation.protocol.evaluate_task`'s contract and numbers, trials in parallel.

        ``act``: a batch policy (``act_batch``), a :class:`~selfplay.evaluation.policy.BobPolicy`, or a
        picklable per-game ``act(obs) -> action (6,)`` (run in the workers, bound to its game
        when it has ``bind``). ``progress`` is called once per finished trial. Returns the
        result and, when ``record``, the frames of trial 0.
        """
        if self.workers == 0:
            return evaluate_task(act, task_id, trials, seed=seed, max_goals=max_goals, check=check, record=record,
                                 progress=progress, max_objects=max_objects, env_kwargs=env_kwargs)
        policy = batch_policy(act)
        task = make_task(task_id)
        if check is not None:  # against a game built here: the workers' are alike
            env = make_eval_env(task_id, task, max_objects, False, env_kwargs)
            try:
                check(env, task_id)
            finally:
                env.close()
        spec = TaskSpec(task_id, seed, max_goals, max_objects, env_kwargs, record, None if policy is not None else act)
        if not self._processes:
            self._start()
        try:
            records = self._play(spec, policy, trials, progress)
        except BaseException:  # a worker's error, the policy's, Ctrl-C: the workers' state is unknown
            self.close()
            raise
        return summarize(task_id, [records[t] for t in range(trials)])

    def _play(self, spec: TaskSpec, policy: BatchPolicy | None, trials: int,
              progress: Callable[[], None] | None) -> dict[int, TrialRecord]:
        """Play every trial; their records by trial."""
        workers = range(len(self._conns))
        for w in workers:
            self._call(w, "task", spec)
        for w in workers:
            self._reply(w)
        # free slots, interleaved over the workers so that a few trials still spread over them all
        free = [list(range(self.games_per_worker)) for _ in workers]
        pending = iter(range(trials))
        trial_of: list[dict[int, int]] = [{} for _ in workers]  # slot -> trial, per worker
        live: list[list[int]] = [[] for _ in workers]  # slots in the order of the workers' observations
        actions: list[np.ndarray | None] = [None for _ in workers]
        rngs: dict[int, np.random.Generator] = {}
        records: dict[int, TrialRecord] = {}
        while True:
            starts: list[list[tuple[int, int]]] = [[] for _ in workers]
            for slot in range(self.games_per_worker):
                for w in workers:
                    if slot in free[w] and (trial := next(pending, None)) is not None:
                        starts[w].append((slot, trial))
                        free[w].remove(slot)
                        trial_of[w][slot] = trial
                        rngs[trial] = np.random.default_rng([spec.seed, trial, POLICY_STREAM])
            busy = [w for w in workers if live[w] or starts[w]]
            if not busy:
                return records
            for w in busy:
                self._call(w, "step", actions[w], starts[w])
            observations = []
            for w in busy:
                live[w], obs, finished = self._reply(w)
                for record in finished:
                    records[record.trial] = record
                    del rngs[record.trial]
                    if progress is not None:
                        progress()
                free[w] += [slot for slot in trial_of[w] if slot not in live[w] and slot not in free[w]]
                if obs is not None:
                    observations.append((w, obs))
            if policy is not None and observations:
                batch = {k: np.concatenate([obs[k] for _, obs in observations]) for k in observations[0][1]}
                chosen = policy.act_batch(batch, [rngs[trial_of[w][s]] for w, _ in observations for s in live[w]])
                offsets = np.cumsum([0] + [len(live[w]) for w, _ in observations])
                for (w, _), a, b in zip(observations, offsets[:-1], offsets[1:]):
                    actions[w] = chosen[a:b]
