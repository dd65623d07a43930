"""A run folder in use: one training process at a time (a lock), a fresh run only in an empty
folder, and ``metrics.csv`` kept as the run's history across kills and resumes."""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import time
from pathlib import Path

from selfplay.checkpoint import fsync_file, write_atomic

log = logging.getLogger("selfplay")

LOCK = ".lock"
#: What hydra writes into the run folder before the trainer starts; anything else means a run.
HYDRA_FILES = {".hydra", "train.log"}


#: Lock file descriptors this process holds. A forked child (a game worker) closes its copies at
#: once, so that the lock is released when this process ends even if a child lingers a moment.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class RunFolderError(RuntimeError):
    """The run folder cannot be used: another process holds it, or a fresh run was pointed at an
    existing run. The message is one line naming the folder."""


class RunLock:
    """An exclusive lock on a run folder (``<run>/.lock``, ``flock``).

    A second process on the same folder gets :class:`RunFolderError` naming the holder. The
    operating system releases the lock when its holder ends, however it ends (``kill -9``
    included), so a dead process never blocks a resume; the file only records who held it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(f"run folder {self.path.parent} is in use by {holder}; wait for it to end or stop it "
                                 "(one training process per run folder)") from None
        stale = os.pread(fd, 400, 0).decode(errors="replace").strip()
        if stale:
            log.info("run folder lock of %s taken over (that process has ended)", stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        _HELD.add(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        _HELD.discard(self._fd)
        os.ftruncate(self._fd, 0)  # a clean end leaves no holder behind
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def fresh_run_problem(run_dir: Path) -> str | None:
    """Why a fresh run may not start in ``run_dir`` (it holds another run), or None."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = sorted(p.name for p in run_dir.iterdir() if p.name not in HYDRA_FILES | {LOCK})
    if not found:
        return None
    return (f"config error: hydra.run.dir: {run_dir} is not empty ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); "
            f"continue that run with resume={run_dir}, or choose a new folder")


class MetricsLog:
    """``metrics.csv``: one row per update, the run's history (also ``goals.csv``: one row per
    object of each of Alice's valid goals, tagged with its update).

    Opened for a resume (``updates``: the update count of the checkpoint resumed from), rows
    logged after that checkpoint are cut (the resumed run logs those updates again) and a torn
    last line (a kill mid-write) is dropped. A row with columns the file does not have yet (say
    ``eval.every`` turned on in a resume) rewrites the file once with the wider header; older rows
    get empty cells there. Rows are appended and flushed per update; :meth:`sync` puts them on
    disk (before each checkpoint).
    """

    def __init__(self, path: Path, updates: int = 0) -> None:
        self.path = Path(path)
        self.header: list[str] | None = None
        if self.path.exists():
            self._repair(updates)

    def _repair(self, updates: int) -> None:
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        torn = bool(lines) and not lines[-1].endswith("\n")
        if torn:
            lines = lines[:-1]
        rows = list(csv.reader(io.StringIO("".join(lines))))
        if not rows:
            self.path.unlink()
            return
        self.header, body = rows[0], rows[1:]
        column = self.header.index("updates") if "updates" in self.header else None
        kept = [r for r in body if len(r) == len(self.header) and (column is None or _number(r[column]) <= updates)]
        if torn or len(kept) != len(body):
            log.info("%s: kept %d rows up to update %d (dropped %d logged after that checkpoint%s)", self.path.name,
                     len(kept), updates, len(body) - len(kept), ", and a torn last line" if torn else "")
            self._rewrite(self.header, kept)

    def _rewrite(self, header: list[str], rows: list[list[str]]) -> None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        write_atomic(self.path, out.getvalue())

    def append(self, row: dict) -> None:
        self.extend([row])

    def extend(self, rows: list[dict]) -> None:
        """Append rows in one write (their columns are the first row's)."""
        if not rows:
            return
        row = rows[0]
        if self.header is None:
            self.header = list(row)
            self._rewrite(self.header, [])
        new = [k for k in row if k not in self.header]
        if new:
            with open(self.path, newline="") as f:
                old = list(csv.reader(f))[1:]
            self.header = self.header + new
            self._rewrite(self.header, [r + [""] * len(new) for r in old])
            log.info("%s: new columns %s (earlier rows have them empty)", self.path.name, ", ".join(new))
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.header, restval="", lineterminator="\n").writerows(rows)

    def sync(self) -> None:
        if self.path.exists():
            fsync_file(self.path)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")
