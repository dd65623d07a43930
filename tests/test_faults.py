"""Runs that survive faults and mistakes (issue #12): each test is one of the issue's items,
with real processes, real files, real kills and real SB3 zips."""

import csv
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from selfplay.checkpoint import latest_checkpoint, read_counters
from selfplay.training import Trainer
from tests.helpers import ROOT, TINY_ARGS, import_ray, tiny_config, train_cli, train_env

pytestmark = pytest.mark.faults

STEPS = (256, 512)  # the env steps of the trained run's two checkpoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny run: checkpoints at 256 and 512 env steps, two metrics rows, and the
    config.yaml the command line would have written."""
    from omegaconf import OmegaConf

    from selfplay.training import save_config

    run = tmp_path_factory.mktemp("trained") / "run"
    config = tiny_config(**{"trainer.total_steps": 512, "eval.every": 0})  # no eval columns yet (test 2 adds them)
    trainer = Trainer(config, run)
    trainer.train()
    save_config(OmegaConf.to_yaml(OmegaConf.structured(config)), run)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def resume(run: Path, **overrides):
    return Trainer(tiny_config(**{"resume": str(run), "trainer.total_steps": 512, "eval.every": 0, **overrides}), run)


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def one_line(stderr: str) -> list[str]:
    """stderr without pybullet's import banner and hydra's/our log lines."""
    return [line for line in stderr.strip().splitlines()
            if line and not line.startswith("pybullet build time") and "][selfplay][" not in line]


# -- 1. a failed resume must not break the run ---------------------------------------------------
def test_1_an_incompatible_resume_is_refused_in_one_line_and_changes_nothing(run):
    before = {p: p.read_bytes() for p in (run / "config.yaml", run / "metrics.csv")}
    result = train_cli(f"resume={run}", "bob.width=64", "logger.wandb.mode=disabled")
    assert result.returncode == 2
    lines = one_line(result.stderr)
    assert len(lines) == 1 and "bob.width is 64 but the checkpoint was trained with 32" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in before} == before  # config.yaml not rewritten with width 64
    saved = (run / "config.yaml").read_text()
    assert "width: 32" in saved and "width: 64" not in saved


# -- 2. metrics.csv is the run's history ------------------------------------------------------
def test_2_resume_cuts_metrics_back_to_the_checkpoint_drops_a_torn_line_and_grows_columns(run):
    shutil.rmtree(run / "checkpoints" / f"step-{STEPS[1]:09d}")  # killed after logging update 2, before its checkpoint
    with open(run / "metrics.csv", "a") as f:
        f.write("768,3,0.5,0.2")  # and a torn third row (killed mid-write)
    trainer = resume(run, **{"eval.every": 1, "eval.trials": 1, "eval.tasks": "[Tabletop/Push1-v0]"})
    trainer.train()
    rows = metric_rows(run)
    assert [int(r["updates"]) for r in rows] == [1, 2]  # update 2 logged once, by the resumed run
    assert [int(r["env_steps"]) for r in rows] == [256, 512]
    assert "eval/Tabletop/Push1-v0/success" in rows[0]  # the new column joined the header
    assert rows[0]["eval/Tabletop/Push1-v0/success"] == "" and rows[1]["eval/Tabletop/Push1-v0/success"] != ""
    assert (run / "metrics.csv").read_text().endswith("\n")


# -- 3. one process per run folder; a fresh run never reuses a run ----------------------------------
def test_3_a_run_folder_in_use_is_refused_and_a_killed_holder_does_not_block(run):
    from selfplay.run_folder import RunFolderError

    first = resume(run)
    try:
        with pytest.raises(RunFolderError, match=re.escape(f"run folder {run} is in use by pid {os.getpid()}")):
            resume(run)
    finally:
        first.close()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from selfplay.run_folder import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)", str(run)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"pid {holder.pid}"):
            resume(run)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    resume(run).close()  # the lock of the killed process is not in the way


def test_3_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(run):
    shutil.rmtree(run / "checkpoints")
    trainer = resume(run)
    trainer.close()
    assert trainer.counters["env_steps"] == 0
    trainer = resume(run, **{"trainer.total_steps": 256})
    trainer.train()
    assert [int(r["updates"]) for r in metric_rows(run)] == [1]  # the killed start's rows are gone


def test_3_a_fresh_run_refuses_an_existing_run_folder(run, capsys):
    from selfplay.train import check_command_line

    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        check_command_line([*TINY_ARGS, f"hydra.run.dir={run}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"resume={run}" in err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


# -- 4. a damaged newest checkpoint: fall back to the newest complete one -------------------------
@pytest.mark.parametrize("damage", ["truncate bob.zip", "truncate alice.zip", "remove pool.pt", "garble trainer.json"])
def test_4_resume_falls_back_past_a_damaged_checkpoint_and_says_so(run, damage, caplog):
    action, name = damage.split()
    path = run / "checkpoints" / f"step-{STEPS[1]:09d}" / name
    if action == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif action == "remove":
        path.unlink()
    else:
        path.write_text(path.read_text().replace("{", "[", 1))
    with caplog.at_level(logging.WARNING, logger="selfplay"):
        trainer = resume(run)
    trainer.close()
    assert trainer.counters["env_steps"] == STEPS[0]
    assert any(f"step-{STEPS[1]:09d} is incomplete" in r.message and name in r.message for r in caplog.records)


REWRITE = """
import os, signal, sys
from pathlib import Path
from selfplay.checkpoint import save_checkpoint

