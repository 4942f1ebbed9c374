"""The Configure tab: the model picker, the fields a newcomer decides first, and every
other recipe field under "Advanced", by section and searchable; each with its explanation.

Widgets are made from the recipe schema (``config_fields.field_info``): a checkbox for a
bool, a select for a field with choices, number inputs, a multi-choice for LoRA target
layers, and a text box (YAML or comma list) for the rest. Which fields come first, which
differ from their defaults and which the search finds is the view model's
(``config_fields.py``, ``ConfigModel``); this module only draws it.
"""

from __future__ import annotations

import html

import panel as pn
import param
import yaml

from gemma_panel.config import LORA_TARGETS

from .config_fields import BASIC_FIELDS, GROUP_TITLES, TOP_FIELDS, all_paths, groups, search_note
from .config_model import ConfigModel, field_info
from .plan_view import css_name, plan_pane, recommendation_pane


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def make_widget(path: str, value, label: str | None = None):
    """The widget for one recipe field, holding ``value`` (labelled with its name)."""
    info = field_info(path)
    name, kind = label or path.split(".")[-1], info["type"]
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
        for path in all_paths():
            value = m.settings[path]
            widget = (pn.widgets.TextInput(label=path, value=value, width=420)
                      if path in TOP_FIELDS else
                      make_widget(path, value, path if path in BASIC_FIELDS else None))
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
        self.search = pn.widgets.TextInput(
            label="Search the advanced fields", value=m.search, width=420,
            placeholder="a word of a field's name or help, e.g. decay",
            css_classes=["gp-config-search"])
        self.search.link(m, value_input="search")  # each key typed, not only Enter
        self.reset_all = pn.widgets.Button(label="Reset all to the defaults",
                                           css_classes=["gp-reset-all"],
                                           disabled=pn.bind(lambda c: not c, m.param.changed))
        self.reset_all.on_click(lambda _: m.reset_all())
        self.rows: dict[str, pn.Row] = {}
        # A Card sets its children's visible when it opens: the rows sit in a Column.
        self.groups = {group: pn.Card(pn.Column(*self._group_rows(group, paths),
                                                sizing_mode="stretch_width"),
                                      title=GROUP_TITLES[group], collapsed=True,
                                      sizing_mode="stretch_width")
                       for group, paths in groups().items()}
        pn.bind(self._show_found, m.param.found, watch=True)

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

    def _show_found(self, found: list[str]) -> None:
        """Show the fields the search finds, open their sections and hide the others;
        clearing the search shows every section closed again."""
        searching = bool(self.model.search.strip())
        for group, paths in groups().items():
            for path in paths:
                self.rows[path].visible = path in found
            self.groups[group].visible = _any_found(paths, found)
            self.groups[group].collapsed = not (searching and _any_found(paths, found))

    def _group_rows(self, group: str, paths: list[str]) -> list:
        rows = [self._field_row(p, advanced=True) for p in paths]
        return [self._devices_badge(), *rows] if group == "distribution" else rows

    def _save(self, _) -> None:
        self.model.save_from_page(self.save_path.value.strip() or None, self.replace.value)
        self.replace.value = False  # each replacement is confirmed on its own

    def _load_upload(self, content) -> None:
        if content:
            self.model.load_text(content, self.load_input.filename or "uploaded.yaml")

    def _field_row(self, path: str, advanced: bool = False):
        """A field's widget; beside it its help and default, whether it is changed (with a
        reset) and its recommendation; an advanced one shows while the search finds it."""
        info = field_info(path)
        default = _text(info["default"]) or "none"
        help_html = (f'<div class="gp-help">{html.escape(info["help"])}'
                     f'<br><small>default: <code>{html.escape(default)}</code></small></div>')
        helps = [pn.pane.HTML(help_html, sizing_mode="stretch_width",
                              styles={"font-size": "0.9em"}), self._changed_mark(path)]
        if path not in TOP_FIELDS:  # its recommendation, with "apply" (plan_view.py)
            helps.append(recommendation_pane(self.model.plan, path))
        row = pn.Row(pn.Column(self.widgets[path], width=440),
                     pn.Column(*helps, sizing_mode="stretch_width"),
                     sizing_mode="stretch_width", css_classes=[f"gp-field-{css_name(path)}"])
        if advanced:
            self.rows[path] = row  # shown while the search finds it (_show_found)
        return row

    def _changed_mark(self, path: str) -> pn.Row:
        """"changed from the default" and a reset button, while the field is changed."""
        m = self.model
        changed = pn.bind(lambda c: path in c, m.param.changed)
        mark = pn.pane.HTML("<b>● changed from the default</b>", visible=changed,
                            css_classes=[f"gp-changed-{css_name(path)}"],
                            styles={"font-size": "0.85em", "color": "#b35c00"})
        reset = pn.widgets.Button(label="reset", width=70, visible=changed,
                                  css_classes=[f"gp-reset-{css_name(path)}"])
        reset.on_click(lambda _: m.reset(path))
        return pn.Row(mark, reset)

    def _basics(self):
        """The model picker and the fields a newcomer decides first, with "reset all"."""
        m = self.model

        def summary(changed):
            names = ", ".join(f"`{p}`" for p in changed) or "none"
            return pn.pane.Markdown(f"**Changed from the defaults ({len(changed)}):** {names}",
                                    css_classes=["gp-changed-summary"],
                                    sizing_mode="stretch_width")
        return pn.Card(self._model_picker(), *[self._field_row(p) for p in BASIC_FIELDS],
                       pn.Row(self.reset_all, pn.bind(summary, m.param.changed),
                              sizing_mode="stretch_width"),
                       title="Start here: the fields most runs change",
                       sizing_mode="stretch_width", css_classes=["gp-basics"])

    def _advanced(self):
        m = self.model
        note = pn.bind(lambda query, found: pn.pane.Markdown(
            search_note(query, found), css_classes=["gp-search-note"]), m.param.search,
            m.param.found)
        return pn.Card(pn.Column(self.search, note, *self.groups.values(),
                                 sizing_mode="stretch_width"),
                       title="Advanced: every other field, by section",
                       sizing_mode="stretch_width", css_classes=["gp-advanced"])

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
        files = pn.Card(pn.Row(self.save_path, self.replace, self.save_button),
                        pn.Row(self.load_input, self.load_path, self.load_button),
                        pn.Card(self._yaml(), title="Recipe YAML", collapsed=True),
                        title="Save and load")
        plan = pn.Card(plan_pane(self.model.plan), title="Plan: recommendations and memory")
        return pn.Column(self._status(), data_verdict_pane(self.model), self._basics(), plan,
                         self._advanced(), files, sizing_mode="stretch_width",
                         name="Configure")


def _any_found(paths: list[str], found: list[str]) -> bool:
    return any(p in found for p in paths)
