"""Is a worker still alive? The run lock, process identity, and the timings of heartbeats.

Three answers, never two: alive, dead, or unknown. A worker that trains holds an exclusive
``flock`` on ``<run folder>/worker.lock`` from before it marks its run ``running`` until it
exits; the kernel releases it when the process dies, however it dies. So on the worker's
host a free lock means dead and a held lock means alive, whatever the clocks say: a
suspended laptop, a clock jump or a heartbeat thread starved of the GIL never makes a live
run ``lost``. Without the lock (a folder that cannot be opened), the pid decides: gone, a
zombie, or reused by another process (its start time differs) is dead; a /proc entry that
cannot be read is unknown, never dead. Only an unknown worker (another host) is judged by
its heartbeat: silence longer than ``lost_after`` means lost.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.processes import is_running, start_time

LOCK_NAME = "worker.lock"


@dataclass(frozen=True)
class Timings:
    """How often a worker beats and how long silence lasts before its run is ``lost``.

    Args:
        heartbeat_s: seconds between heartbeats (``GEMMA_PANEL_HEARTBEAT_S``, default 2).
        lost_after_s: silence after which a run whose worker cannot be probed (another
            host) is lost; ``GEMMA_PANEL_LOST_AFTER_S``, default 15 heartbeats. A worker on
            this host is judged by its lock and pid, never by silence.
        poll_s: how often a queued worker checks whether its turn has come.
    """

    heartbeat_s: float = 2.0
    lost_after_s: float = 30.0
    poll_s: float = 0.5

    @classmethod
    def from_env(cls) -> Timings:
        beat = float(os.environ.get("GEMMA_PANEL_HEARTBEAT_S") or 2.0)
        lost = float(os.environ.get("GEMMA_PANEL_LOST_AFTER_S") or 15 * beat)
        return cls(heartbeat_s=beat, lost_after_s=max(lost, 2 * beat),
                   poll_s=min(0.5, beat))


def host_name() -> str:
    return socket.gethostname()


def own_identity() -> tuple[int, str | None, str]:
    """(pid, start time, host) of this process, as a worker records them."""
    pid = os.getpid()
    return pid, start_time(pid), host_name()


def process_alive(pid: int | None, started: str | None, host: str | None) -> bool | None:
    """True/False when this host can tell, None when it cannot (another host, an
    unreadable /proc entry of a pid that exists)."""
    if pid is None or host != host_name():
        return None
    return is_running(pid, started)


class RunLock:
    """The exclusive lock a training worker holds on its run folder (see the module doc).

    ``flock`` locks belong to an open file, not a process: another open of the same file
    conflicts even inside the holder's process, so the holder probing itself sees "held".
    The descriptor is not inherited by programs the worker starts.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True if this object holds it now."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def lock_held(folder: str | os.PathLike) -> bool | None:
    """Whether some process holds the run lock of ``folder``; None if there is no lock
    file to probe (the worker never took one) or it cannot be opened."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the lock if we just took it
    return False


def worker_alive(folder, pid, start_time, host) -> bool | None:
    """A running run's worker: its lock decides on its own host, else its pid (or None)."""
    if pid is not None and host == host_name():
        held = lock_held(folder)
        if held is not None:
            return held
    return process_alive(pid, start_time, host)


def judged_gone(alive: bool | None, silent_s: float, timings: Timings) -> bool:
    """Dead is decisive, alive is decisive; only an unknown worker is judged by silence."""
    return alive is False or (alive is None and silent_s > timings.lost_after_s)
