"""Processes that end with their trainer, and stopping on SIGINT / SIGTERM.

- Game workers (``SubprocVecEnv``) call :func:`follow_parent` when they start: the kernel kills
  them when the trainer ends, however it ends (``kill -9`` included), and they ignore SIGINT and
  SIGTERM so that a Ctrl-C or a scheduler's SIGTERM to the whole process group lets the trainer
  finish its update and checkpoint with its games still running.
- A local Ray started by the trainer gets a :class:`Reaper`: a small watcher process that kills
  Ray's processes (and the agents they started) if the trainer dies without shutting Ray down.
- :class:`StopSignals` turns the first SIGINT / SIGTERM into a request the training loop checks
  after each update; a second one stops at once (the last checkpoint stays).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from types import FrameType

_PR_SET_PDEATHSIG = 1


def follow_parent(parent_pid: int) -> None:
    """Make this (forked) process die with ``parent_pid`` and leave SIGINT / SIGTERM to it.

    Linux: the kernel sends SIGKILL when the parent ends (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread checks the parent once a second.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent ended before the line above
        os._exit(1)
    if not armed:
        import threading

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="follow-parent").start()


class StopSignals:
    """While active, the first SIGINT or SIGTERM sets :attr:`received` (the signal's name) and
    prints one line; a second raises ``KeyboardInterrupt`` to stop at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt(name)
        self.received = name
        print(f"{name}: stopping after this update with a checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)


# -- the reaper of a local Ray ---------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(roots: Iterable[int]) -> dict[int, str]:
    """``roots`` and all their descendants still running: pid -> start time."""
    tree, out, todo = _children(), {}, list(roots)
    while todo:
        pid = todo.pop()
        started = _start_time(pid)
        if started is not None and pid not in out:
            out[pid] = started
            todo.extend(tree.get(pid, []))
    return out


def _kill(processes: dict[int, str], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, to those of ``processes`` still the same processes."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = {pid: t for pid, t in processes.items() if _start_time(pid) == t}
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {pid: t for pid, t in alive.items() if _start_time(pid) == t}
        processes = alive


def reap_main(roots: list[int], interval_s: float = 2.0) -> None:
    """The reaper process: follow the trees under ``roots`` until stdin closes (the trainer
    ended, or let it go), then end whatever of them is left."""
    import threading

    os.setsid()  # not in the trainer's process group: a Ctrl-C there is not for us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched = descendants(roots)
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), closed.set()), daemon=True).start()
    while not closed.wait(interval_s):
        watched.update(descendants(watched))
    _kill(watched)


class Reaper:
    """Kills the process trees under ``roots`` if this process dies without calling :meth:`close`
    first (or when it does: whatever is left of them then). Linux only (reads /proc)."""

    def __init__(self, roots: Iterable[int]) -> None:
        self.process: subprocess.Popen | None = None
        if not os.path.isdir("/proc"):
            return
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from selfplay.processes import reap_main; reap_main([int(a) for a in sys.argv[1:]])",
             *map(str, roots)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        )

    def close(self, wait_s: float = 10.0) -> None:
        """End the watch: leftovers of the trees are ended, then the reaper exits."""
        if self.process is None:
            return
        try:
            self.process.stdin.close()
            self.process.wait(timeout=wait_s)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        self.process = None
