"""The Data tab: choose a dataset, read its report, map its columns, see what trains."""

from __future__ import annotations

import html

import pandas as pd
import panel as pn
import param

from .charts import HistogramChart
from .data_model import AUTO, NONE, DataModel, example_datasets
from .uploads import DATA_EXTENSIONS, LimitedFileDropper, upload_limit_text

ROLE_HELP = {"prompt": "what the user asks", "input": "extra context after the prompt",
             "response": "what the model should answer", "text": "free text or text to classify",
             "label": "the class", "messages": "a list of chat turns"}


def frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of dicts as a DataFrame of text (Tabulator shows it as given)."""
    df = pd.DataFrame(rows, columns=columns)
    return df.astype(object).where(df.notna(), "")


def table(rows=(), columns=None, **kw) -> pn.widgets.Tabulator:
    opts = {"disabled": True, "show_index": False, "pagination": "local", "page_size": 10,
            "sizing_mode": "stretch_width", "layout": "fit_data_stretch"}
    opts.update(kw)
    return pn.widgets.Tabulator(frame(list(rows), columns), **opts)


def mask_html(pieces: list, by_token: bool) -> str:
    """The rendered example, trained parts highlighted (and tokens outlined when known)."""
    out = []
    for text, trained in pieces:
        cls = "gp-trained" if trained else "gp-context"
        tok = " gp-token" if by_token else ""
        out.append(f'<span class="{cls}{tok}">{html.escape(text)}</span>')
    return ('<div class="gp-mask" style="white-space:pre-wrap;font-family:monospace;'
            'line-height:1.7">' + "".join(out) + "</div>")


MASK_CSS = """
.gp-trained { background: rgba(46, 160, 67, 0.35); border-radius: 2px; }
.gp-context { opacity: 0.75; }
.gp-token { box-shadow: inset -1px 0 0 rgba(128,128,128,0.5); }
"""


class DataView(pn.viewable.Viewer):
    """Renders a ``DataModel``; every widget writes to it, every pane reads from it."""

    model = param.ClassSelector(class_=DataModel)

    def __init__(self, **params):
        super().__init__(**params)
        m = self.model
        limit = upload_limit_text()
        # No accepted_filetypes: browsers report no MIME type for .jsonl or .parquet, and
        # the drop area would refuse them; save_upload checks the extension on the server.
        self.dropper = LimitedFileDropper(
            max_file_size=limit, multiple=False,
            layout="compact", sizing_mode="stretch_width")
        self._seen_uploads: set = set()
        self.dropper.param.watch(self._uploaded, "value")
        self.dropper.param.watch(self._refused, "refused")
        examples = example_datasets()
        self.example = pn.widgets.Select(label="Or a shipped example",
                                         options={"(choose)": "", **examples})
        self.example.param.watch(lambda e: e.new and m.load(e.new), "value")
        self.path_input = pn.widgets.TextInput(label="Or a path on the server",
                                               placeholder="/data/train.jsonl")
        self.path_button = pn.widgets.Button(label="Check file", color="primary")
        self.path_button.on_click(lambda _: m.load(self.path_input.value))

        self.preview = table(page_size=8)
        self.kinds = table(page_size=10, visible=False)
        self.problems = table(page_size=10, visible=False)
        self.code_select = pn.widgets.Select(label="Kind", options=["all"])
        self.code_select.param.watch(lambda e: setattr(m, "code_filter", e.new), "value")
        self.mapping_box = pn.Column()
        self.row_input = pn.widgets.IntInput(label="Example", value=0, start=0, width=120)
        self.row_input.param.watch(lambda e: setattr(m, "row_index", e.new or 0), "value")
        self.histogram = HistogramChart()
        self.augmented = table(page_size=10)
        self.aug_button = pn.widgets.Button(label="Preview augmentation")
        self.aug_button.on_click(lambda _: m.preview_augmentation())

        m.param.watch(self._show_preview, ["preview"])
        m.param.watch(self._show_report, ["report", "severity_filter", "code_filter",
                                          "text_filter"])
        m.param.watch(self._show_mapping, ["columns", "mapping", "overrides"])
        m.param.watch(self._show_histogram, ["token_stats"])
        m.param.watch(lambda e: self._set(self.augmented, e.new), ["augmented"])
        m.param.watch(lambda e: setattr(self.row_input, "end", max(0, len(e.new) - 1)),
                      ["examples"])

    # -- model -> widgets -----------------------------------------------------------------
    @staticmethod
    def _set(widget: pn.widgets.Tabulator, rows: list[dict]) -> None:
        widget.value = frame(rows)

    def _uploaded(self, event) -> None:
        for name, content in (event.new or {}).items():
            key = (name, len(content))
            if key not in self._seen_uploads:  # the dropper keeps earlier files in its value
                self._seen_uploads.add(key)
                self.model.upload(name, content)

    def _refused(self, event) -> None:
        if event.new:  # dropped on arrival, over the limit: nothing was stored
            self.model.param.update(busy=False, status="Upload refused.", error=event.new)

    def _show_preview(self, event) -> None:
        self._set(self.preview, event.new)

    def _show_report(self, *_) -> None:
        m = self.model
        kinds = m.problem_kinds()
        self._set(self.kinds, kinds)
        self.code_select.options = ["all", *[k["code"] for k in kinds]]
        problems = m.problems()
        self._set(self.problems, problems)
        self.kinds.visible = bool(kinds)  # a clean file shows no empty tables
        self.problems.visible = bool(problems)

    def _show_mapping(self, *_) -> None:
        m = self.model
        rows = []
        for role, meaning in ROLE_HELP.items():
            if role in m.overrides:
                value = m.overrides[role] if m.overrides[role] is not None else NONE
            else:
                value = AUTO
            shown = m.mapping.get(role)
            select = pn.widgets.Select(
                label=f"{role} ({meaning}): now {shown or 'unused'}",
                options=[AUTO, NONE, *m.columns], value=value if value in
                [AUTO, NONE, *m.columns] else AUTO, width=320)
            select.param.watch(lambda e, role=role: m.set_column(role, e.new), "value")
            rows.append(select)
        self.mapping_box.objects = [pn.FlexBox(*rows)]

    def _show_histogram(self, event) -> None:
        self.histogram.update(event.new or {})

    # -- layout -----------------------------------------------------------------------------
    def _summary(self):
        m = self.model

        @pn.depends(m.param.status, m.param.error, m.param.busy)
        def summary(status, error, busy):
            items = [pn.Row(pn.indicators.LoadingSpinner(value=busy, visible=busy, size=20),
                            pn.pane.Markdown(status, css_classes=["gp-data-status"]))]
            if error:
                items.append(pn.pane.Alert(error, alert_type="danger"))
            return pn.Column(*items, sizing_mode="stretch_width")
        return summary

    def _report_header(self):
        m = self.model

        @pn.depends(m.param.report)
        def header(report):
            if not report:
                return pn.pane.Markdown("No report yet.")
            kind = "success" if report["ok"] else "danger"
            cols = ", ".join(f"{r} ← `{c}`" for r, c in report["columns"].items()) or "none"
            text = (f"**{report['source']}** · {report['format'] or '?'} · task "
                    f"**{report['task'] or '?'}** · columns {cols}  \n"
                    f"{report['rows_read']} rows read, {report['rows_usable']} usable · "
                    f"**{report['n_errors']} errors**, {report['n_warnings']} warnings")
            return pn.pane.Alert(text, alert_type=kind, css_classes=["gp-report"])
        return header

    def _mask(self):
        m = self.model

        @pn.depends(m.param.rendered, m.param.rendered_by_token)
        def mask(pieces, by_token):
            if not pieces:
                return pn.pane.Markdown("Nothing to render yet.")
            how = ("each token outlined; " if by_token else
                   "tokens appear once the tokenizer is ready; ")
            return pn.Column(
                pn.pane.Markdown(f"Green: trained on (the loss covers it); {how}the rest is "
                                 "context the model reads but is not trained to write."),
                pn.pane.HTML(mask_html(pieces, by_token), stylesheets=[MASK_CSS],
                             sizing_mode="stretch_width"))
        return mask

    def __panel__(self):
        m = self.model
        filters = pn.Row(pn.widgets.Select.from_param(m.param.severity_filter, label="Severity"),
                         self.code_select,
                         pn.widgets.TextInput.from_param(m.param.text_filter, label="Contains",
                                                         placeholder="text, line, column"))
        settings = pn.Row(
            pn.widgets.Select.from_param(m.param.template, label="Template"),
            pn.widgets.Select.from_param(m.param.text_mode, label="Plain-text mode"),
            pn.widgets.IntInput.from_param(m.param.sequence_length, label="Sequence length"))
        augment = pn.Row(
            pn.widgets.MultiChoice.from_param(m.param.augment_ops, label="Operations"),
            pn.widgets.FloatSlider.from_param(m.param.augment_rate, label="Rate", step=0.05),
            pn.widgets.IntInput.from_param(m.param.augment_copies, label="Copies", width=100),
            self.aug_button)
        kinds = ", ".join(e.lstrip(".").upper() for e in DATA_EXTENSIONS)
        upload = pn.Column(
            pn.pane.Markdown(f"**Upload a dataset**: drop a file here or click (up to "
                             f"{upload_limit_text()}; {kinds})", css_classes=["gp-upload"]),
            self.dropper, width=420)
        return pn.Column(
            pn.Row(upload, pn.Column(self.example, pn.Row(self.path_input,
                                                          self.path_button))),
            self._summary(),
            pn.Card(self.preview, title="Preview (first rows as read)", collapsed=False),
            pn.Card(self._report_header(), self.kinds, filters, self.problems,
                    title="Validation report"),
            pn.Card(self.mapping_box, settings, title="Columns and template"),
            pn.Card(self.row_input, self._mask(), title="One example as the model sees it"),
            pn.Card(pn.pane.Bokeh(self.histogram.figure, sizing_mode="stretch_width"),
                    title="Token lengths"),
            pn.Card(pn.pane.Markdown(
                "Varies the prompts only (never the answers); augmented rows never enter "
                "validation. Synonym and insert read WordNet (Debian's wordnet-base). Back "
                "translation needs a model: see docs/data.md."), augment, self.augmented,
                title="Augmentation preview", collapsed=True),
            sizing_mode="stretch_width", name="Data")
