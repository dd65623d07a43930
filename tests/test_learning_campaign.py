"""benchmarks/learning.py's record of finished runs (--keep): a campaign continues in a fresh
--out folder (another session, whose runs/ was not kept) without training a recorded run again,
and reports it."""

import json
import subprocess
import sys

from tests.helpers import ROOT, TINY_ARGS, train_env

SETTINGS = [a for a in TINY_ARGS if not a.startswith("logger.")]


def campaign(out, keep, *extra):
    command = [sys.executable, "benchmarks/learning.py", "--out", str(out), "--keep", str(keep), "--steps", "512",
               "--marks", "256", "--arms", "uniform", "--seeds", "0", "--jobs", "1", "--trials", "2", *extra,
               "--set", *SETTINGS]
    return subprocess.run(command, cwd=ROOT, env=train_env(WANDB_MODE="disabled"), capture_output=True, text=True, timeout=600)


def test_a_recorded_run_is_reported_from_its_record_and_not_trained_again(tmp_path):
    keep = tmp_path / "campaign"
    first = campaign(tmp_path / "day1", keep)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    record = keep / "uniform-s0"
    assert json.loads((record / "record.json").read_text())["env_steps"] == 512
    for mode in ("eval", "eval_sampled"):  # both action modes, at both marks, each task
        for step in (256, 512):
            result = json.loads((record / mode / f"step-{step:09d}" / "results.json").read_text())
            assert set(result) == {"Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0"}
            assert all(r["trials"] == 2 for r in result.values())
    header = (record / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("env_steps,") and "bob/success_rate" in header

    second = campaign(tmp_path / "day2", keep, "--sampled")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "done before (kept" in second.stdout
    assert not (tmp_path / "day2" / "uniform-s0").exists()  # not trained again
    report = (tmp_path / "day2" / "learning_sampled.md").read_text()
    cells = []
    for step in (256, 512):
        sampled = json.loads((record / "eval_sampled" / f"step-{step:09d}" / "results.json").read_text())
        cells += [f"{100 * sampled[task]['success_rate']:.1f}" for task in ("Tabletop/Push1-v0", "Tabletop/PickAndPlace1-v0")]
    assert f"| uniform-s0 | {' | '.join(cells)} |" in report.splitlines()  # read from the record
