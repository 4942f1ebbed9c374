"""The Configure tab: the model picker and every recipe field with its explanation.

Widgets are made from the recipe schema (``config_model.field_info``): a checkbox for a
bool, a select for a field with choices, number inputs, a multi-choice for LoRA target
layers, and a text box (YAML or comma list) for the rest.
"""

from __future__ import annotations

import html

import panel as pn
import param
import yaml

from gemma_panel.config import LORA_TARGETS, SECTIONS

from .config_model import TOP_FIELDS, ConfigModel, field_info, field_paths
from .plan_view import plan_pane, recommendation_pane

SECTION_TITLES = {"model": "Model", "data": "Data", "lora": "LoRA adapters",
                  "train": "Training", "eval": "Evaluation and samples", "export": "Export",
                  "distribution": "Devices and distribution",
                  "memory": "Memory"}


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def make_widget(path: str, value):
    """The widget for one recipe field, holding ``value``."""
    info = field_info(path)
    name, kind = path.split(".")[-1], info["type"]
    if info["choices"]:
        options = list(info["choices"]) + ([None] if info["optional"] else [])
        return pn.widgets.Select(label=name, options=options, value=value, width=220)
    if path == "lora.target_layers":
        return pn.widgets.MultiChoice(label=name, options=list(LORA_TARGETS), value=list(value),
                                      width=420)
    if kind is bool:
        return pn.widgets.Checkbox(label=name, value=bool(value), width=220)
    if not info["optional"] and kind is int:
        return pn.widgets.IntInput(label=name, value=value, width=220)
    if not info["optional"] and kind is float:
        return pn.widgets.FloatInput(label=name, value=value, width=220, format="0.[000000]")
    return pn.widgets.TextInput(label=name, value=_text(value), width=420 if kind is str
                                and path.endswith(("source", "path")) else 220,
                                placeholder="none" if info["optional"] else "")


def data_verdict_pane(model: ConfigModel) -> pn.Column:
    """Will the run's data step pass? The verdict, and its fix one click away."""
    fix_button = pn.widgets.Button(label="", color="primary", visible=False,
                                   css_classes=["gp-data-fix"])
    fix_button.on_click(lambda _: model.apply_fix())

    @pn.depends(model.param.data_verdict)
    def verdict(v):
        fix = v.get("fix") or {}
        fix_button.visible = bool(fix)
        fix_button.label = "Set " + ", ".join(f"{k} to {val}" for k, val in fix.items())
        if not v:
            return pn.pane.Markdown("Data: checking it as the run will prepare it ...",
                                    css_classes=["gp-data-verdict"])
        kind = "success" if v["ready"] else "warning" if v["ok"] else "danger"
        return pn.pane.Alert(f"**Data:** {v['message']}", alert_type=kind,
                             css_classes=["gp-data-verdict"])
    return pn.Column(verdict, fix_button, sizing_mode="stretch_width")


