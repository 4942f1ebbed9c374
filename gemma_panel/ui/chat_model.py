"""The Chat tab's state: which run and checkpoint or export, the conversation, the answers
streaming in.

The models never load in the Panel server: ``send()`` hands the conversation to the chat
worker process (``gemma_panel.chat``), shared by every browser tab of this server, and
``poll()``, called from the app's periodic callback on the page's thread, adds the pieces
of both answers as they arrive. Each side keeps its own conversation: the base model sees
its own earlier answers, the tuned model its own, and both get the same user messages.

Example:
    >>> chat = ChatModel(RunStore())
    >>> chat.param.update(run="tiny-3f2a1b", message="How many grams in a kilogram?")
    >>> chat.send()        # then chat.poll() until chat.busy is False
    >>> chat.turns[-1]     # {"user": ..., "base": ..., "tuned": ..., "base_info": ...}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import param

from gemma_panel.chat import SIDES, ChatClient, run_chat_format
from gemma_panel.export.inventory import Checkpoints, RunExport, run_checkpoints, run_exports
from gemma_panel.export.manifest import MANIFEST
from gemma_panel.runs import RunStore

from .outputs import write, writing

NO_RUN = "Pick a run with a checkpoint or an export first (train one in the Train tab)."


@dataclass(frozen=True)
class Offer:
    """What one run folder offers to chat with: its checkpoints and loadable exports."""

    checkpoints: Checkpoints
    exports: tuple[RunExport, ...]

    @property
    def chattable(self) -> bool:
        return bool(self.checkpoints.steps or self.exports)


class RunOffers:
    """Each run folder's ``Offer``, read again only when the folder changed.

    The tab refreshes its runs every 3 seconds; reading every run's checkpoint meta and
    export manifests each time grows with the runs kept. ``folder_key`` (directory
    listings and stat calls, no file read) says when a folder must be read again.
    """

    def __init__(self):
        self._seen: dict[str, tuple[tuple, Offer]] = {}

    def get(self, run_dir: str | os.PathLike) -> Offer:
        run_dir = str(run_dir)
        key, seen = folder_key(Path(run_dir)), self._seen.get(run_dir)
        if seen is None or seen[0] != key:
            offer = Offer(run_checkpoints(run_dir),
                          tuple(e for e in run_exports(run_dir) if e.chattable))
            self._seen[run_dir] = seen = (key, offer)
        return seen[1]

    def keep_only(self, run_dirs) -> None:
        """Forget the folders of runs no longer listed (deleted ones)."""
        keep = {str(d) for d in run_dirs}
        self._seen = {d: v for d, v in self._seen.items() if d in keep}


def folder_key(run_dir: Path) -> tuple:
    """Changes whenever a checkpoint or an export folder comes or goes (both are staged
    and renamed into place) and whenever an export's manifest is rewritten."""
    exports = _listing(run_dir / "exports")
    manifests = tuple(_stamp(run_dir / "exports" / name / MANIFEST) for name in exports[1])
    return _listing(run_dir / "checkpoints"), exports, manifests


def _listing(folder: Path) -> tuple:
    try:
        return folder.stat().st_mtime_ns, tuple(sorted(os.listdir(folder)))
    except OSError:  # no such folder (yet)
        return None, ()


def _stamp(path: Path) -> tuple | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


