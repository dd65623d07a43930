"""The multi-goal self-play game (docs/method.md sections 2-3) as one gymnasium env.

One simulator per game; Alice's and Bob's worlds are two :class:`SceneState` snapshots that the
game switches between exactly. The observation carries ``phase`` (0: Alice acts, 1: Bob acts), so
SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` can run many games at once and a collector can ask the
right policy for each.

Rewards go to the agent that acted. Alice's reward for a goal depends on Bob's outcome, which is
known only after his turn: it is reported then in a :class:`~selfplay.events.GoalFinished` event,
to be paid on the last step of her turn for that goal (the collector holds that transition until
it arrives). Everything else the collector needs comes as typed events too (``info["events"]``,
:mod:`selfplay.events`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from selfplay.events import AliceTurn, BobTurnEnded, Demonstration, GameOver, GoalFinished, GoalProposed, GoalResult, SimulationError
from selfplay.teachers import make_teacher
from tabletop_env import TabletopEnv
from tabletop_env.env import STRUCTURED_KEYS, object_rotation_modes  # STRUCTURED_KEYS: what the agents' networks read
from tabletop_env.objects import blocks
from tabletop_env.state import objects_at_goal, rotation_error
from tabletop_env.wrappers import DEFAULT_BINS, bin_values, discrete_action_space, nearest_bins

ALICE, BOB = 0, 1
ALICE_STARTS = ("continue", "home", "near_object")  # GameConfig.alice_start
MIN_ALICE_START_DISTANCE = 0.05  # m: GameConfig.alice_start_distance's floor (a block's half-diagonal + the fingers)


#: Bob's hindsight cloning rules (``GameConfig.bob_hindsight``).
HINDSIGHT_RULES = ("none", "final", "windows")
HINDSIGHT_MIN_MOVE = 0.01  # m an object must move within a window for bob_hindsight=windows


@dataclass
class GameConfig:
    """Rules of one game (docs/method.md sections 2-3). No defaults here: a run's rules come from
    its config (``selfplay/conf/game/``, ``teacher/``) through :func:`selfplay.vec_env.game_config`."""

    alice_steps: int  # T: Alice acts exactly this many steps per goal
    max_goals: int  # goals per episode
    bob_steps_per_object: int  # Bob's timeout = this x number of objects
    success_hold_steps: int  # steps all objects must stay at the goal (our choice)
    bob_object_reward: float  # per object entering (+) / leaving (-) its goal
    bob_success_reward: float  # when all objects are at the goal
    alice_valid_reward: float  # a valid goal
    alice_bob_failed_reward: float  # Bob failed it
    alice_outside_penalty: float  # an object left outside the placement area
    # The time-based alternative the paper mentions: a goal Bob solves still pays Alice
    # ``alice_bob_failed_reward`` x the share of his turn's steps he needed, so that goals he
    # solves slowly pay more than goals he solves at once (failed goals pay it whole, as before).
    alice_paid_for_bob_time: bool
    teacher: str  # where the goals come from (selfplay.teachers): "selfplay" (Alice proposes), "uniform", ...
    uniform_tasks: tuple[str, ...]  # goal mix for "uniform"
    # Uniform push goals this far (m, min and max) from each block's current position; None: the
    # push task's goals anywhere in the placement area. For the learning ladder's near goals.
    goal_distance: tuple[float, float] | None
    # Where Alice's arm starts her turns, objects always where she left them: "continue" (her
    # last state, the paper), "home" (later turns: the arm back at its home pose) or
    # "near_object" (every turn: the tool at home height, ``alice_start_distance`` (m, min and max;
    # 8-12 cm by default) from a random object's centre, on a random side, within the arm's reach
    # and no closer to another object; home when no such spot is free). With
    # "near_object" the first turn's arm move is part of the initial state, so Bob's first goal
    # starts from the very state Alice's turn started from (the paper's shared s0).
    alice_start: str
    alice_start_distance: tuple[float, float]
    # The game ends after a goal that leaves every object beyond the arm's reach (its centre
    # outside the tool's x/y workspace): no later turn could move one. Off: play on (the paper),
    # and the next goal is invalid ("unmoved").
    end_out_of_reach: bool
    position_only: bool  # success and "moved" by position alone (rotation ignored)
    # Hindsight cloning: a turn Bob failed but in which he moved an object becomes a
    # demonstration too, relabelled with the poses he reached ("final"); or each window of
    # ``hindsight_window`` steps of any of his turns in which an object moved >= 1 cm becomes one,
    # relabelled with the poses at the window's end ("windows"); "none": off.
    bob_hindsight: str
    hindsight_window: int  # steps per window of bob_hindsight=windows
    # Bob's actions: "discrete" (bin indices, like Alice's) or "continuous" (6 floats in [-1, 1],
    # for an off-policy Bob, selfplay/learning/sac.py); each turn's end then reports its last
    # observation (BobTurnEnded.last_observation) for his replay buffer.
    bob_actions: str
    # What an action does in the simulator (ladder levers, both off by default): the tool moves
    # translation_scale x the action's x/y/z (finer steps for pushing), and with
    # bob_fingers_closed Bob's finger command is ignored and his fingers stay closed. Policies,
    # demonstrations and replay keep the actions as the policies chose them.
    translation_scale: float
    bob_fingers_closed: bool
    # Every valid turn of Alice's is also sent whole (AliceTurn), for an off-policy Bob who
    # replays her turns as his own experience (bob.replay_alice).
    alice_turns_for_replay: bool

    def alice_reward(self, result: GoalResult) -> float:
        """Alice's reward for one goal (docs/method.md section 3's table): 0 for an invalid goal,
        else ``alice_valid_reward``, + ``alice_bob_failed_reward`` unless Bob solved it (with
        ``alice_paid_for_bob_time``: x his share of the turn's steps if he solved it), +
        ``alice_outside_penalty`` with an object outside the placement area."""
        if not result.valid:
            return 0.0
        if not result.bob_success:
            failed_pay_share = 1.0
        elif self.alice_paid_for_bob_time:
            failed_pay_share = result.bob_steps / result.bob_timeout
        else:
            failed_pay_share = 0.0
        reward = self.alice_valid_reward + failed_pay_share * self.alice_bob_failed_reward
        return reward + (self.alice_outside_penalty if result.outside else 0.0)


class SelfPlayGame(gym.Env):
    """Alice proposes, Bob solves, on ``n_objects`` blocks; actions are 6 x ``bins`` discrete.

    Args:
        n_objects: blocks on the table (1-8).
        config: the rules (:class:`GameConfig`).
        env_kwargs: extra :class:`TabletopEnv` arguments (placement area, physics, ...).
        bins: action bins per dimension (11 in the paper).
        max_objects: padding of the object arrays; Bob's policy then fits every holdout task.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        n_objects: int,
        config: GameConfig,
        env_kwargs: dict | None = None,
        bins: int = DEFAULT_BINS,
        max_objects: int = 8,
        render_mode: str | None = None,
    ) -> None:
        self.config = config
        c = self.config
        if c.alice_steps < 1 or c.max_goals < 1 or c.bob_steps_per_object < 1:
            raise ValueError(f"alice_steps, max_goals and bob_steps_per_object must be positive: {c}")
        if c.alice_start not in ALICE_STARTS:
            raise ValueError(f"alice_start must be one of {ALICE_STARTS}, got {c.alice_start!r}")
        near, far = c.alice_start_distance
        if not MIN_ALICE_START_DISTANCE <= near <= far:
            raise ValueError(f"alice_start_distance must be [min, max] m with {MIN_ALICE_START_DISTANCE} <= min <= max, "
                             f"got {c.alice_start_distance}")
        if c.bob_hindsight not in HINDSIGHT_RULES:
            raise ValueError(f"bob_hindsight must be one of {HINDSIGHT_RULES}, got {c.bob_hindsight!r}")
        if c.bob_actions not in ("discrete", "continuous"):
            raise ValueError(f"bob_actions must be 'discrete' or 'continuous', got {c.bob_actions!r}")
        if not 0.0 < c.translation_scale <= 1.0:
            raise ValueError(f"translation_scale must be in (0, 1], got {c.translation_scale}")
        if c.hindsight_window < 1:
            raise ValueError(f"hindsight_window must be >= 1, got {c.hindsight_window}")
        if c.goal_distance is not None and not 0 <= c.goal_distance[0] <= c.goal_distance[1]:
            raise ValueError(f"goal_distance must be (min, max) with 0 <= min <= max, got {c.goal_distance}")
        self.sim = TabletopEnv(
            objects=blocks(n_objects),
            max_objects=max_objects,
            render_mode=render_mode,
            terminate_on_success=False,
            max_episode_steps=2**62,
            ignore_rotation=c.position_only,
            **(env_kwargs or {}),
        )
        self.render_mode = render_mode
        self.n_objects = n_objects
        self.bob_timeout = c.bob_steps_per_object * n_objects
        self.action_values = bin_values(bins)
        self.action_space = discrete_action_space(bins)
        self.observation_space = gym.spaces.Dict(
            {**self.sim.observation_space.spaces, "phase": gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)}
        )
        self.teacher = make_teacher(c, n_objects)
        self._rng = np.random.default_rng()

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, _ = self.sim.reset(seed=None if seed is None else int(self._rng.integers(2**31)))
        if self.teacher.alice_proposes and self.config.alice_start == "near_object":
            self._move_arm_for_alice()  # part of s0: Alice and Bob start their first goal alike
        self._bob_state = self.sim.get_state()
        self._alice_state = self._bob_state
        self._goal_index = 0
        self._bob_out = False
        self._goal_outside = False
        self._results: list[GoalResult] = []
        if not self.teacher.alice_proposes:
            return self._start_bob_turn(self.teacher.sample_goal(self.sim, self._rng)), {}
        return self._start_alice_turn(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        if self.phase == BOB and self.config.bob_actions == "continuous":
            return self._bob_step(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))
        values = self.action_values[np.asarray(action, dtype=np.int64)]
        if self.phase == ALICE:
            return self._alice_step(values)
        return self._bob_step(values)

    def set_position_only(self, on: bool) -> None:
        """Success (and Alice's "moved") by position alone from now on, or by the full rule
        (``game.position_first_steps``: the trainer switches every game at once)."""
        self.config = dataclasses.replace(self.config, position_only=on)
        self.sim.set_ignore_rotation(on)

    def set_rotation_tolerance(self, tolerance: float) -> None:
        """Bob's success rule from now on: orientation within ``tolerance`` rad of the goal's
        (``game.rotation_tolerance_from``'s curriculum; the trainer sets every game at once).
        Alice's "moved" keeps the holdouts' 0.2 rad."""
        self.sim.set_rotation_tolerance(tolerance)

    def render(self) -> np.ndarray | None:
        return self.sim.render()

    def close(self) -> None:
        self.sim.close()

    # -- Alice --------------------------------------------------------------------------------
    def _start_alice_turn(self) -> dict:
        self.phase = ALICE
        self.sim.set_state(self._alice_state)
        rule = self.config.alice_start
        if self._goal_index > 0 and rule in ("near_object", "home"):  # goal 0: s0 has it (reset)
            self._move_arm_for_alice()
        self._turn_start_poses = self.sim.object_poses()
        self._alice_t = 0
        self._alice_trace: list[tuple[dict, np.ndarray]] = []
        self._last_obs = self._observe(self.sim.refresh())
        return self._last_obs

    def _move_arm_for_alice(self, tries: int = 20) -> None:
        """``alice_start`` = home / near_object: teleport the arm, leave the objects."""
        env = self.sim
        if self.config.alice_start == "near_object":
            poses, height = env.object_poses(), env.home_tool_position[2]
            near, far = self.config.alice_start_distance
            for _ in range(tries):
                centre = poses[self._rng.integers(self.n_objects), :2]
                angle, distance = self._rng.uniform(-np.pi, np.pi), self._rng.uniform(near, far)
                xy = centre + distance * np.array([np.cos(angle), np.sin(angle)])
                clear = np.linalg.norm(poses[:, :2] - xy, axis=1).min() >= near and np.all(poses[:, 2] < 0.1)
                if clear and env.robot.control.within_workspace_xy(xy, margin=0.03):
                    env.robot.reset(env.robot.solve_ik((*xy, height)))
                    env.refresh()
                    return
        env.reset_robot()  # home (jittered), also when no spot near an object is free
        env.refresh()

    def _applied(self, values: np.ndarray, agent: int) -> np.ndarray:
        """The simulator action (6,) for an agent's action values (``translation_scale``,
        ``bob_fingers_closed``)."""
        c = self.config
        if c.translation_scale == 1.0 and not (agent == BOB and c.bob_fingers_closed):
            return values
        applied = np.array(values, dtype=np.float64)
        applied[:3] *= c.translation_scale
        if agent == BOB and c.bob_fingers_closed:
            applied[5] = -1.0
        return applied

    def _alice_step(self, values: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        c = self.config
        self._alice_trace.append((self._last_obs, values))
        obs, _, _, _, sim_info = self.sim.step(self._applied(values, ALICE))
        self._alice_t += 1
        info: dict[str, Any] = {"events": []}
        if sim_info["sim_error"] or sim_info["off_table"].any():
            # An object off the table (or a broken simulation) makes the goal invalid: game over.
            return self._end_invalid(info, sim_info, "sim_error" if sim_info["sim_error"] else "off_table")
        if self._alice_t < c.alice_steps:
            self._last_obs = self._observe(obs)
            return self._last_obs, 0.0, False, False, info
        # End of Alice's turn: her final object state is the goal.
        goal = self.sim.object_poses()
        moved = ~objects_at_goal(goal, self._turn_start_poses, self.sim.rotation_modes)
        if not moved.any():
            return self._end_invalid(info, sim_info, "unmoved")
        if self.sim.goal_problem(goal):  # no reachable goal (objects overlap)
            return self._end_invalid(info, sim_info, "unreachable")
        result = self._describe_goal(goal, moved)
        self._alice_state = self.sim.get_state()
        self._goal = goal
        info["events"].append(GoalProposed(goal.copy()))
        if c.alice_turns_for_replay:
            info["events"].append(self._alice_turn(self._observe(obs), goal))
        if self._bob_out:  # Bob sits out: the goal counts as failed and becomes a demonstration
            info["events"] += [self._demonstration(self._alice_trace, self._goal), GoalFinished(result)]
            return self._next_goal(info, result, c.alice_reward(result))  # paid at once
        self._pending_result = result
        return self._start_bob_turn(goal), 0.0, False, False, info

    def _end_invalid(self, info: dict, sim_info: dict, reason: str) -> tuple[dict, float, bool, bool, dict]:
        """Alice's goal ``reason`` (one of :data:`INVALID_REASONS`) is invalid: the game is over."""
        result = GoalResult(index=self._goal_index, valid=False, invalid_reason=reason)
        info["events"].append(GoalFinished(result))
        if sim_info["sim_error"]:
            info["events"].append(SimulationError(sim_info["sim_error"]))
        self._results.append(result)
        info["events"].append(GameOver(self._results))
        return self._observe(self.sim.refresh() if not sim_info["sim_error"] else self._last_obs), 0.0, True, False, info

    def _describe_goal(self, goal: np.ndarray, moved: np.ndarray) -> GoalResult:
        low, high = self.sim.placement_low, self.sim.placement_high
        inside = ((goal[:, :2] >= low) & (goal[:, :2] <= high)).all(axis=1)
        resting_height = self.sim.rest_heights
        raised = goal[:, 2] > resting_height + 0.01
        xy = goal[:, :2]
        near = np.linalg.norm(xy[:, None] - xy[None], axis=-1) < 0.04
        above = goal[:, 2][:, None] > goal[:, 2][None] + 0.03
        stacked = (near & above).any(axis=1) & raised
        return GoalResult(
            index=self._goal_index,
            valid=True,
            outside=bool((~inside).any()),
            moved=int(moved.sum()),
            lifted=int((raised & ~stacked).sum()),
            stacked=int(stacked.sum()),
            distance=float(np.linalg.norm(goal[:, :3] - self._turn_start_poses[:, :3], axis=1).max()),
            # by each object's symmetry, whatever the success rule (position alone ignores rotation)
            turns=rotation_error(self._turn_start_poses[:, 3:7], goal[:, 3:7], object_rotation_modes(self.sim.object_specs)),
            start=self._turn_start_poses.copy(),
            goal=goal.copy(),
        )

    def _alice_turn(self, last_observation: dict, goal: np.ndarray) -> AliceTurn:
        """Alice's turn that just ended (observation ``last_observation`` after her last step) as
        an :class:`AliceTurn` towards ``goal`` (n, 7)."""
        trace = [o for o, _ in self._alice_trace] + [last_observation]
        stacked = _relabelled(trace, goal, self.sim.goal_rotation_modes)
        observations = [{k: stacked[k][t] for k in STRUCTURED_KEYS} for t in range(len(trace))]
        return AliceTurn(observations, np.stack([a for _, a in self._alice_trace]).astype(np.float32))

    def _demonstration(self, trace: list[tuple[dict, np.ndarray]], goal: np.ndarray, hindsight: bool = False) -> Demonstration:
        """A turn's (observation, action values) trace as Bob would have seen it with ``goal``
        (n, 7): Alice's turn for ABC (docs/method.md 4), or Bob's own for hindsight cloning."""
        actions = np.stack([a for _, a in trace])
        return Demonstration(_relabelled([o for o, _ in trace], goal, self.sim.goal_rotation_modes), nearest_bins(actions, len(self.action_values)), hindsight)

    # -- Bob ----------------------------------------------------------------------------------
    def _start_bob_turn(self, goal: np.ndarray) -> dict:
        self.phase = BOB
        self.sim.set_state(self._bob_state)
        self.sim.set_goal(goal)
        self._goal = goal
        self._bob_t = 0
        self._hold = 0
        self._at_goal = self.sim.objects_at_goal()
        self._bob_trace: list[tuple[dict, np.ndarray]] = []  # filled only for hindsight cloning
        self._bob_turn_start = self.sim.object_poses() if self.config.bob_hindsight != "none" else None
        self._last_obs = self._observe(self.sim.refresh())
        return self._last_obs

    def _bob_step(self, values: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        c = self.config
        if c.bob_hindsight != "none":
            self._bob_trace.append((self._last_obs, values))
        obs, _, _, _, sim_info = self.sim.step(self._applied(values, BOB))
        self._bob_t += 1
        at_goal = sim_info["objects_at_goal"]
        entered = int((at_goal & ~self._at_goal).sum())
        left = int((~at_goal & self._at_goal).sum())
        self._at_goal = at_goal
        reward = c.bob_object_reward * (entered - left)
        self._hold = self._hold + 1 if at_goal.all() else 0
        info: dict[str, Any] = {"events": []}
        events = info["events"]
        success = self._hold >= c.success_hold_steps
        failed = bool(sim_info["sim_error"] or sim_info["off_table"].any() or self._bob_t >= self.bob_timeout)
        if not (success or failed):
            self._last_obs = self._observe(obs)
            return self._last_obs, reward, False, False, info
        if success:
            reward += c.bob_success_reward
        last = {k: obs[k] for k in STRUCTURED_KEYS} if c.bob_actions == "continuous" else None
        events.append(BobTurnEnded(success, sits_out=not success, last_observation=last))
        self._bob_state = self.sim.get_state()
        alice_proposes = self.teacher.alice_proposes
        result = self._pending_result if alice_proposes else GoalResult(index=self._goal_index, valid=True)
        result.bob_success, result.bob_steps, result.bob_timeout = success, self._bob_t, self.bob_timeout
        events.append(GoalFinished(result, c.alice_reward(result) if alice_proposes else None))
        if sim_info["sim_error"]:
            self._results.append(result)
            events += [SimulationError(sim_info["sim_error"]), GameOver(self._results)]
            return self._observe(self._last_obs), reward, True, False, info
        if not success:
            self._bob_out = True
            if alice_proposes:
                events.append(self._demonstration(self._alice_trace, self._goal))
            reached = self.sim.object_poses()
            if c.bob_hindsight == "final" and not objects_at_goal(reached, self._bob_turn_start, self.sim.rotation_modes).all():
                events.append(self._demonstration(self._bob_trace, reached, hindsight=True))
        if c.bob_hindsight == "windows":
            windows = self._hindsight_windows(self._bob_trace, self.sim.object_poses())
            if windows is not None:
                events.append(windows)
        return self._next_goal(info, result, reward)

    def _hindsight_windows(self, trace: list[tuple[dict, np.ndarray]], final_poses: np.ndarray) -> Demonstration | None:
        """Bob's turn cut into windows of ``hindsight_window`` steps; each window in which an
        object moved >= ``HINDSIGHT_MIN_MOVE`` (m) becomes a demonstration of reaching the poses
        at its end. One demonstration dict (windows concatenated), or None if nothing moved."""
        n, k = self.n_objects, self.config.hindsight_window
        poses = [o["achieved_goal"][: n * 7].reshape(n, 7) for o, _ in trace] + [final_poses]
        demos = []
        for start in range(0, len(trace), k):
            end = min(start + k, len(trace))
            moved = np.linalg.norm(poses[end][:, :3] - poses[start][:, :3], axis=1).max()
            if moved >= HINDSIGHT_MIN_MOVE:
                demos.append(self._demonstration(trace[start:end], poses[end].astype(np.float64)))
        if not demos:
            return None
        return Demonstration({key: np.concatenate([d.observations[key] for d in demos]) for key in demos[0].observations},
                             np.concatenate([d.actions for d in demos]), hindsight=True)

    # -- between goals ------------------------------------------------------------------------
    def _next_goal(self, info: dict, result: GoalResult, reward: float) -> tuple[dict, float, bool, bool, dict]:
        self._results.append(result)
        self._goal_index += 1
        alice_proposes = self.teacher.alice_proposes
        over = self._goal_index >= self.config.max_goals or (not alice_proposes and self._bob_out)
        out_of_reach = not over and alice_proposes and self.config.end_out_of_reach and not self._within_reach(self._goal).any()
        if over or out_of_reach:
            info["events"].append(GameOver(self._results, out_of_reach=out_of_reach))
            return self._observe(self.sim.refresh()), reward, True, False, info
        if not alice_proposes:
            return self._start_bob_turn(self.teacher.sample_goal(self.sim, self._rng)), reward, False, False, info
        return self._start_alice_turn(), reward, False, False, info

    def _within_reach(self, poses: np.ndarray) -> np.ndarray:
        """(n,) bool: which objects of ``poses`` (n, 7) have their centre inside the tool's x/y
        workspace, where the tool can touch them."""
        return self.sim.robot.control.within_workspace_xy(poses[:, :2])

    def _observe(self, obs: dict) -> dict:
        obs = dict(obs)
        if self.phase == ALICE:  # Alice never sees a goal
            obs["goal"] = np.zeros_like(obs["goal"])
            obs["desired_goal"] = np.zeros_like(obs["desired_goal"])
        obs["phase"] = np.array([float(self.phase)], dtype=np.float32)
        return obs


__all__ = ["ALICE", "BOB", "GameConfig", "GoalResult", "SelfPlayGame"]  # GoalResult: from selfplay.events


def _relabelled(observations: list[dict], goal: np.ndarray, rotation_modes: np.ndarray | None) -> dict[str, np.ndarray]:
    """Observations (T dicts) stacked into (T, ...) arrays, as Bob would see them with ``goal``
    (``rotation_modes``: the env's ``goal_rotation_modes``)."""
    from selfplay.learning.cloning import relabel

    return relabel({k: np.stack([o[k] for o in observations]) for k in observations[0]}, goal, rotation_modes)
