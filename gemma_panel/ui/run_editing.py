"""The Train tab's run list, managed: filters (status, tag, model), the selected run's name,
notes and tags, and deletion with a confirmation step.

``RunsModel`` inherits this. Everything is the store's (``RunStore.rename``, ``set_notes``,
``set_tags``, ``list_runs(status, tag=, model=)``; ``runs.delete_run``), so the CLI and the
dashboard rename, tag and delete alike. Deleting asks first (``ask_delete`` then
``confirm_delete``); a queued or running run is cancelled first (through ``runs.cancel``,
in a background job: a running one stops at its next step) and deleted once it stopped.

Example:
    >>> runs.tag_filter = "sweep"            # the list shows the runs tagged "sweep"
    >>> runs.name_text = "rank 16"; runs.save_labels()
    >>> runs.ask_delete(); runs.delete_question   # 'Delete run ...? ...'
    >>> runs.confirm_delete()
"""

from __future__ import annotations

import param

from gemma_panel.errors import UserError
from gemma_panel.runs import delete_run
from gemma_panel.runs import statuses as st

from .outputs import write, writes

ALL = "all"
STATUSES = [str(s) for s in st.MOVES]  # every status a run can be in


class RunEditing(param.Parameterized):
    """Filters, labels and deletion of ``RunsModel``'s runs; it supplies ``store``, ``jobs``,
    ``selected``, ``refresh_runs``, ``_failed`` and the ``notice`` output."""

    status_filter = param.Selector(default=ALL, objects=[ALL, *STATUSES], label="Status")
    tag_filter = param.Selector(default=ALL, objects=[ALL], label="Tag")
    model_filter = param.Selector(default=ALL, objects=[ALL], label="Model")
    name_text = param.String(default="", label="Name")
    notes_text = param.String(default="", label="Notes")
    tags_text = param.String(default="", label="Tags (comma-separated)")
    delete_question = param.String(default="", constant=True,
                                   doc="What a delete would remove; empty unless asked.")
    _delete_target: str | None = None

    def list_filters(self) -> dict:
        """``list_runs``' keyword arguments for the filters set ("all": no filter)."""
        pick = {"status": self.status_filter, "tag": self.tag_filter,
                "model": self.model_filter}
        return {k: None if v == ALL else v for k, v in pick.items()}

    def refresh_choices(self) -> None:
        """Offer the tags and models the store's runs have (a chosen one stays offered)."""
        for name, found in (("tag_filter", self.store.tags_in_use()),
                            ("model_filter", self.store.models_in_use())):
            current = getattr(self, name)
            self.param[name].objects = [ALL, *found, *([current] if current not in
                                                       (ALL, *found) else [])]

    @param.depends("status_filter", "tag_filter", "model_filter", watch=True)
    def _filters_changed(self) -> None:
        self.refresh_runs()

    def load_labels(self, run) -> None:
        """Show the selected run's name, notes and tags in the fields (none: empty)."""
        self.param.update(name_text=run.name if run else "", notes_text=run.notes if run else "",
                          tags_text=", ".join(run.tags) if run else "")
        self.cancel_delete()

    @writes
    def save_labels(self) -> None:
        """Write the fields to the selected run: its name, notes and tags."""
        if self.selected is None:
            self.notice = "Pick a run first."
            return
        try:
            run = self.store.rename(self.selected, self.name_text)
            run = self.store.set_notes(run.id, self.notes_text)
            run = self.store.set_tags(run.id, self.tags_text)
        except UserError as exc:  # an empty name, a tag with a space: said, nothing lost
            self.notice = f"Not saved: {exc}"
            return
        self.notice = f"Saved {run.id}: {run.name!r}" + (
            f", tags {', '.join(run.tags)}" if run.tags else "") + "."
        self.refresh_choices()
        self.refresh_runs()
        self.load_labels(run)

    def ask_delete(self) -> None:
        """The confirmation step: say what a delete of the selected run removes."""
        if self.selected is None:
            write(self, notice="Pick a run first.")
            return
        run = self.store.get(self.selected)
        self._delete_target = run.id
        question = (f"Delete run {run.id} ({run.name}), its metrics, checkpoints and exports? "
                    "This cannot be undone.")
        if run.status.active:
            question += (f" It is {run.status}: it is cancelled first (a running run stops "
                         "at its next step), then deleted.")
        write(self, delete_question=question)

    def cancel_delete(self) -> None:
        self._delete_target = None
        if self.delete_question:
            write(self, delete_question="")

    def confirm_delete(self) -> None:
        """Delete the run the question named (cancelled first if active), in the background."""
        run_id, self._delete_target = self._delete_target, None
        if run_id is None:
            return
        write(self, delete_question="", notice=f"Deleting {run_id} (cancelling it first if "
                                               "it is queued or running) ...")

        def deleted(run) -> None:
            if self.selected == run.id:
                self.selected = None
            self.refresh_choices()
            self.refresh_runs()
            write(self, notice=f"Deleted {run.id} ({run.name}).")

        self.jobs.submit(f"delete {run_id}", lambda: delete_run(run_id, self.store, cancel=True),
                         deleted, self._failed)
