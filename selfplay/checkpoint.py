"""Atomic checkpoints: a run killed at any moment loses at most one checkpoint interval.

Layout of a run folder::

    config.yaml                 the resolved config
    metrics.csv                 one row per update
    checkpoints/step-000012288/ alice.zip, bob.zip (SB3 zips with optimiser state), pool.pt,
                                trainer.json (counters)
    checkpoints/latest          the name of the newest complete checkpoint

A checkpoint is written into a temporary folder that is renamed into place only when complete
(a rename is atomic); ``latest`` is replaced atomically afterwards. Older checkpoints beyond
``keep`` are removed only after the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, writers: dict[str, Any], counters: dict, keep: int = 2) -> Path:
    """Write a checkpoint. ``writers``: file name -> callable(path) that writes that file."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:09d}"
    final = root / name
    tmp = root / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for filename, write in writers.items():
        write(tmp / filename)
    (tmp / "trainer.json").write_text(json.dumps(counters, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_atomic(root / "latest", name)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest complete checkpoint of a run folder; a clear error if there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume: no run folder at {run_dir}")
    root = run_dir / CHECKPOINTS
    pointer = root / "latest"
    if pointer.exists():
        candidate = root / pointer.read_text().strip()
        if (candidate / "trainer.json").exists():
            return candidate
    complete = sorted(p for p in root.glob("step-*") if (p / "trainer.json").exists()) if root.exists() else []
    if not complete:
        raise FileNotFoundError(f"resume: {run_dir} has no complete checkpoint under {CHECKPOINTS}/")
    return complete[-1]


def read_counters(checkpoint: Path) -> dict:
    return json.loads((Path(checkpoint) / "trainer.json").read_text())
