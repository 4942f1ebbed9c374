"""The Chat tab: the same message to a run's tuned model and to its base, side by side.

Every widget is bound to a ``ChatModel`` parameter or method; the two columns render the
model's ``turns`` (each side's own conversation), so the answers grow as ``poll()`` adds
the pieces that stream in.
"""

from __future__ import annotations

import html

import panel as pn
import param

from .chat_model import ChatModel

TITLES = {"base": "Base model", "tuned": "Tuned model"}


def conversation_html(turns: list[dict], side: str) -> str:
    """One side's conversation: each user message and this side's answer (pre-wrapped)."""
    parts = []
    for turn in turns:
        parts.append(f"<div class='gp-chat-user'><b>You:</b> {html.escape(turn['user'])}</div>")
        answer = html.escape(turn[side]) or "<i>…</i>"
        parts.append(f"<div class='gp-chat-answer' style='white-space: pre-wrap'>{answer}</div>")
        if turn.get(f"{side}_info"):
            parts.append(f"<div class='gp-chat-info'><small>{turn[side + '_info']}</small></div>")
    return "\n".join(parts) or "<i>No messages yet.</i>"


class ChatView(pn.viewable.Viewer):
    """Renders a ``ChatModel``."""

    model = param.ClassSelector(class_=ChatModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.run = pn.widgets.Select.from_param(m.param.run, name="Run")
        self.checkpoint = pn.widgets.Select.from_param(m.param.checkpoint,
                                                    name="Checkpoint or export")
        self.system = pn.widgets.TextAreaInput.from_param(m.param.system_prompt, rows=2,
                                                          sizing_mode="stretch_width")
        self.message = pn.widgets.TextAreaInput.from_param(
            m.param.message, rows=3, sizing_mode="stretch_width",
            placeholder="Ask both models the same thing ...")
        self.settings = pn.Column(*(pn.widgets.Checkbox.from_param(m.param.greedy),) + tuple(
            pn.widgets.FloatInput.from_param(m.param[n], step=0.05, width=130)
            for n in ("temperature", "top_p")) + tuple(
            pn.widgets.IntInput.from_param(m.param[n], width=130)
            for n in ("top_k", "max_tokens", "seed")))
        self.send = self._button("Send", m.send, "primary", disabled=m.param.busy)
        self.stop = self._button("Stop", m.stop, disabled=pn.bind(lambda b: not b, m.param.busy))
        self.clear = self._button("New chat", m.clear, disabled=m.param.busy)
        self.save = self._button("Save these prompts as the next run's sample prompts",
                                 m.save_as_sample_prompts)
        self.refresh = self._button("Refresh runs", m.refresh_runs)
        self.columns = {side: pn.pane.HTML(pn.bind(conversation_html, m.param.turns, side),
                                           css_classes=[f"gp-chat-{side}"],
                                           sizing_mode="stretch_width")
                        for side in TITLES}

    @staticmethod
    def _button(label, action, button_type="default", **kwargs):
        button = pn.widgets.Button(label=label, button_type=button_type, **kwargs)
        button.on_click(lambda _: action())
        return button

    def __panel__(self):
        m = self.model
        sides = [pn.Column(pn.pane.Markdown(f"### {title}"), self.columns[side],
                           sizing_mode="stretch_width") for side, title in TITLES.items()]
        return pn.Column(
            pn.Row(self.run, self.checkpoint, self.refresh, sizing_mode="stretch_width"),
            self.system,
            pn.pane.Markdown(m.param.system_note, css_classes=["gp-chat-note"]),
            pn.Row(*sides, pn.Card(self.settings, title="Sampling", width=180),
                   sizing_mode="stretch_width"),
            self.message,
            pn.Row(self.send, self.stop, self.clear, self.save),
            pn.pane.Markdown(m.param.status, css_classes=["gp-chat-status"]),
            sizing_mode="stretch_width", name="Chat")
