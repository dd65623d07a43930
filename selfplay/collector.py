"""Steps N games through an SB3 ``VecEnv``, asking Alice's or Bob's policy for each game by its
phase, and turns the interleaved stream into per-agent batches and ABC demonstrations.

Each agent's turns in one game form one trajectory (Alice continues from her own last state,
Bob from his), so values bootstrap across goal boundaries (docs/method.md section 8). At a hand-over a
stream whose agent acts next goes in whole, bootstrapped from the observation it acts on; any other
stream's last transition waits for the agent's next observation, which is also how Alice's
reward for a goal, known only after Bob's turn, reaches the last step of her turn.

A game whose worker died (``info["game_lost"]``, :class:`selfplay.ray_vec_env.RayVecEnv`) is
dropped: nothing it produced since the last hand-over (transitions, finished trajectories,
demonstrations) reaches a batch. Every transition carries its game's episode number, so batches
say where they came from (``batch["episodes"]``).

A game that ends ends both agents' trajectories (bootstrap 0), except when a time limit cut it
(``info["TimeLimit.truncated"]``, as SB3's VecEnvs report a gymnasium truncation): then the actor's
trajectory is bootstrapped with its value of ``info["terminal_observation"]``, as SB3's PPO does.
The self-play game never truncates; single-agent tasks with a TimeLimit do
(benchmarks/ladder_pipeline.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from selfplay.events import AliceTurn, BobTurnEnded, Demonstration, GameOver, GoalFinished, GoalResult, SimulationError
from selfplay.game import ALICE, BOB, STRUCTURED_KEYS
from selfplay.learning.sac import continuous_actions, is_continuous
from selfplay.opponents import OpponentPool
from selfplay.policies import sample_actions

if TYPE_CHECKING:
    from selfplay.learning import Learner

AGENTS = (ALICE, BOB)


@dataclass
class Transition:
    observation: dict[str, np.ndarray]
    action: np.ndarray
    value: float
    log_prob: float
    reward: float = 0.0
    done: bool = False  # the agent's trajectory ends after this step
    episode: int = -1  # the game episode it belongs to (Collector.episodes numbers them)


@dataclass
class RolloutStats:
    """What one collection saw (for logging)."""

    steps: list[int] = field(default_factory=lambda: [0, 0])  # env steps by Alice, Bob
    # wall time by phase; "learning": gradient steps taken between the games' steps (see collect)
    seconds: dict[str, float] = field(default_factory=lambda: {"simulation": 0.0, "inference": 0.0, "bookkeeping": 0.0, "learning": 0.0})
    goals: list[GoalResult] = field(default_factory=list)
    games: int = 0
    demonstrations: int = 0
    demonstration_steps: int = 0
    hindsight_demonstrations: int = 0  # Bob's own failed turns among the demonstrations
    replayed_alice_turns: int = 0  # Alice's turns handed to an off-policy Bob's replay (bob.replay_alice)
    snapshot_games: int = 0
    sim_errors: int = 0
    lost_games: int = 0  # games dropped half-played because their worker died
    out_of_reach_games: int = 0  # games ended early: every object beyond the arm's reach (game.end_out_of_reach)


class Collector:
    """Runs the games and accumulates per-agent trajectories between updates.

    Args:
        venv: the games (``SelfPlayGame`` instances behind any SB3 ``VecEnv``).
        alice, bob: the learners (anything with a ``policy``); :meth:`take_batches` returns the
            demonstrations the games produced, and the trainer hands them to Bob.
        pool: past snapshots; a game that starts against a snapshot trains only the other side.
    """

    def __init__(self, venv: VecEnv, alice: Learner | None, bob: Learner, pool: OpponentPool | None = None, seed: int = 0) -> None:
        self.venv, self.learners = venv, (alice, bob)
        self.pool = pool
        self.n_games = venv.num_envs
        self.action_shape = venv.action_space.shape  # (6,) in the game; any MultiDiscrete works
        self._rng = np.random.default_rng(seed)
        self.streams: list[list[list[Transition]]] = [[[], []] for _ in range(self.n_games)]
        self._segments: list[list[tuple[list[Transition], float]]] = [[], []]
        self._pending_demos: list[tuple[int, Demonstration]] = []  # (episode, demonstration)
        # An off-policy Bob (continuous actions) learns from whole turns, not PPO streams.
        self.bob_continuous = is_continuous(bob.policy)
        self._bob_turns: list[list[tuple[dict, np.ndarray]]] = [[] for _ in range(self.n_games)]  # open turns
        self._finished_turns: list[tuple[int, list[dict], np.ndarray]] = []  # (episode, T + 1 observations, actions)
        self.episodes = list(range(self.n_games))  # episode number of each game's current game
        self._next_episode = self.n_games
        self.lost_episodes: list[int] = []  # episodes dropped because their worker died
        self.opponents: list[tuple] = [(None, None)] * self.n_games  # (past Alice, past Bob) policies or None
        self.obs = venv.reset()
        for game in range(self.n_games):
            self._choose_opponents(game)

    def _choose_opponents(self, game: int) -> None:
        self.opponents[game] = self.pool.draw(self._rng) if self.pool is not None else (None, None)

    # -- collection -----------------------------------------------------------------------------
    def collect(self, n_steps: int, while_stepping: Callable[[int], None] | None = None) -> RolloutStats:
        """Step every game until ``n_steps`` env steps (both agents together) have been taken.

        ``while_stepping(bob_steps)``, if given, runs after each step's actions are sent and before
        its results are awaited (``bob_steps``: how many of those actions are Bob's): work there
        overlaps the games' simulation when they run in other processes."""
        stats = RolloutStats()
        taken = 0
        clock = time.perf_counter
        seconds = stats.seconds
        while taken < n_steps:
            start = clock()
            actions = self._act(stats)
            acted = learned = clock()
            self.venv.step_async(actions)
            if while_stepping is not None:
                while_stepping(int((self._step_phases == BOB).sum()))
                learned = clock()
            obs, rewards, dones, infos = self.venv.step_wait()
            stepped = clock()
            taken += self.n_games
            for game in range(self.n_games):
                self._record(game, rewards[game], dones[game], infos[game], stats)
            self.obs = obs
            seconds["inference"] += acted - start
            seconds["learning"] += learned - acted
            seconds["simulation"] += stepped - learned  # waiting for the games (after the learning, if any)
            seconds["bookkeeping"] += clock() - stepped
        return stats

    def _observation(self, game: int) -> dict[str, np.ndarray]:
        return {k: v[game] for k, v in self.obs.items() if k != "phase"}

    def _act(self, stats: RolloutStats) -> np.ndarray:
        """Actions (N, *action shape) for every game, each from the policy whose turn it is."""
        phases = self.obs["phase"][:, 0].astype(int)
        actions = np.zeros((self.n_games, *self.action_shape), dtype=np.float64 if self.bob_continuous else np.int64)
        self._step_values = np.zeros(self.n_games)
        self._step_log_probs = np.zeros(self.n_games)
        groups: dict[int, tuple] = {}  # id(policy) -> (policy, games)
        for game, phase in enumerate(phases):
            policy = self.opponents[game][phase] or self.learners[phase].policy
            groups.setdefault(id(policy), (policy, []))[1].append(game)
        for policy, games in groups.values():
            batch = {k: self.obs[k][games] for k in STRUCTURED_KEYS}
            if is_continuous(policy):  # an off-policy Bob: no values or log-probabilities needed
                actions[games] = continuous_actions(policy, batch)
            else:
                actions[games], self._step_values[games], self._step_log_probs[games] = sample_actions(policy, batch)
        stats.steps[ALICE] += int((phases == ALICE).sum())
        stats.steps[BOB] += int((phases == BOB).sum())
        self._step_phases, self._step_actions = phases, actions
        return actions

    def _record(self, game: int, reward: float, done: bool, info: dict, stats: RolloutStats) -> None:
        if info.get("game_lost"):
            self._drop_game(game, stats)
            return
        actor = int(self._step_phases[game])
        streams = self.streams[game]
        learning = [self.opponents[game][a] is None for a in AGENTS]
        events = info.get("events", ())
        turn_end = next((e for e in events if isinstance(e, BobTurnEnded)), None)
        if actor == BOB and self.bob_continuous:
            if learning[BOB]:
                self._record_bob_turn(game, turn_end)
        elif learning[actor]:
            streams[actor].append(
                Transition(
                    observation=self._observation(game),  # what the actor saw
                    action=self._step_actions[game],
                    value=float(self._step_values[game]),
                    log_prob=float(self._step_log_probs[game]),
                    reward=float(reward),
                    episode=self.episodes[game],
                )
            )
        for event in events:
            if isinstance(event, GoalFinished):
                stats.goals.append(event.result)
                if event.alice_reward is not None and learning[ALICE] and streams[ALICE]:
                    streams[ALICE][-1].reward += event.alice_reward  # her turn's last step, held until now
            elif isinstance(event, Demonstration):
                self._pending_demos.append((self.episodes[game], event))
                if event.hindsight:  # Bob's own failed turn, relabelled with what he reached
                    stats.hindsight_demonstrations += 1
                else:
                    stats.demonstrations += 1
                    stats.demonstration_steps += len(event.actions)
            elif isinstance(event, AliceTurn):  # an off-policy Bob replays it as his own experience
                self._finished_turns.append((self.episodes[game], event.observations, event.actions))
                stats.replayed_alice_turns += 1
            elif isinstance(event, BobTurnEnded) and event.sits_out and streams[BOB]:
                streams[BOB][-1].done = True
                self._close_stream(game, BOB)
            elif isinstance(event, SimulationError):
                stats.sim_errors += 1
            elif isinstance(event, GameOver) and event.out_of_reach:
                stats.out_of_reach_games += 1
        if done:
            stats.games += 1
            stats.snapshot_games += any(s is not None for s in self.opponents[game])
            cut = info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None
            for agent in AGENTS:
                if not streams[agent]:
                    continue
                if cut and agent == actor:  # a time limit, not an end: bootstrap from the state it cut at
                    self._close_stream(game, agent, bootstrap=state_value(self.learners[actor].policy, info["terminal_observation"]))
                else:
                    streams[agent][-1].done = True
                    self._close_stream(game, agent)
            self._new_episode(game)

    def _record_bob_turn(self, game: int, turn_end: BobTurnEnded | None) -> None:
        """An off-policy Bob's step: kept with its turn; a finished turn waits for the hand-over."""
        observation = {k: self.obs[k][game] for k in STRUCTURED_KEYS}
        turn = self._bob_turns[game]
        turn.append((observation, self._step_actions[game].astype(np.float32)))
        if turn_end is not None:
            observations = [o for o, _ in turn] + [turn_end.last_observation]
            self._finished_turns.append((self.episodes[game], observations, np.stack([a for _, a in turn])))
            self._bob_turns[game] = []

    def take_turns(self) -> list[tuple[list[dict], np.ndarray]]:
        """An off-policy Bob's turns finished since the last call: (T + 1 observations, actions (T, 6))."""
        turns = [(observations, actions) for _, observations, actions in self._finished_turns]
        self._finished_turns = []
        return turns

    def _new_episode(self, game: int) -> None:
        self._bob_turns[game] = []
        self.episodes[game] = self._next_episode
        self._next_episode += 1
        self._choose_opponents(game)

    def _drop_game(self, game: int, stats: RolloutStats) -> None:
        """Forget a game lost half-played: its open trajectories and whatever it produced since
        the last hand-over. The game slot goes on with the fresh game the env reset it to."""
        lost = self.episodes[game]
        self.lost_episodes.append(lost)
        self.streams[game] = [[], []]
        self._segments = [[(t, b) for t, b in segments if t[0].episode != lost] for segments in self._segments]
        self._pending_demos = [(episode, demo) for episode, demo in self._pending_demos if episode != lost]
        self._finished_turns = [turn for turn in self._finished_turns if turn[0] != lost]
        self._bob_turns[game] = []
        stats.lost_games += 1
        self._new_episode(game)

    def _close_stream(self, game: int, agent: int, bootstrap: float = 0.0) -> None:
        """A finished trajectory: all of it goes to the next update, with ``bootstrap`` as the value
        after its last step (0 for an ended one, whose last transition says ``done``)."""
        stream = self.streams[game][agent]
        if stream:
            self._segments[agent].append((stream, bootstrap))
        self.streams[game][agent] = []

    # -- hand-over to the learners --------------------------------------------------------------
    def take_batches(self, gamma: tuple[float, float], gae_lambda: tuple[float, float]) -> tuple[list[dict | None], dict | None]:
        """Per-agent batches with GAE advantages (None if empty) and the demonstrations.
        ``gamma``/``gae_lambda``: (Alice's, Bob's).

        An open trajectory whose agent acts next in its game goes in whole, bootstrapped with the
        value of the observation it acts on next (as SB3's PPO does at a rollout's end). Any other
        open trajectory (Alice's while Bob plays: her last reward is not known yet) gives all but
        its last transition, bootstrapped with that one's value; the last stays for the next update.
        """
        phases = self.obs["phase"][:, 0].astype(int)
        for agent in AGENTS:
            acting = [g for g in range(self.n_games) if phases[g] == agent and self.streams[g][agent]]
            if acting:  # all learning streams: a game against a snapshot records none for it
                values = state_values(self.learners[agent].policy, {k: self.obs[k][acting] for k in STRUCTURED_KEYS})
                for game, value in zip(acting, values):
                    self._segments[agent].append((self.streams[game][agent], float(value)))
                    self.streams[game][agent] = []
        for game in range(self.n_games):
            for agent in AGENTS:
                stream = self.streams[game][agent]
                if len(stream) > 1:
                    self._segments[agent].append((stream[:-1], stream[-1].value))
                    self.streams[game][agent] = stream[-1:]
        batches = [self._batch(self._segments[a], gamma[a], gae_lambda[a]) for a in AGENTS]
        self._segments = [[], []]
        demos = self._pending_demos
        self._pending_demos = []
        return batches, _stack_demos(demos)

    @staticmethod
    def _batch(segments: list[tuple[list[Transition], float]], gamma: float, gae_lambda: float) -> dict | None:
        if not segments:
            return None
        advantages, returns = [], []
        for transitions, bootstrap in segments:
            adv = gae(
                np.array([t.reward for t in transitions]),
                np.array([t.value for t in transitions]),
                np.array([t.done for t in transitions]),
                bootstrap,
                gamma,
                gae_lambda,
            )
            advantages.append(adv)
            returns.append(adv + np.array([t.value for t in transitions]))
        flat = [t for transitions, _ in segments for t in transitions]
        keys = flat[0].observation.keys()
        return {
            "observations": {k: np.stack([t.observation[k] for t in flat]) for k in keys},
            "actions": np.stack([t.action for t in flat]),
            "values": np.array([t.value for t in flat], dtype=np.float32),
            "log_probs": np.array([t.log_prob for t in flat], dtype=np.float32),
            "advantages": np.concatenate(advantages).astype(np.float32),
            "returns": np.concatenate(returns).astype(np.float32),
            "rewards": np.array([t.reward for t in flat], dtype=np.float32),
            "episodes": np.array([t.episode for t in flat]),
        }


def state_values(policy, observations: dict[str, np.ndarray]) -> np.ndarray:
    """The policy's values (B,) of a batch of observations (dict of (B, ...) arrays), by
    ``sample_actions`` itself (greedy, so no random numbers are drawn)."""
    return sample_actions(policy, observations, deterministic=True)[1]


def state_value(policy, observation: dict[str, np.ndarray]) -> float:
    """:func:`state_values` of one observation (unbatched arrays)."""
    return float(state_values(policy, {k: np.asarray(observation[k])[None] for k in STRUCTURED_KEYS})[0])


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, bootstrap: float, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates (T,) of one trajectory segment.

    ``dones[t]``: the trajectory ends after step t (no bootstrap past it); ``bootstrap``: the
    value of the state after the last step when the segment was cut, not ended.
    """
    advantages = np.zeros(len(rewards))
    next_value, next_advantage = bootstrap, 0.0
    for t in reversed(range(len(rewards))):
        not_done = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        next_advantage = delta + gamma * lam * not_done * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages


def _stack_demos(demos: list[tuple[int, Demonstration]]) -> dict | None:
    """(episode, demonstration) pairs -> one set: ``observations``, ``actions``, ``episodes`` (per step)."""
    if not demos:
        return None
    keys = demos[0][1].observations.keys()
    return {
        "observations": {k: np.concatenate([d.observations[k] for _, d in demos]) for k in keys},
        "actions": np.concatenate([d.actions for _, d in demos]),
        "episodes": np.concatenate([np.full(len(d.actions), episode) for episode, d in demos]),
    }
