"""Chat requests served on one model pair at a time, answers streamed piece by piece.

A request names a run folder and a checkpoint step or one of the run's exports (``export``:
its folder name in ``exports/``), the conversation each side has had so
far (the base and the tuned model each see their own earlier answers), a system prompt and
the sampling settings. ``step()`` moves every answer under way on by one piece of text, so
the two sides of one request, and the requests of several browser tabs on the same model
pair, stream together. A request for another run or checkpoint waits until the answers
under way have ended, then the new pair is loaded in place of the old one (one pair is
held at a time: a 270M pair already takes 4-6 GB).

Everything the engine says goes to ``emit`` as a dict (the worker writes them as JSON
lines):

- ``{"id", "event": "status", "text"}``: loading, waiting;
- ``{"id", "event": "piece", "side", "text"}``: the next piece of one side's answer;
- ``{"id", "event": "end", "side", "tokens", "seconds", "stopped"}``: one side is done;
- ``{"id", "event": "error", "text"}``: the request cannot be served (then ``done``);
- ``{"id", "event": "done"}``: nothing more will come for this request.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gemma_panel.chat.pair import SIDES, ModelPair, PairKey
from gemma_panel.errors import as_user_error
from gemma_panel.models.generation import SamplingOptions

Emit = Callable[[dict], None]


def sampling_options(values: dict) -> SamplingOptions:
    """SamplingOptions from a request's ``options`` (unknown keys are refused)."""
    names = {f.name for f in dataclasses.fields(SamplingOptions)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown sampling options: {sorted(unknown)}")
    return SamplingOptions(**values)


@dataclass
class _Answer:
    """One side's answer under way."""

    request: str
    side: str
    pieces: Iterator[str] | None = None
    tokens: int = 0
    started: float = 0.0

    def counted(self, ids: Iterator[int]) -> Iterator[int]:
        for token in ids:
            self.tokens += 1
            yield token


class ChatEngine:
    """Serves chat requests (see the module's docstring for what it emits).

    Args:
        emit: receives every event.
        load: builds a model pair from (run folder, step), or (run folder, None,
            export=name) for an export; ``ModelPair`` by default.
    """

    def __init__(self, emit: Emit, load: Callable[..., ModelPair] = ModelPair):
        self.emit, self._load = emit, load
        self.pair: ModelPair | None = None
        self.answers: list[_Answer] = []
        self.waiting: deque[dict] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.answers or self.waiting)

    def submit(self, request: dict) -> None:
        self.waiting.append(request)

    def stop(self, request_id: str) -> None:
        """End a request now: a waiting one is dropped, an answer under way ends here."""
        if any(r["id"] == request_id for r in self.waiting):
            self.waiting = deque(r for r in self.waiting if r["id"] != request_id)
            self.emit({"id": request_id, "event": "done"})
            return
        for answer in [a for a in self.answers if a.request == request_id]:
            self._end(answer, stopped=True)

    def step(self) -> None:
        """Start what can start, then move each answer under way on by one piece."""
        self._start_waiting()
        for answer in list(self.answers):
            try:
                piece = next(answer.pieces)
            except StopIteration:
                self._end(answer, stopped=False)
            except Exception as exc:  # noqa: BLE001 - told to the page, traceback to the log
                self._fail(answer.request, exc)
            else:
                self.emit({"id": answer.request, "event": "piece", "side": answer.side,
                           "text": piece})

    # -- starting ------------------------------------------------------------------------
    def _start_waiting(self) -> None:
        while self.waiting:
            request = self.waiting[0]
            try:
                key = _key(request)
                if self.pair is None or self.pair.key != key:
                    if self.answers:  # another pair is answering: wait for it to finish
                        return
                    self._switch(request, key)
                self.waiting.popleft()
                self._begin(request)
            except Exception as exc:  # noqa: BLE001
                if self.waiting and self.waiting[0] is request:
                    self.waiting.popleft()
                self._fail(request["id"], exc)

    def _switch(self, request: dict, key: PairKey) -> None:
        run_dir, step, export = key
        what = f"step {step}" if export is None else f"its export {export}"
        self.emit({"id": request["id"], "event": "status",
                   "text": f"Loading {Path(run_dir).name} at {what} and its base model "
                           "(once; later messages reuse them) ..."})
        self.pair = None  # the old pair's arrays go before the new ones come
        self.pair = self._load(Path(run_dir), step) if export is None else \
            self._load(Path(run_dir), None, export=export)

    def _begin(self, request: dict) -> None:
        options = sampling_options(request.get("options", {}))
        system = request.get("system") or None
        for side in SIDES:
            turns = [tuple(t) for t in request["conversations"][side]]
            prompt = self.pair.format.prompt(turns, system)
            answer = _Answer(request["id"], side, started=time.perf_counter())
            generator = self.pair.generator(side)
            ids = answer.counted(self.pair.stream_ids(side, prompt, options))
            answer.pieces = generator.texts(ids)
            self.answers.append(answer)

    # -- ending --------------------------------------------------------------------------
    def _end(self, answer: _Answer, stopped: bool) -> None:
        self.answers.remove(answer)
        self.emit({"id": answer.request, "event": "end", "side": answer.side,
                   "tokens": answer.tokens, "stopped": stopped,
                   "seconds": round(time.perf_counter() - answer.started, 3)})
        if not any(a.request == answer.request for a in self.answers):
            self.emit({"id": answer.request, "event": "done"})

    def _fail(self, request_id: str, exc: BaseException) -> None:
        error = as_user_error(exc)
        if error is None:
            traceback.print_exception(exc)  # to the worker's stderr: the server's log
        text = str(error) if error is not None else \
            f"the chat failed ({type(exc).__name__}: {exc}); the dashboard's log has the details."
        self.answers = [a for a in self.answers if a.request != request_id]
        self.emit({"id": request_id, "event": "error", "text": text})
        self.emit({"id": request_id, "event": "done"})


def _key(request: dict) -> PairKey:
    """(resolved run folder, step, export) a request asks for; neither step nor export:
    the latest checkpoint."""
    from gemma_panel.export.inventory import run_checkpoints

    run_dir = Path(request["run_dir"]).resolve()
    if request.get("export"):
        return str(run_dir), None, str(request["export"])
    step = request.get("step")
    if step is None:
        step = run_checkpoints(run_dir).latest
        if step is None:
            from gemma_panel.export.manifest import ExportError

            raise ExportError(f"The run in '{run_dir}' has no checkpoint yet; wait for its "
                              "first checkpoint (train.checkpoint_every), then chat, or "
                              "chat with one of its exports.")
    return str(run_dir), int(step), None
