"""``gemma-panel runs rename | note | tag``: what a user keeps about a run.

    gemma-panel runs rename ID NAME
    gemma-panel runs note ID TEXT [--append]      (TEXT '' clears the notes)
    gemma-panel runs tag ID TAG ... [--remove]     (no TAG: print the run's tags)

The run's id and folder never change; ``runs list --tag T`` finds the runs tagged T.
"""

from __future__ import annotations


def add_label_commands(runs_sub) -> None:
    """Register ``rename``, ``note`` and ``tag`` on the ``runs`` subparsers object."""
    rename = runs_sub.add_parser("rename", help="give a run another name (its id stays)")
    rename.add_argument("run_id")
    rename.add_argument("name", nargs="+", help="the new name (words are joined)")
    rename.set_defaults(func=cmd_rename)
    note = runs_sub.add_parser("note", help="set (or --append to) a run's notes")
    note.add_argument("run_id")
    note.add_argument("text", help="the notes; '' clears them")
    note.add_argument("--append", action="store_true", help="add a line to the notes")
    note.set_defaults(func=cmd_note)
    tag = runs_sub.add_parser("tag", help="add (or --remove) tags; none: print them")
    tag.add_argument("run_id")
    tag.add_argument("tags", nargs="*", metavar="TAG")
    tag.add_argument("--remove", action="store_true", help="remove these tags")
    tag.set_defaults(func=cmd_tag)


def _store():
    from gemma_panel.runs import RunStore

    return RunStore()


def cmd_rename(args) -> int:
    run = _store().rename(args.run_id, " ".join(args.name))
    print(f"{run.id}: now named {run.name!r}")
    return 0


def cmd_note(args) -> int:
    store = _store()
    run = store.get(args.run_id)
    text = "\n".join(filter(None, [run.notes, args.text])) if args.append else args.text
    run = store.set_notes(run.id, text)
    print(f"{run.id}: notes " + ("cleared" if not run.notes else
                                  f"saved ({len(run.notes)} characters)"))
    return 0


def cmd_tag(args) -> int:
    store = _store()
    if not args.tags:
        run = store.get(args.run_id)
    elif args.remove:
        run = store.remove_tags(args.run_id, args.tags)
    else:
        run = store.add_tags(args.run_id, args.tags)
    print(f"{run.id}: tags " + (", ".join(run.tags) if run.tags else "(none)"))
    return 0
