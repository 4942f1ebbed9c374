"""Read-only outputs of the view-models: views read them, only their model writes them.

A view-model declares what it shows (statuses, messages, tables) as ``constant=True``
parameters, so a view that assigns one raises ``TypeError`` instead of quietly changing
the model's state behind its back. The model writes them inside ``writing(self)``; the
events of the block go out together once it ends, when the parameters are read-only
again, so a binding that reacts to them cannot write them either.

Example (inside a view-model's method):
    >>> with writing(self):
    ...     self.status, self.error = "Checked.", ""
    >>> write(self, busy=False)

Methods that write outputs throughout (and whose events must go out one by one) are
decorated with ``@writes`` instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import param


@contextmanager
def writing(model: param.Parameterized) -> Iterator[None]:
    """Let ``model`` write its read-only parameters; one batch of events at the end."""
    # Outer batch, inner edit: the events go out after the parameters are read-only again.
    with param.parameterized.batch_call_watchers(model), param.edit_constant(model):
        yield


def write(model: param.Parameterized, **values) -> None:
    """Set some of ``model``'s read-only parameters at once."""
    with writing(model):
        model.param.update(**values)


def writes(method: Callable) -> Callable:
    """Let a view-model's method write its read-only parameters while it runs.

    Unlike ``writing``, events go out as they happen (in the order the method sets them),
    for methods whose watchers must see one change before the next.
    """
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with param.edit_constant(self):
            return method(self, *args, **kwargs)
    return wrapper
