"""Checkpoints that survive kills, full disks and damaged files.

Layout of a run folder::

    config.yaml                 the resolved config
    metrics.csv                 one row per update
    checkpoints/step-000012288/ alice.zip, bob.zip (SB3 zips with optimiser state), pool.pt,
                                trainer.json (counters), manifest.json (size and SHA-256 of each);
                                the run's last one also bob_replay.npz (an off-policy Bob's replay)
    checkpoints/latest          the name of the newest checkpoint written

Writing: every file goes into ``checkpoints/.step-N.partial/`` and is flushed to disk (fsync);
``manifest.json`` is written last; the folder is flushed and renamed into place, then ``latest``
is replaced. A checkpoint for a step that already has one replaces it without a window with
neither: the old folder is renamed aside (``.step-N.old``) first and deleted after. A write that
fails (a full disk) removes its partial folder and raises :class:`CheckpointWriteError`; the
previous checkpoints stay. Older complete checkpoints beyond ``keep`` are removed afterwards.

Reading: a checkpoint is complete when ``manifest.json`` lists every file with its size and
hash and each file matches. Readers take the newest complete checkpoint by step (``latest`` is
only a pointer for people); incomplete ones are skipped with the reason
(:func:`checkpoint_problem`). Checkpoints written before manifests existed count as complete
when ``trainer.json`` reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
COUNTERS = "trainer.json"
_STEP = re.compile(r"^(?:step-(\d+)|\.step-(\d+)\.old)$")

log = logging.getLogger("selfplay")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); its partial folder is gone and
    the previous checkpoints are intact. The message names the folder and the reason."""


def fsync_path(path: Path) -> None:
    """Flush a file someone else wrote and closed, or a folder's entries (new, renamed or
    removed files), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_file = fsync_path  # the names the callers read best with


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a flushed temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_of(path: Path) -> int | None:
    """The env step of a checkpoint folder (``step-N`` or ``.step-N.old``), else None."""
    match = _STEP.match(Path(path).name)
    return int(match.group(1) or match.group(2)) if match else None


def save_checkpoint(run_dir: Path, step: int, writers: dict[str, Callable[[Path], object]], counters: dict,
                    keep: int = 2, keep_steps: Sequence[int] = ()) -> Path:
    """Write checkpoint ``step-<step>``. ``writers``: file name -> callable(path) that writes that
    file; ``counters`` go to ``trainer.json``. Besides the newest ``keep``, the first checkpoint
    at or after each env-step mark in ``keep_steps`` stays (:func:`kept_for_marks`). Returns the
    folder; raises :class:`CheckpointWriteError` (with the partial folder removed) when the disk
    refuses."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tidy(root)
    name = f"step-{step:09d}"
    final, tmp, old = root / name, root / f".{name}.partial", root / f".{name}.old"
    try:
        tmp.mkdir()
        files: dict[str, dict] = {}
        for filename, write in [*writers.items(), (COUNTERS, lambda p: p.write_text(json.dumps(counters, indent=2)))]:
            write(tmp / filename)
            fsync_file(tmp / filename)
            files[filename] = {"bytes": (tmp / filename).stat().st_size, "sha256": sha256(tmp / filename)}
        manifest = tmp / MANIFEST
        manifest.write_text(json.dumps({"step": step, "files": files}, indent=2))
        fsync_file(manifest)
        fsync_dir(tmp)
        if final.exists():  # the same step again: never a moment without a complete one
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException as error:  # a full disk, or a second Ctrl-C: leave no partial folder
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            os.replace(old, final)
        if not isinstance(error, OSError):
            raise
        previous = newest_complete(root)
        kept = f"the previous checkpoint {previous.name} is kept" if previous else "no earlier checkpoint exists"
        raise CheckpointWriteError(error.errno, f"checkpoint: could not write {final}: {error.strerror or error}; {kept}") from None
    shutil.rmtree(old, ignore_errors=True)
    try:
        write_atomic(root / "latest", name)
    except OSError as error:  # readers do not need it: they take the newest complete checkpoint
        log.warning("checkpoint: could not update %s: %s", root / "latest", error.strerror or error)
    _prune(root, keep, keep_steps)
    return final


def kept_for_marks(steps: Iterable[int], marks: Iterable[int]) -> set[int]:
    """Of checkpoint ``steps``, the first at or after each env-step mark (a stateless rule:
    checkpoints are written in step order, so a resumed run keeps the same ones)."""
    steps = sorted(steps)
    return {next(s for s in steps if s >= mark) for mark in marks if steps and steps[-1] >= mark}