class ConfigView(pn.viewable.Viewer):
    """Renders a ``ConfigModel``: a card per recipe section, the YAML, the CLI command."""

    model = param.ClassSelector(class_=ConfigModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        self.widgets: dict[str, pn.widgets.Widget] = {}
        self._updating = False
        for path in ["name", "description", *field_paths()]:
            value = m.settings[path]
            widget = (pn.widgets.TextInput(label=path, value=value, width=420)
                      if path in TOP_FIELDS else make_widget(path, value))
            pn.bind(self._edited, path, widget.param.value, watch=True)
            self.widgets[path] = widget
        pn.bind(self._show_values, m.param.settings, watch=True)
        self.save_path = pn.widgets.TextInput(
            label="Save as (a file name in GEMMA_PANEL_HOME/recipes/; blank: the run's name)",
            placeholder="my-recipe.yaml", width=420)
        self.replace = pn.widgets.Checkbox(label="Replace an existing file", value=False)
        self.save_button = pn.widgets.Button(label="Save recipe YAML", color="primary")
        self.save_button.on_click(self._save)
        self.load_input = pn.widgets.FileInput(accept=".yaml,.yml", label="Load recipe YAML")
        pn.bind(self._load_upload, self.load_input.param.value, watch=True)
        self.load_path = pn.widgets.TextInput(label="Or load from a path on the server",
                                              placeholder="recipes/quickstart.yaml", width=420)
        self.load_button = pn.widgets.Button(label="Load")
        self.load_button.on_click(lambda _: m.load_server_path(self.load_path.value.strip()))

    def _edited(self, path: str, value) -> None:
        if not self._updating:
            self.model.set(path, value)

    def _show_values(self, settings: dict) -> None:
        """Values changed in the model (a loaded recipe, the model picker): show them."""
        self._updating = True
        try:
            for path, value in settings.items():
                widget = self.widgets[path]
                shown = value if not isinstance(widget, pn.widgets.TextInput) else _text(value)
                if isinstance(widget, pn.widgets.MultiChoice):
                    shown = list(value)
                if widget.value != shown:
                    widget.value = shown
        finally:
            self._updating = False

    def _save(self, _) -> None:
        self.model.save_from_page(self.save_path.value.strip() or None, self.replace.value)
        self.replace.value = False  # each replacement is confirmed on its own

    def _load_upload(self, content) -> None:
        if content:
            self.model.load_text(content, self.load_input.filename or "uploaded.yaml")

    def _field_row(self, path: str):
        info = field_info(path)
        default = _text(info["default"]) or "none"
        help_html = (f'<div class="gp-help">{html.escape(info["help"])}'
                     f'<br><small>default: <code>{html.escape(default)}</code></small></div>')
        helps = [pn.pane.HTML(help_html, sizing_mode="stretch_width",
                              styles={"font-size": "0.9em"})]
        if path not in TOP_FIELDS:  # its recommendation, with "apply" (plan_view.py)
            helps.append(recommendation_pane(self.model.plan, path))
        return pn.Row(pn.Column(self.widgets[path], width=440),
                      pn.Column(*helps, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width", css_classes=[f"gp-field-{path}"])

    def _model_picker(self):
        m = self.model

        @pn.depends(m.param.settings)
        def info(_):
            rows = m.model_info()
            if not rows:
                return pn.pane.Markdown("A model outside the registry: a .gguf file, a Hugging "
                                        "Face folder or a KerasHub preset (set `source`).")
            lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows.items()]
            return pn.pane.Markdown("\n".join(lines), sizing_mode="stretch_width")
        picker = pn.widgets.Select.from_param(m.param.model_choice, label="Model (registry)")
        return pn.Column(picker, info, sizing_mode="stretch_width")

    def _status(self):
        m = self.model

        @pn.depends(m.param.errors, m.param.message, m.param.settings, m.param.saved_path)
        def status(errors, message, *_):
            items = []
            if errors:
                items.append(pn.pane.Alert("**The recipe cannot run yet:**\n\n" +
                                           "\n".join(f"- {e}" for e in errors),
                                           alert_type="danger", css_classes=["gp-config-errors"]))
            else:
                items.append(pn.pane.Alert("The recipe is valid.", alert_type="success"))
            if message:
                items.append(pn.pane.Markdown(message))
            items.append(pn.pane.Markdown("**The same run from a terminal:**\n\n```bash\n"
                                          f"{m.cli_command}\n```\n{m.cli_note}",
                                          css_classes=["gp-cli"]))
            return pn.Column(*items, sizing_mode="stretch_width")
        return status

    def _devices_badge(self):
        """What JAX sees here (backend, devices, memory, bfloat16), checked on request."""
        m = self.model
        button = pn.widgets.Button(label="Check devices", width=140)
        button.on_click(lambda _: m.check_devices())
        line = pn.bind(lambda text: pn.pane.Alert(
            text or "Which devices would train here: press Check devices.",
            alert_type="info" if text else "light"), m.param.devices)
        return pn.Row(button, line)

    def _yaml(self):
        m = self.model
        return pn.bind(lambda *_: pn.pane.Markdown(f"```yaml\n{m.yaml_text()}\n```"),
                       m.param.settings, m.param.saved_path)

    def __panel__(self):
        cards = [pn.Card(self._model_picker(), title="Model picker")]
        cards.append(pn.Card(*[self._field_row(p) for p in ("name", "description")],
                             title="Run"))
        for section in SECTIONS:
            rows = [self._field_row(p) for p in field_paths() if p.startswith(section + ".")]
            if section == "distribution":
                rows.insert(0, self._devices_badge())
            cards.append(pn.Card(*rows, title=SECTION_TITLES[section],
                                 collapsed=section in ("eval", "export", "distribution", "memory")))
        files = pn.Card(pn.Row(self.save_path, self.replace, self.save_button),
                        pn.Row(self.load_input, self.load_path, self.load_button),
                        pn.Card(self._yaml(), title="Recipe YAML", collapsed=True),
                        title="Save and load")
        plan = pn.Card(plan_pane(self.model.plan), title="Plan: recommendations and memory")
        return pn.Column(self._status(), data_verdict_pane(self.model), plan, *cards, files,
                         sizing_mode="stretch_width", name="Configure")
