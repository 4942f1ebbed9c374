"""Errors a user can cause, told apart from bugs in one place.

Every error a user can cause (a bad file, a bad setting, a run in the wrong state, a busy
database) is a ``UserError``: its message is one sentence saying what is wrong and what to
do next. The CLI prints it and exits with ``exit_code`` (2: the request was wrong); the
worker records it as the run's cause; the dashboard shows it. Anything else is a bug and
keeps its traceback.

Example:
    >>> error = as_user_error(exc)
    >>> if error is None:
    ...     raise  # a bug
    >>> print(f"gemma-panel: {error}")
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path


class UserError(Exception):
    """An error the user can fix, said in one sentence with the next step.

    The classes that subclass it keep their older bases too (``ValueError``,
    ``LookupError``, ``RuntimeError``), so ``except ValueError`` callers still work.
    """

    exit_code = 2

    def lines(self) -> list[str]:
        """What a terminal shows: the sentence, then any detail (a list, a report)."""
        return [str(self)]


class DatabaseLocked(UserError):
    """The run store stayed locked by another process past SQLite's busy timeout."""

    def __init__(self, database: str | os.PathLike | None = None):
        self.database = Path(database) if database is not None else _default_database()
        super().__init__(
            f"the run store {self.database} stayed locked by another process past the busy "
            "timeout (a worker, a dashboard or another command is writing to it); try again "
            f"in a moment, and if it stays locked find the process with 'fuser {self.database}'"
            " and stop it.")


def as_user_error(exc: BaseException, database: str | os.PathLike | None = None
                  ) -> UserError | None:
    """``exc`` as a `UserError` when a user can act on it; None when it is a bug.

    Args:
        exc: any exception.
        database: the run store's SQLite file, named in a "database is locked" message
            (default: the one under ``GEMMA_PANEL_HOME``).
    """
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc):
        return DatabaseLocked(database)
    return None


def report_user_error(exc: BaseException, database: str | os.PathLike | None = None,
                      prog: str = "gemma-panel") -> int | None:
    """A program's error boundary: print a user error as ``prog: sentence`` (and its detail)
    on stderr and return its exit code; None when ``exc`` is a bug (the caller re-raises)."""
    error = as_user_error(exc, database=database)
    if error is None:
        return None
    first, *detail = error.lines()
    print(f"{prog}: {first}", *detail, sep="\n", file=sys.stderr)
    return error.exit_code


def _default_database() -> Path:
    from gemma_panel.home import home_dir

    return home_dir() / "runs.db"  # RunStore's default
