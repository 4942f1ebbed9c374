"""What the run store refuses, in words a user can act on."""

from __future__ import annotations

from gemma_panel.errors import UserError


class RunNotFound(UserError, LookupError):
    """No run has this id (or this prefix matches none, or several)."""


class RunStateError(UserError, RuntimeError):
    """The run's status does not allow this: resuming a running run, deleting a queued one."""


class StaleAttempt(RunStateError):
    """A write from an attempt that is no longer the run's current one (it was resumed
    elsewhere, e.g. after being taken for lost): refused, so two workers never mix."""


class LabelError(UserError, ValueError):
    """A run's name, notes or tags that cannot be kept: empty, too long, a bad character."""
