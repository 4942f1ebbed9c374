"""Following a run in the terminal: a progress line per step, samples at each evaluation,
the end status; Ctrl-C cancels the run (its checkpoint is kept), a second one stops following."""

from __future__ import annotations

import sys
import time

from gemma_panel.cli.format import duration


def follow(store, run_id: str, out=None, poll: float = 0.5) -> int:
    """Print a run's progress until it ends; return its exit code. Ctrl-C cancels it."""
    from gemma_panel.runs import queue
    from gemma_panel.runs import statuses as st

    out = out or sys.stdout
    cursor = events = samples_seen = 0
    interrupted = False
    last_status = None
    while True:
        try:
            run = store.get(run_id)
            if run.status != last_status:
                last_status = run.status
                if run.status == st.RUNNING:
                    print(f"{run.id}: running" + (f" (attempt {run.attempt + 1})"
                                                  if run.attempt else ""), file=out, flush=True)
                elif run.status == st.QUEUED:
                    ahead = (queue.position(store, run.id) or 1) - 1
                    print(f"{run.id}: queued" + (f", {ahead} run(s) ahead" if ahead else ""),
                          file=out, flush=True)
            for event in store.events(run.id, since=events, kinds=["log", "checkpoint"]):
                events = event.seq
                text = event.message if event.kind == "log" else \
                    f"checkpoint at step {event.data.get('step')}: {event.message}"
                print(f"  {text}", file=out, flush=True)
            points = store.metrics(run.id, since=cursor)
            samples = store.samples(run.id, since=samples_seen)
            cursor = points[-1].seq if points else cursor
            samples_seen = samples[-1].seq if samples else samples_seen
            _progress_line(run, points, out, samples)
            if run.status in st.FINISHED:
                print(f"{run.id}: {run.status}" + (f": {run.message}" if run.message else ""),
                      file=out, flush=True)
                if run.status in (st.FAILED, st.LOST) and run.log_tail:
                    print("--- last lines of the log ---\n" + run.log_tail, file=out, flush=True)
                if run.status in st.RESUMABLE:
                    print(f"resume with 'gemma-panel runs resume {run.id}'", file=out)
                return st.exit_code(run.status)
            time.sleep(poll)
        except KeyboardInterrupt:
            if interrupted:
                print(f"\nstopped following {run_id}; it is being cancelled", file=out)
                return 130
            interrupted = True
            store.request_cancel(run_id)
            print(f"\ncancelling {run_id} at its next step (Ctrl-C again to stop following)",
                  file=out, flush=True)


def _progress_line(run, points, out, samples=()) -> None:
    """One line per step seen since the last poll (step/total, loss, tokens/s, ETA), each
    followed by the samples of an evaluation at that step."""
    by_step: dict[int, dict[str, float]] = {}
    for p in points:
        by_step.setdefault(p.step, {})[p.name] = p.value
    by_eval: dict[int, list] = {}
    for s in samples:
        by_eval.setdefault(s.step, []).append(s)
    for step in sorted(set(by_step) | set(by_eval)):
        values = by_step.get(step, {})
        parts = [f"step {step:>5}/{run.total_steps or '?'}"]
        for name, fmt in (("loss", "loss {:.4f}"), ("val_loss", "val_loss {:.4f}"),
                          ("tokens_per_s", "{:,.0f} tok/s")):
            if values.get(name) is not None:
                parts.append(fmt.format(values[name]))
        if values.get("eta_s") is not None:
            parts.append(f"ETA {duration(values['eta_s'])}")
        if len(parts) > 1:
            print("  " + " | ".join(parts), file=out, flush=True)
        if step in by_eval:
            _sample_block(step, by_eval[step], out)


def _sample_block(step: int, samples, out, width: int = 100) -> None:
    """One evaluation's samples: each one's prompt, base, tuned and reference answer."""
    print(f"  samples at step {step}:", file=out)
    for s in sorted(samples, key=lambda s: (s.attempt, s.idx)):
        for label, text in (("prompt", s.prompt), ("base", s.base), ("tuned", s.tuned),
                            ("ref", s.reference)):
            if text or (text is not None and label != "ref"):
                print(f"    {label:<6}: {_one_line(text, width)}", file=out)
    out.flush()


def _one_line(text: str, width: int) -> str:
    """The text on one line (newlines shown as \\n), cut to ``width`` characters."""
    text = text.strip().replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 4] + " ..."