class ChatModel(param.Parameterized):
    """A conversation with one run's tuned model and its base model, side by side.

    Args:
        store: the run store whose runs can be chatted with.
        client: the chat worker's client (default: the server's shared one).
        save_prompts: takes the conversation's user messages as the next run's
            ``eval.sample_prompts`` (the app passes the Configure tab's recipe).
    """

    run = param.Selector(default=None, objects=[], allow_None=True,
                         doc="A run with a checkpoint or an export (any status).")
    checkpoint = param.Selector(default="latest", objects=["latest"],
                                label="Checkpoint or export",
                                doc="latest, best, 'step N', or one of the run's exports "
                                    "('export NAME (format, verified)').")
    system_prompt = param.String(default="", label="System prompt (optional)")
    message = param.String(default="", label="Message")
    greedy = param.Boolean(default=True, label="Greedy (always the most likely token)")
    temperature = param.Number(default=0.7, bounds=(0.05, 20.0), label="Temperature")
    top_k = param.Integer(default=40, bounds=(0, None), label="Top-k (0: no limit)")
    top_p = param.Number(default=0.95, bounds=(0.01, 1.0), label="Top-p")
    max_tokens = param.Integer(default=128, bounds=(1, 4096), label="Max new tokens")
    seed = param.Integer(default=0, label="Seed")
    # Outputs: read-only outside the model (see outputs.py).
    turns = param.List(default=[], constant=True, doc="The conversation, one dict a turn.")
    busy = param.Boolean(default=False, constant=True)
    status = param.String(default="", constant=True)
    system_note = param.String(default="", constant=True,
                               doc="How the run's model family takes a system prompt.")

    def __init__(self, store: RunStore | None = None, client: ChatClient | None = None,
                 save_prompts: Callable[[list[str]], None] | None = None, **params):
        super().__init__(**params)
        self.store = store or RunStore()
        self._client = client
        self._save_prompts = save_prompts
        self._reply = None
        self._failed = False
        self._exports: dict[str, str] = {}  # choice label -> export folder name
        self._offers = RunOffers()
        self.refresh_runs()

    @property
    def client(self) -> ChatClient:
        if self._client is None:
            from gemma_panel.chat import shared_client

            self._client = shared_client()
        return self._client

    # -- choices ---------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Offer every run with a checkpoint or an export to chat with (newest first); keep
        the current one. Only the run folders that changed are read again (``RunOffers``)."""
        runs = self.store.list_runs()
        self._offers.keep_only(r.run_dir for r in runs)
        ids = [r.id for r in runs if self._offers.get(r.run_dir).chattable]
        self.param.run.objects = ids
        if self.run not in ids:
            self.run = ids[0] if ids else None
        else:
            self._checkpoints()

    @param.depends("run", watch=True)
    def _run_changed(self) -> None:
        self.stop()  # answers from the previous run's models have no column left
        self._reply = None
        self._checkpoints()
        note = ""
        if self.run is not None:
            try:
                note = run_chat_format(self._run_dir()).note
            except (OSError, ValueError) as exc:
                note = f"The run's recipe cannot be read ({exc})."
        write(self, turns=[], system_note=note, status="", busy=False)

    def _checkpoints(self) -> None:
        """Offer the run's checkpoints, then its exports that load as a model here."""
        offer = self._offers.get(self._run_dir()) if self.run else None
        self._exports = {e.label: e.name for e in offer.exports} if offer else {}
        found = offer.checkpoints if offer else None
        choices = (found.choices() if found and found.steps else []) + list(self._exports)
        choices = choices or ["latest"]
        self.param.checkpoint.objects = choices
        if self.checkpoint not in choices:
            self.checkpoint = choices[0]

    def _run_dir(self) -> Path:
        return Path(self.store.get(self.run).run_dir)

    def step(self) -> int | None:
        """The checkpoint step the choice names (None: the latest, or an export)."""
        if self.checkpoint == "latest" or self.export() is not None:
            return None
        return self._offers.get(self._run_dir()).checkpoints.step(self.checkpoint)

    def export(self) -> str | None:
        """The export folder the choice names (None: a checkpoint)."""
        return self._exports.get(self.checkpoint)

    def options(self) -> dict:
        """The sampling settings, as ``SamplingOptions`` fields."""
        return {"greedy": self.greedy, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p, "max_new_tokens": self.max_tokens, "seed": self.seed}

    # -- the conversation ------------------------------------------------------------------
    def conversation(self, side: str, message: str) -> list[list[str]]:
        """What ``side`` is asked: every earlier exchange with its own answers, then ``message``."""
        turns: list[list[str]] = []
        for turn in self.turns:
            turns += [["user", turn["user"]], ["model", turn[side]]]
        return turns + [["user", message]]

    def send(self) -> None:
        """Ask both models the message; their answers stream in through ``poll()``."""
        message = self.message.strip()
        if self.busy:
            return
        if self.run is None:
            write(self, status=NO_RUN)
            return
        if not message:
            write(self, status="Write a message first.")
            return
        request = {"run_dir": str(self._run_dir()), "step": self.step(),
                   "export": self.export(),
                   "system": self.system_prompt, "options": self.options(),
                   "conversations": {s: self.conversation(s, message) for s in SIDES}}
        self._reply, self._failed = self.client.chat(request), False
        self.message = ""
        turn = {"user": message, **{s: "" for s in SIDES}, **{f"{s}_info": "" for s in SIDES}}
        write(self, turns=[*self.turns, turn], busy=True, status="Asking both models ...")

    def stop(self) -> None:
        """End both answers where they are (the text so far is kept)."""
        if self._reply is not None:
            self.client.stop(self._reply)

    def clear(self) -> None:
        """Start a new conversation."""
        if not self.busy:
            write(self, turns=[], status="")

    def poll(self) -> None:
        """Add the pieces that arrived to the last turn; once done, say how it went."""
        reply = self._reply
        if reply is None:
            return
        events = reply.events()
        if not events:
            return
        turn, status, done, stopped = dict(self.turns[-1]), self.status, False, False
        for event in events:
            kind = event["event"]
            if kind == "piece":
                turn[event["side"]] += event["text"]
            elif kind == "end":
                turn[f"{event['side']}_info"] = _answer_info(event)
                stopped = stopped or event["stopped"]
            elif kind in ("status", "error"):
                status = event["text"]
                self._failed = self._failed or kind == "error"
            done = done or kind == "done"
        if done:
            self._reply = None
            status = status if self._failed else (
                "Stopped; the answers so far are kept." if stopped else "Answered.")
        with writing(self):
            self.turns = [*self.turns[:-1], turn]
            self.status, self.busy = status, not done

    def save_as_sample_prompts(self) -> None:
        """The conversation's user messages become the recipe's ``eval.sample_prompts``."""
        prompts = [t["user"] for t in self.turns]
        if not prompts or self._save_prompts is None:
            write(self, status="Chat first: your messages become the sample prompts.")
            return
        self._save_prompts(prompts)
        write(self, status=f"Saved {len(prompts)} prompt(s) as eval.sample_prompts in the "
                           "Configure tab's recipe: the next run answers them at every "
                           "evaluation, beside the base model.")


def _answer_info(event: dict) -> str:
    """'12 tokens in 0.8 s (15 tokens/s)', and 'stopped' if the stop button ended it."""
    tokens, seconds = event["tokens"], event["seconds"]
    rate = f" ({tokens / seconds:.0f} tokens/s)" if seconds > 0 and tokens else ""
    return f"{tokens} tokens in {seconds:.1f} s{rate}" + (", stopped" if event["stopped"] else "")
