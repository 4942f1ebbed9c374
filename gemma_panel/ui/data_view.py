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
    """A read-only table of rows: a list, or a reference that gives one (a view-model's
    parameter, a ``pn.bind``), which the table then follows."""
    opts = {"disabled": True, "show_index": False, "pagination": "local", "page_size": 10,
            "sizing_mode": "stretch_width", "layout": "fit_data_stretch"}
    opts.update(kw)
    if isinstance(rows, (list, tuple)):
        return pn.widgets.Tabulator(frame(list(rows), columns), **opts)
    return pn.widgets.Tabulator(pn.bind(frame, rows, columns), **opts)


def thumbnails_html(thumbs: list[dict]) -> str:
    """Each image row's thumbnails beside its text; an unreadable image as a marked box."""
    rows = []
    for thumb in thumbs:
        images = "".join(
            f'<img src="{uri}" alt="row {thumb["row"]}" style="max-height:96px;margin:2px">'
            if uri else '<span style="display:inline-block;width:96px;border:1px dashed red;'
                        'color:red;margin:2px">does not read</span>' for uri in thumb["images"])
        more = f" (+{thumb['more']} more)" if thumb["more"] else ""
        rows.append(f'<div style="display:flex;gap:8px;align-items:center"><b>row '
                    f'{thumb["row"]}</b><div>{images}{more}</div>'
                    f'<div>{html.escape(thumb.get("text", ""))}</div></div>')
    return "".join(rows)


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
    """Renders a ``DataModel``: its widgets are bound to the model's inputs, its panes to
    the model's (read-only) outputs."""

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
        pn.bind(m.take_uploads, self.dropper.param.value, watch=True)
        pn.bind(m.refuse_upload, self.dropper.param.refused, watch=True)
        examples = example_datasets()
        self.example = pn.widgets.Select(label="Or a shipped example",
                                         options={"(choose)": "", **examples})
        pn.bind(m.load, self.example, watch=True)  # "(choose)" loads nothing
        self.path_input = pn.widgets.TextInput(label="Or a path on the server",
                                               placeholder="/data/train.jsonl")
        self.path_button = pn.widgets.Button(label="Check file", color="primary")
        self.path_button.on_click(lambda _: m.load(self.path_input.value))

        self.preview = table(m.param.preview, page_size=8)
        self.thumbnails = pn.pane.HTML(pn.bind(thumbnails_html, m.param.thumbnails),
                                       sizing_mode="stretch_width")
        # The report's tables; a clean file shows no empty tables.
        kinds = pn.bind(lambda _: m.problem_kinds(), m.param.report)
        problems = pn.bind(lambda *_: m.problems(), m.param.report, m.param.severity_filter,
                           m.param.code_filter, m.param.text_filter)
        self.kinds = table(kinds, page_size=10, visible=pn.bind(bool, kinds))
        self.problems = table(problems, page_size=10, visible=pn.bind(bool, problems))
        self.code_select = pn.widgets.Select.from_param(
            m.param.code_filter, label="Kind", description=None,
            options=pn.bind(lambda rows: ["all", *[k["code"] for k in rows]], kinds))
        self.mapping_box = pn.Column(pn.bind(self._mapping, m.param.columns, m.param.mapping,
                                             m.param.overrides))
        self.row_input = pn.widgets.IntInput.from_param(
            m.param.row_index, label="Example", description=None, width=120,
            end=pn.bind(lambda rows: max(0, len(rows) - 1), m.param.examples))
        self.histogram = HistogramChart()  # a Bokeh figure, updated in place
        pn.bind(self.histogram.update, m.param.token_stats, watch=True)
        self.augmented = table(m.param.augmented, page_size=10)
        self.aug_button = pn.widgets.Button(label="Preview augmentation")
        self.aug_button.on_click(lambda _: m.preview_augmentation())

    # -- model -> widgets -----------------------------------------------------------------
    def _mapping(self, columns: list, mapping: dict, overrides: dict) -> pn.FlexBox:
        """One picker per role, each bound to ``DataModel.set_column`` (once a file is checked)."""
        m = self.model
        rows = []
        if not m.report:
            return pn.FlexBox()
        for role, meaning in ROLE_HELP.items():
            if role in overrides:
                value = overrides[role] if overrides[role] is not None else NONE
            else:
                value = AUTO
            shown = mapping.get(role)
            select = pn.widgets.Select(
                label=f"{role} ({meaning}): now {shown or 'unused'}",
                options=[AUTO, NONE, *columns], value=value if value in
                [AUTO, NONE, *columns] else AUTO, width=320)
            pn.bind(m.set_column, role, select, watch=True)
            rows.append(select)
        return pn.FlexBox(*rows)

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
            pn.Card(self.thumbnails, title="Images (first rows that have them)",
                    visible=pn.bind(bool, m.param.thumbnails)),
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