def _prune(root: Path, keep: int, keep_steps: Sequence[int] = ()) -> None:
    """Remove complete checkpoints older than the newest ``keep`` (except those kept for
    ``keep_steps``), and incomplete ones older than those (newer incomplete ones stay for
    inspection)."""
    complete = complete_checkpoints(root.parent)
    if len(complete) <= keep:
        return
    oldest_kept = step_of(complete[keep - 1])
    marked = kept_for_marks((step_of(c) for c in complete), keep_steps)
    for folder in root.glob("step-*"):
        step = step_of(folder)
        if step is not None and step < oldest_kept and step not in marked:
            shutil.rmtree(folder, ignore_errors=True)


def tidy(root: Path) -> None:
    """Clean up after a write that was killed: partial folders go; an old folder set aside for a
    same-step rewrite goes if the new one is complete, else takes its name back."""
    for partial in root.glob(".step-*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    for old in root.glob(".step-*.old"):
        final = root / old.name[1:].removesuffix(".old")
        if final.exists() and checkpoint_problem(final) is None:
            shutil.rmtree(old, ignore_errors=True)
        else:
            if final.exists():
                shutil.rmtree(final)
            os.replace(old, final)


def checkpoint_problem(folder: Path, verify_hashes: bool = True) -> str | None:
    """Why ``folder`` is not a complete checkpoint (one line naming the file), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is missing"
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():  # written before manifests: counters must at least read
        try:
            json.loads((folder / COUNTERS).read_text())
        except (OSError, ValueError) as error:
            return f"{COUNTERS}: {getattr(error, 'strerror', None) or error}"
        return None
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{MANIFEST} unreadable ({error})"
    for filename, expected in files.items():
        path = folder / filename
        if not path.is_file():
            return f"{filename} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{filename} has {size} bytes, the manifest says {expected['bytes']}"
        if verify_hashes and sha256(path) != expected["sha256"]:
            return f"{filename} does not match its SHA-256 in the manifest"
    return None


def _candidates(root: Path) -> list[Path]:
    """Checkpoint folders, newest step first; a same-step rewrite's old folder stands in for a
    missing or incomplete new one."""
    if not root.is_dir():
        return []
    by_step: dict[int, list[Path]] = {}
    for folder in [*root.glob("step-*"), *root.glob(".step-*.old")]:
        step = step_of(folder)
        if step is not None and folder.is_dir():
            by_step.setdefault(step, []).append(folder)
    return [folder for step in sorted(by_step, reverse=True) for folder in sorted(by_step[step], key=lambda p: p.name.startswith("."))]


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Every complete checkpoint of a run folder, newest first."""
    out: list[Path] = []
    for folder in _candidates(Path(run_dir) / CHECKPOINTS):
        if (not out or step_of(out[-1]) != step_of(folder)) and checkpoint_problem(folder) is None:
            out.append(folder)
    return out


def newest_complete(root: Path) -> Path | None:
    for folder in _candidates(root):
        if checkpoint_problem(folder) is None:
            return folder
    return None


def latest_checkpoint(run_dir: Path, report: Callable[[str], None] | None = None) -> Path:
    """The newest complete checkpoint of a run folder; a clear error if there is none.
    ``report`` gets one line per newer checkpoint skipped as incomplete."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir}")
    skipped = []
    for folder in _candidates(run_dir / CHECKPOINTS):
        problem = checkpoint_problem(folder)
        if problem is None:
            if skipped and report is not None:
                report(f"checkpoint {', '.join(skipped)}; using {folder.name}")
            return folder
        skipped.append(f"{folder.name} is incomplete ({problem})")
    detail = f" ({'; '.join(skipped)})" if skipped else ""
    raise FileNotFoundError(f"{run_dir} has no complete checkpoint under {CHECKPOINTS}/{detail}")


def resume_point(run_dir: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """The checkpoint a resume of ``run_dir`` starts from: the newest complete one, or None when
    the run was stopped before its first checkpoint (it starts over with its saved config).
    Raises ``FileNotFoundError`` (its message starting "resume: ") when there is no run folder, or
    checkpoints but none complete."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not _candidates(run_dir / CHECKPOINTS):
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"resume: {run_dir} is not a run folder (no config.yaml)")
        return None
    try:
        return latest_checkpoint(run_dir, report)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"resume: {error}") from None


def read_counters(checkpoint: Path) -> dict:
    return json.loads((Path(checkpoint) / COUNTERS).read_text())
