"""Is a worker still alive? Process identity, and the timings of heartbeats.

A worker records its pid, the pid's start time and the host name. On the same host a dead
pid (or a pid now used by another process, or a zombie) means the worker is gone at once;
anywhere, a heartbeat older than ``lost_after`` means the same. The start time is what tells a
reused pid from the worker's own.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from gemma_panel.processes import pid_alive


@dataclass(frozen=True)
class Timings:
    """How often a worker beats and how long silence lasts before its run is ``lost``.

    Args:
        heartbeat_s: seconds between heartbeats (``GEMMA_PANEL_HEARTBEAT_S``, default 2).
        lost_after_s: silence after which a run is lost even if its pid looks alive (a
            different host, or a hung machine); ``GEMMA_PANEL_LOST_AFTER_S``, default
            15 heartbeats. A dead pid on this host is noticed at once, whatever this says.
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


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone.

    Field 22 of /proc/PID/stat; the command name (field 2) may contain spaces and
    parentheses, so fields are counted from the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited; only its parent's wait() remains
        return None
    return fields[19]


def own_identity() -> tuple[int, str | None, str]:
    """(pid, start time, host) of this process, as a worker records them."""
    pid = os.getpid()
    return pid, process_start_time(pid), host_name()


def process_alive(pid: int | None, start_time: str | None, host: str | None) -> bool | None:
    """True/False when this host can tell, None when it cannot (another host, no /proc)."""
    if pid is None or host != host_name():
        return None
    if os.path.isdir("/proc/self"):
        now = process_start_time(pid)
        return now is not None and (start_time is None or now == start_time)
    return pid_alive(pid)
