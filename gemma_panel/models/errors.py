"""The one error type a user can cause while naming or preparing a model."""

from gemma_panel.errors import UserError


class ModelSourceError(UserError, ValueError):
    """A model source that cannot be used, said in one sentence with the next step.

    The message is meant for people: the CLI prints it as it is, the dashboard shows it in
    a notification. Nothing in the cache is changed when it is raised.
    """