run, step = Path(sys.argv[1]), int(sys.argv[2])

def kill_before_the_new_folder_takes_the_name(frame, event, arg):
    # SIGKILL at the os.replace that would move the new folder into place, once the old
    # folder of the same step has left that name
    if event == "c_call" and arg is os.replace and frame.f_code.co_name == "save_checkpoint":
        final, tmp = frame.f_locals.get("final"), frame.f_locals.get("tmp")
        if final is not None and tmp is not None and tmp.exists() and not final.exists():
            os.kill(os.getpid(), signal.SIGKILL)

sys.setprofile(kill_before_the_new_folder_takes_the_name)
save_checkpoint(run, step, {name: (lambda p: p.write_bytes(os.urandom(1000))) for name in ("alice.zip", "bob.zip", "pool.pt")},
                {"env_steps": step, "updates": 2}, keep=2)
"""


def test_4_rewriting_a_step_killed_at_the_worst_moment_keeps_a_complete_checkpoint(run):
    process = subprocess.run([sys.executable, "-c", REWRITE, str(run), str(STEPS[1])], cwd=ROOT, capture_output=True, timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    checkpoint = latest_checkpoint(run)
    assert read_counters(checkpoint)["env_steps"] == STEPS[1]
    for name in ("alice.zip", "bob.zip", "pool.pt"):
        assert (checkpoint / name).is_file()
    trainer = resume(run)  # and it loads
    trainer.close()
    assert trainer.counters["env_steps"] == STEPS[1]


# -- 5. stopping: SIGINT / SIGTERM cleanly, and no game worker outlives its trainer ------------------
def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(stat[1]) == pid:
            out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start_training(run: Path, log: Path, *extra: str) -> subprocess.Popen:
    args = [*TINY_ARGS, "trainer.rollout_steps=128", "alice.batch_size=32", "bob.batch_size=32", "trainer.checkpoint_every=1000",
            "trainer.total_steps=1000000", "logger.wandb.mode=disabled", f"hydra.run.dir={run}", *extra]
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "selfplay.train", *args], cwd=ROOT, env=train_env(),
                                stdout=out, stderr=subprocess.STDOUT)


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.time() + timeout
    while any(_running(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _running(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_5_a_stopped_or_killed_trainer_leaves_no_game_worker(tmp_path, sig):
    run, log = tmp_path / "run", tmp_path / "log"
    process = _start_training(run, log, "trainer.vec_env=subproc")
    workers: list[int] = []
    try:
        _wait_for(log, "update 1:", process)
        workers = _children(process.pid)
        assert len(workers) == 2
        process.send_signal(sig)
        code = process.wait(timeout=60)
        assert _gone(workers) == []
        if sig == signal.SIGTERM:
            assert code == 128 + signal.SIGTERM
            lines = log.read_text().strip().splitlines()
            assert "Traceback" not in log.read_text()
            assert lines[-1].startswith("SIGTERM: stopped at ") and f"resume={run}" in lines[-1]
            last = metric_rows(run)[-1]
            assert read_counters(latest_checkpoint(run))["env_steps"] == int(last["env_steps"])  # the final checkpoint
    finally:
        process.kill()
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_5_a_killed_ray_driver_leaves_no_ray_process(tmp_path):
    import_ray()
    run, log = tmp_path / "run", tmp_path / "log"
    process = _start_training(run, log, "trainer.vec_env=ray", "ray.workers=1")
    tree: list[int] = []
    try:
        _wait_for(log, "update 1:", process, timeout=180)
        from selfplay.processes import descendants

        tree = [pid for pid in descendants([process.pid]) if pid != process.pid]
        assert len(tree) >= 3  # GCS, raylet, the game worker, Ray's agents, the reaper
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert _gone(tree, timeout=30) == []
    finally:
        process.kill()
        for pid in tree:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


# -- 6, 7. evaluation -----------------------------------------------------------------------------
def test_6_evaluating_alice_is_refused(trained, capsys):
    from selfplay.evaluate import main

    alice = latest_checkpoint(trained) / "alice.zip"
    assert main([f"checkpoint={alice}", "tasks=[Tabletop/Push1-v0]", "trials=1", "progress=false", f"out={trained.parent / 'e6'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not take goals" in err and str(alice) in err


def test_7_a_report_of_tasks_without_a_paper_number_has_its_plot(tmp_path):
    from selfplay.evaluation import TaskResult, write_report

    result = TaskResult(task="Tabletop/Row3-v0", trials=2, goals=2, successes=1, success_rate=0.5, ci_low=0.1, ci_high=0.9,
                        mean_steps_to_success=40.0)
    files = write_report([result], tmp_path, "row only")
    assert files["png"].stat().st_size > 1000


# -- 8. config mistakes ---------------------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("+trainer.total_step=100", "trainer.total_step: no such key (did you mean trainer.total_steps?)"),
    ("bob.batch_size=512", "bob.batch_size: 512 is larger than trainer.rollout_steps=256"),
    ("trainer.bogus=1", "trainer.bogus: no such key"),
    ("trainer.n_games=two", "trainer.n_games: Value 'two'"),
])
def test_8_config_mistakes_are_one_line_naming_the_key(override, key, tmp_path, capsys):
    from selfplay.train import check_command_line

    with pytest.raises(SystemExit) as stop:
        check_command_line([*TINY_ARGS, override, f"hydra.run.dir={tmp_path / 'run'}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"config error: {key}") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- 9. total_steps is a budget -------------------------------------------------------------------
def test_9_training_stops_at_total_steps(tmp_path):
    trainer = Trainer(tiny_config(**{"trainer.total_steps": 300}), tmp_path)
    trainer.train()
    assert trainer.counters["env_steps"] == 300  # 256 + a last update of 44 (a multiple of the 2 games)
    assert [int(r["env_steps"]) for r in metric_rows(tmp_path)] == [256, 300]
    assert read_counters(latest_checkpoint(tmp_path))["env_steps"] == 300


# -- 10. wandb online without credentials ----------------------------------------------------------
def test_10_wandb_online_without_a_key_says_so_and_logs_offline(tmp_path, monkeypatch, capsys):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    start = time.monotonic()
    trainer = Trainer(tiny_config(**{"trainer.total_steps": 256, "logger.wandb.mode": "online"}), tmp_path / "run")
    trainer.train()
    assert time.monotonic() - start < 60
    err = [line for line in capsys.readouterr().err.splitlines() if "wandb" in line]
    assert len(err) == 1 and "no wandb API key" in err[0] and "offline" in err[0]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_10_an_unreachable_wandb_server_is_named(monkeypatch):
    from selfplay.training.wandb_run import wandb_online_problem

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert "cannot reach the wandb server 127.0.0.1:9" in wandb_online_problem()


# -- 11. a full disk while checkpointing ----------------------------------------------------------
def _small_files_only() -> None:
    """In the child: files may not grow past 100 kB (as on a full disk; an SB3 zip is 230 kB)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))


