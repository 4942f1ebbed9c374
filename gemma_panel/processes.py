"""Is a process still running? By pid, and by pid plus start time, which tells a reused pid
from the process that first had it.

Three answers, never a guess: True (running), False (certainly gone), None (this machine
cannot tell, e.g. ``/proc`` is unreadable). Callers that would delete or fail something on
"gone" must treat None as "perhaps running".
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); None when it is gone,
    a zombie, or this machine has no readable ``/proc``."""
    fields = _stat_fields(pid)
    return fields[19] if isinstance(fields, list) else None


def is_running(pid: int, started: str | None = None) -> bool | None:
    """Whether the process ``pid`` (that started at ``started``, when known) still runs.

    False only when that is certain: no process has the pid, it has exited (a zombie), or
    the pid now belongs to a process that started at another time.
    """
    if not pid_alive(pid):
        return False
    fields = _stat_fields(pid)
    if fields is _GONE:
        return False if os.path.isdir("/proc/self") else None  # no /proc: cannot tell
    if fields is None:
        return None
    return started is None or fields[19] == started


_GONE = "gone"


def _stat_fields(pid: int) -> list[str] | str | None:
    """Fields 3... of /proc/PID/stat; ``_GONE`` when there is no such live process; None
    when the file cannot be read.

    The command name (field 2) may hold spaces and parentheses, so fields are counted from
    the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return _GONE
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return _GONE if fields[0] in ("Z", "X") else fields  # a zombie has exited
