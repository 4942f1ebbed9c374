"""The Data tab's state: which file, what is wrong with it, how it maps, renders and measures.

``DataModel`` holds plain values (lists of dicts, strings) that views render; the reading,
checking and tokenizing happen in background jobs (``jobs.py``) so the page never waits.

Example:
    >>> data = DataModel()
    >>> data.load("examples/instruction/unit_conversions.jsonl")
    >>> data.jobs.wait()
    >>> data.report["rows_usable"], data.mapping
    (314, {'prompt': 'prompt', 'response': 'response'})
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import param

from gemma_panel.config import Recipe, field_choices, field_default, field_least
from gemma_panel.data import Augmenter, DatasetError, ReadOptions, preview_augmentation
from gemma_panel.data.augment import OPS as AUGMENT_OPS
from gemma_panel.data.columns import ROLES
from gemma_panel.data.preflight import preflight, template_options
from gemma_panel.data.templates import suggested_template

from .data_checks import check_file, example_datasets, load_tokenizer, measure_tokens
from .jobs import Jobs
from .outputs import write, writing
from .server_paths import PathRefused, confine_data_path
from .uploads import UploadError, save_upload

AUTO, NONE = "(detected)", "(not used)"
__all__ = ["AUTO", "NONE", "DataModel", "example_datasets", "load_tokenizer"]


class DataModel(param.Parameterized):
    """Everything the Data tab shows, for one dataset at a time."""

    path = param.String(default="", doc="The dataset being looked at (a file on the server).")
    # The recipe fields this tab edits: their choices, defaults and bounds are the schema's.
    text_mode = param.Selector(default=field_default("data.text_mode"),
                               objects=list(field_choices("data.text_mode")))
    overrides = param.Dict(default={}, doc="Role -> column chosen by the user (None: unused).")
    template = param.Selector(default=field_default("data.template"),
                              objects=list(field_choices("data.template")))
    sequence_length = param.Integer(default=field_default("data.sequence_length"),
                                    bounds=(field_least("data.sequence_length"), None))
    model_source = param.String(default=field_default("model.source"),
                                doc="Whose tokenizer measures the tokens.")
    recipe = param.ClassSelector(class_=Recipe, default=None, allow_None=True,
                                 doc="The recipe whose other data settings the run uses.")

    # What the checks found: read-only outside the model (see outputs.py), like every
    # output below.
    columns = param.List(default=[], constant=True, doc="Column names found in the file.")
    mapping = param.Dict(default={}, constant=True,
                         doc="Role -> column, as detected and overridden.")
    preview = param.List(default=[], constant=True,
                         doc="The first rows as read, one dict per row.")
    thumbnails = param.List(default=[], constant=True, doc="The first image rows' "
                            "thumbnails: {row, images (data URIs; None: unreadable), more, text}.")
    report = param.Dict(default={}, constant=True,
                        doc="ValidationReport.to_dict() of the last check.")
    report_text = param.String(default="", constant=True)
    verdict = param.Dict(default={}, constant=True, doc="preflight(...).to_dict(): will the "
                         "run's data step pass with these settings? {} until checked.")
    token_stats = param.Dict(default={}, constant=True,
                             doc="TokenStatistics.summary(); {} until measured.")

    severity_filter = param.Selector(default="all", objects=["all", "error", "warning"])
    code_filter = param.String(default="all", doc="A problem code, or 'all'.")
    text_filter = param.String(default="", doc="Keep problems whose text contains this.")

    row_index = param.Integer(default=0, bounds=(0, None), allow_None=True,
                              doc="Which example to render (None, as a cleared box: the first).")
    rendered = param.List(default=[], constant=True,
                          doc="(text, trained) pieces of the rendered example.")
    rendered_by_token = param.Boolean(default=False, constant=True)
    examples = param.List(default=[], constant=True, precedence=-1)

    augment_ops = param.ListSelector(default=list(Augmenter.ops),  # back translation: a model
                                     objects=[op for op in AUGMENT_OPS if op != "back_translate"])
    augment_rate = param.Number(default=0.1, bounds=(0.01, 1.0))
    augment_copies = param.Integer(default=2, bounds=(1, 10))
    augment_seed = param.Integer(default=0)
    augmented = param.List(default=[], constant=True,
                           doc="Rows of original prompt, variant, operation.")

    status = param.String(default="Choose a dataset: upload one, pick an example or give a path.",
                          constant=True)
    error = param.String(default="", constant=True)
    busy = param.Boolean(default=False, constant=True)
    generation = param.Integer(default=0, constant=True, precedence=-1,
                               doc="Counts loads; stale jobs drop.")

    def __init__(self, jobs: Jobs | None = None, **params):
        super().__init__(**params)
        self.jobs = jobs or Jobs()
        self._tokens_gen = -1
        self._check_status = self._token_status = self._carried = ""
        self._carry, self._carried_template = False, None
        self._seen_uploads: set = set()

    # -- choosing a dataset -------------------------------------------------------------
    def upload(self, filename: str, content: bytes | str) -> None:
        """Store an uploaded file under GEMMA_PANEL_HOME (in a thread) and check it."""
        def refused(exc: BaseException) -> None:
            self.refuse_upload(str(exc) if isinstance(exc, UploadError) else repr(exc))

        write(self, busy=True, error="", status=f"Storing {filename} ...")
        self.jobs.submit("upload", lambda: save_upload(filename, content),
                         lambda path: self.load(str(path)), refused)

    def take_uploads(self, files: dict | None) -> None:
        """Store and check each of a file dropper's files (name -> content) not taken yet."""
        for name, content in (files or {}).items():
            key = (name, len(content))
            if key not in self._seen_uploads:  # the dropper keeps earlier files in its value
                self._seen_uploads.add(key)
                self.upload(name, content)

    def refuse_upload(self, reason: str) -> None:
        """Say why an upload was refused (nothing was stored); '' says nothing."""
        if reason:
            write(self, busy=False, status="Upload refused.", error=reason)

    def load(self, path: str) -> None:
        """Check a file on the server (an example, an upload, or a typed path)."""
        path = str(path).strip()
        if not path:
            return
        if "://" not in path and not path.startswith("tfds:"):
            try:  # a page may read only inside the data roots, whatever the path says
                confine_data_path(path)
            except PathRefused as exc:
                write(self, error=str(exc))
                return
            if not Path(path).is_file():
                write(self, error=f"{path}: no such file on the server")
                return
        with writing(self):
            self.overrides, self.columns, self.mapping = {}, [], {}
            self.path = path
        self._carry, self._carried = True, ""  # a new choice: its detected template is used
        self.refresh()

    @param.depends("text_mode", "template", "sequence_length", "model_source", "recipe",
                   watch=True)
    def refresh(self) -> None:
        """Check the current file again (after a mapping or setting changed)."""
        if not self.path:
            return
        with writing(self):
            self.generation += 1
            self.busy, self.error, self.verdict = True, "", {}
            self.status = f"Checking {Path(self.path).name} ..."
        gen, path, read = self.generation, self.path, self.read_options()
        template_name, seq = self.template, self.sequence_length
        recipe = self.run_recipe()
        self._check_status = self._token_status = ""

        def check():  # the file's own report, and the run's verdict on it
            return {**check_file(path, read, template_name, template_options(recipe)),
                    "verdict": preflight(recipe).to_dict()}

        self.jobs.submit("check", check, lambda out: self._checked(gen, out), self._failed)

        source = self.model_source
        if not source:
            write(self, token_stats={})
            self._token_status = "Token lengths: choose a model (Configure) to measure them."
            return

        def measure():
            out = measure_tokens(path, read, template_name, source, seq,
                                 template_options(recipe))
            return {**out, "verdict": preflight(recipe, load_tokenizer(source)).to_dict()}

        self.jobs.submit("tokens", measure, lambda out: self._measured(gen, out),
                         lambda exc: self._measure_failed(gen, exc))

    def set_column(self, role: str, column: str) -> None:
        """Map a role to a column (``AUTO``: as detected; ``NONE``: unused), then re-check."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        overrides = dict(self.overrides)
        if column == AUTO:
            overrides.pop(role, None)
        else:
            overrides[role] = None if column == NONE else column
        self.overrides = overrides
        self.refresh()

    def read_options(self) -> ReadOptions:
        return ReadOptions(text_mode=self.text_mode, columns=dict(self.overrides))

    def run_recipe(self) -> Recipe:
        """The recipe a run of this file would get: the base recipe with this tab's settings."""
        base = self.recipe or Recipe()
        data = dataclasses.replace(base.data, train_path=self.path, template=self.template,
                                   text_mode=self.text_mode, columns=dict(self.overrides),
                                   sequence_length=self.sequence_length)
        model = dataclasses.replace(base.model, source=self.model_source or base.model.source)
        return dataclasses.replace(base, data=data, model=model)

    # -- what the views show --------------------------------------------------------------
    @param.depends("report", "severity_filter", "code_filter", "text_filter")
    def problems(self) -> list[dict]:
        """The report's kept problems, filtered by severity, kind and text."""
        rows = []
        needle = self.text_filter.lower().strip()
        for kind in self.report.get("kinds", []):
            if self.code_filter not in ("all", kind["code"]):
                continue
            for p in kind["examples"]:
                if self.severity_filter not in ("all", p["severity"]):
                    continue
                row = {"severity": p["severity"], "kind": kind["title"],
                       "where": _where(p), "message": p["message"], "code": kind["code"]}
                if needle and needle not in " ".join(map(str, row.values())).lower():
                    continue
                rows.append(row)
        return rows

    def problem_kinds(self) -> list[dict]:
        """One row per kind: severity, title, count (all of them, not only those kept)."""
        return [{"severity": k["severity"], "kind": k["title"], "count": k["count"],
                 "code": k["code"]} for k in self.report.get("kinds", [])]

    @param.depends("row_index", "examples", watch=True)
    def _render_selected(self) -> None:
        if not self.examples:
            write(self, rendered=[], rendered_by_token=False)
            return
        index = min(self.row_index or 0, len(self.examples) - 1)
        with writing(self):
            self.rendered = self.examples[index]["pieces"]
            self.rendered_by_token = self.examples[index]["by_token"]

    def preview_augmentation(self) -> None:
        """Show what augmentation would make of the first rows (nothing is written)."""
        if not self.path:
            return
        try:
            augmenter = self._augmenter()
        except DatasetError as exc:
            write(self, error=str(exc))
            return
        path, read = self.path, self.read_options()

        def run():
            rows = []
            for original, variants in preview_augmentation(path, augmenter, rows=5, read=read):
                before = original.prompt if original.prompt is not None else original.text
                for v in variants:
                    after = v.prompt if v.prompt is not None else v.text
                    rows.append({"row": original.row, "original": before, "variant": after,
                                 "operation": v.augmentation})
            return rows

        write(self, status="Making augmentation previews ...")
        self.jobs.submit("augment", run, self._augmented, self._failed)

    def _augmenter(self) -> Augmenter:
        synonyms = None
        if {"synonym", "insert"} & set(self.augment_ops):
            from gemma_panel.data import wordnet_synonyms

            synonyms = wordnet_synonyms()
        return Augmenter(ops=tuple(self.augment_ops), rate=self.augment_rate,
                         copies=self.augment_copies, seed=self.augment_seed, synonyms=synonyms)

    # -- results, applied on the page's thread ------------------------------------------------
    def _checked(self, gen: int, out: dict) -> None:
        if gen != self.generation:
            return  # a newer check is on its way
        if self._carry_detected(out["report"]):
            return  # checked again with the template the data needs
        with writing(self):
            self.columns, self.preview = out["columns"], out["preview"]
            self.thumbnails = out.get("thumbnails", [])
            self.report, self.report_text = out["report"], out["text"]
            self.mapping = out["report"].get("columns", {})
            if self._tokens_gen != gen:  # token-level rendering, when it came first, stays
                self.examples = out["examples"]
            self.code_filter = "all"
        r = out["report"]
        self._check_status = (
            f"{Path(self.path).name}: {r['rows_read']} rows, {r['rows_usable']} usable, "
            f"{r['n_errors']} errors, {r['n_warnings']} warnings.")
        if self._tokens_gen != gen:  # the verdict with token lengths, when it came first, stays
            write(self, verdict=out["verdict"])
        self._show_status()

    def _carry_detected(self, report: dict) -> bool:
        """On a new dataset choice, use the template its detected task needs."""
        if not self._carry:
            return False
        self._carry = False
        task = report.get("task")
        if task is None or self.template == "auto" or self.template == (
                wanted := suggested_template(task)):
            return False
        self._carried = (f"Template set to {wanted}: {Path(self.path).name} is {task} data "
                         f"(it was {self.template}).")
        self._carried_template = wanted
        self.template = wanted  # re-checks, and reaches the recipe (Studio links them)
        return True

    def _measured(self, gen: int, out: dict) -> None:
        if gen != self.generation:
            return
        self._tokens_gen = gen
        with writing(self):
            self.token_stats, self.verdict = out["stats"], out["verdict"]
            if out["examples"]:
                self.examples = out["examples"]
        ts = out["stats"]
        self._token_status = (
            f"Tokens ({self.model_source}): mean {ts['total']['mean']:.0f}, max "
            f"{ts['total']['max']}, {ts['truncated_examples']} cut at {ts['sequence_length']}.")
        self._show_status()

    def _measure_failed(self, gen: int, exc: BaseException) -> None:
        if gen != self.generation:
            return
        write(self, token_stats={})
        self._token_status = f"Token lengths not measured: {exc}"
        self._show_status()

    def _show_status(self) -> None:
        waiting = [j for j in self.jobs.running if j in ("check", "tokens")]
        verdict = self.verdict.get("message", "")
        carried = self._carried if self.template == self._carried_template else ""
        parts = [carried, self._check_status or f"Checking {Path(self.path).name} ...",
                 (verdict[:1].upper() + verdict[1:].rstrip(".") + ".") if verdict else "",
                 self._token_status]
        if "tokens" in waiting:
            parts.append(f"Measuring tokens with {self.model_source}'s tokenizer ...")
        write(self, busy=bool(waiting), status=" ".join(p for p in parts if p))

    def _augmented(self, rows: list[dict]) -> None:
        write(self, augmented=rows,
              status=f"{len(rows)} augmented variants of the first rows (nothing written).")

    def _failed(self, exc: BaseException) -> None:
        write(self, busy=False, error=f"{type(exc).__name__}: {exc}"
              if not isinstance(exc, DatasetError) else str(exc))


def _where(problem: dict) -> str:
    parts = []
    if problem.get("line") is not None:
        parts.append(f"line {problem['line']}")
    elif problem.get("row") is not None:
        parts.append(f"row {problem['row']}")
    if problem.get("column"):
        parts.append(f"column {problem['column']!r}")
    return ", ".join(parts) or os.path.basename(problem.get("file") or "")