def test_11_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint_and_stops_clearly(run):
    result = train_cli(f"resume={run}", "trainer.total_steps=768", preexec_fn=_small_files_only)
    assert result.returncode == 1
    lines = one_line(result.stderr)
    assert len(lines) == 1 and "could not write" in lines[0] and "step-000000512 is kept" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-000000256", "step-000000512"]  # no partial folder
    assert read_counters(latest_checkpoint(run))["env_steps"] == 512


# -- 12. the environment API ----------------------------------------------------------------------
def test_12_environment_api_mistakes_raise_clear_errors():
    import gymnasium as gym

    from tabletop_env import DiscreteActions, TabletopEnv

    with pytest.raises(ValueError, match="between 1 and max_objects=8 objects, got 0"):
        TabletopEnv(objects=[])
    env = DiscreteActions(gym.make("Tabletop/Push2-v0"))
    env.reset(seed=0)
    assert np.array_equal(env.action(np.full(6, 10)), np.ones(6)) and np.array_equal(env.action(np.zeros(6)), -np.ones(6))
    for bad in (-1, 5.5, 11):
        with pytest.raises(ValueError, match=r"\[0, 11\)"):
            env.action(np.array([bad, 5, 5, 5, 5, 5]))
    sim = env.unwrapped
    good = sim.object_poses()
    below, overlapping, zero = good.copy(), good.copy(), good.copy()
    below[0, 2] = -0.02
    overlapping[1, :3] = overlapping[0, :3] + 0.01
    zero[0, 3:] = 0.0
    for poses, reason in ((below, "below the table"), (overlapping, "objects 0 and 1 overlap"), (zero, "quaternion")):
        with pytest.raises(ValueError, match=reason):
            sim.set_goal(poses)
    sim.set_goal(good)  # a resting layout is a goal
    push, flip = TabletopEnv(task="Tabletop/Push1-v0"), TabletopEnv(task="Tabletop/Flip1-v0")
    push.reset(seed=0)
    with pytest.raises(ValueError, match="marked_block"):
        flip.set_state(push.get_state())
    for e in (env, push, flip):
        e.close()
