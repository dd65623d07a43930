"""Parallel zero-shot evaluation: the sequential path's numbers whatever the workers and games,
reproducible sampling, scripted players in the workers, and no worker outliving the evaluator."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
from omegaconf import OmegaConf

from selfplay.config import compose
from selfplay.evaluation import BobPolicy, evaluate_task
from selfplay.evaluation.parallel import ParallelEvaluator, RandomPolicy, WorkerError
from selfplay.evaluation.run import run_evaluation
from selfplay.game import BOB
from selfplay.learning import agent_observation_space, build_learner
from selfplay.vec_env import make_game
from tests.helpers import ROOT, Oracle, idle, tiny_config

#: (workers, games per worker): one game playing every trial in turn (as the sequential path
#: does); two workers with one game each, the next trial going to whichever game frees first.
LAYOUTS = [(1, 1), (2, 1)]


def bob_model(algo: str = "ppo"):
    """An untrained Bob (PPO, or SAC with ``algo="sac"``) built as the trainer builds it."""
    cfg = tiny_config(**{"bob.algo": algo})
    game = make_game(cfg, seed=0)
    return build_learner(cfg, BOB, agent_observation_space(game.observation_space), game.action_space)


def same(a, b) -> bool:
    """Two TaskResults are equal field by field (NaN equals NaN), wall time aside."""
    a, b = ({k: v for k, v in asdict(r).items() if k != "seconds"} for r in (a, b))
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def parallel(act, task_id: str, trials: int, workers: int, games: int, **kwargs):
    with ParallelEvaluator(workers, games) as engine:
        return engine.evaluate_task(act, task_id, trials, **kwargs)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_a_greedy_bob_scores_as_the_sequential_path(algo):
    bob = BobPolicy(bob_model(algo))
    for task_id, trials in [("Tabletop/Push1-v0", 3), ("Tabletop/Stack2-v0", 2)]:
        sequential, _ = evaluate_task(bob, task_id, trials, seed=3, check=bob.check)
        finished = []
        for workers, games in LAYOUTS:
            result, _ = parallel(bob, task_id, trials, workers, games, seed=3, check=bob.check,
                                 progress=lambda: finished.append(1))
            assert same(result, sequential), (workers, games, result, sequential)
        assert len(finished) == trials * len(LAYOUTS)  # the progress bar counts finished trials
        assert sequential.goals == trials and sequential.steps > 0


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_sampled_actions_do_not_depend_on_the_batching(algo):
    bob = BobPolicy(bob_model(algo), deterministic=False)
    results = [parallel(bob, "Tabletop/Push1-v0", 3, workers, games, seed=1)[0] for workers, games in LAYOUTS]
    assert same(*results)
    other_seed, _ = parallel(bob, "Tabletop/Push1-v0", 3, 2, 2, seed=2)
    assert not same(results[0], other_seed)


def test_random_actions_move_the_objects_reproducibly():
    results = [parallel(RandomPolicy(), "Tabletop/Push2-v0", 3, workers, games, seed=0)[0] for workers, games in [(1, 3), (2, 2)]]
    assert same(*results)
    assert abs(results[0].mean_final_distance - results[0].mean_start_distance) > 1e-3  # the blocks were pushed


def test_scripted_players_act_in_the_workers_with_the_sequential_numbers():
    with ParallelEvaluator(2, 2) as engine:
        solved, frames = engine.evaluate_task(Oracle(), "Tabletop/Push1-v0", trials=3, record=True)
        stacked, _ = engine.evaluate_task(Oracle(), "Tabletop/Stack2-v0", trials=3)
        failed, _ = engine.evaluate_task(idle, "Tabletop/Push1-v0", trials=2)
    expected_solved, expected_frames = evaluate_task(Oracle(), "Tabletop/Push1-v0", trials=3, record=True)
    assert same(solved, expected_solved) and (solved.goals, solved.successes) == (15, 15)  # 5 goals in a row
    assert len(frames) == len(expected_frames) == 5 and all(np.array_equal(a, b) for a, b in zip(frames, expected_frames))
    assert same(stacked, evaluate_task(Oracle(), "Tabletop/Stack2-v0", trials=3)[0]) and stacked.goals == 3
    assert same(failed, evaluate_task(idle, "Tabletop/Push1-v0", trials=2)[0]) and failed.failures == {"timeout": 2}


def _gone(pids: list[int], wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and "zombie" not in _status(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _status(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return f.read().lower()
    except OSError:
        return ""


def three_numbers(obs):
    """A player whose actions have the wrong shape."""
    return np.zeros(3)


class FailsAfter(RandomPolicy):
    """Random actions, then an error at the ``calls``-th batch (an exception mid-task)."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    def act_batch(self, obs, rngs):
        self.calls -= 1
        if self.calls == 0:
            raise KeyboardInterrupt  # as a Ctrl-C would arrive in the main process
        return super().act_batch(obs, rngs)


def test_workers_end_on_an_interrupt_and_with_their_parent():
    engine = ParallelEvaluator(2, 2)
    with pytest.raises(KeyboardInterrupt), engine:
        engine.evaluate_task(FailsAfter(5), "Tabletop/Push1-v0", trials=4)
        pytest.fail("unreachable")
    assert engine.pids == []
    with pytest.raises(WorkerError, match=r"shape \(6,\)"), ParallelEvaluator(2, 1) as engine:
        engine.evaluate_task(three_numbers, "Tabletop/Push1-v0", trials=2)  # an error in a worker reaches the caller
    assert engine.pids == []
    # the evaluating process ends without closing the evaluator, or is killed (kill -9): its
    # workers end with it (multiprocessing's exit handler; PR_SET_PDEATHSIG)
    script = ("import sys\nfrom selfplay.evaluation.parallel import ParallelEvaluator\n"
              "engine = ParallelEvaluator(2, 1)\nengine._start()\n"
              "print(*engine.pids, flush=True)\nsys.stdin.readline()\n")
    for ending in ("exit", "kill"):
        child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2 and not _gone(pids, wait_s=0.2)
        if ending == "kill":
            child.kill()
        else:
            child.stdin.write("\n")
            child.stdin.flush()
        assert child.wait(timeout=20) == (-signal.SIGKILL if ending == "kill" else 0)
        assert _gone(pids), ending


def test_the_cli_config_switches_between_parallel_and_sequential(tmp_path):
    path = tmp_path / "bob.zip"
    bob_model().save(path)
    results = {}
    for workers in (0, 2):
        cfg = OmegaConf.to_object(compose("evaluate", [f"checkpoint={path}", "tasks=[Tabletop/Push1-v0]", "trials=2", "progress=false",
                                                       f"workers={workers}", f"out={tmp_path / f'w{workers}'}"]))
        results[workers] = run_evaluation(cfg)[0]
    assert same(results[0], results[2])
    sequential, parallel_ = (json.loads((tmp_path / name / "results.json").read_text())["Tabletop/Push1-v0"] for name in ("w0", "w2"))
    assert {**sequential, "seconds": 0} == {**parallel_, "seconds": 0}
