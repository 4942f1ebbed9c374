"""`preflight`: a recipe's data checked exactly as its run will prepare it.

One function reads a recipe's data settings (file, columns, template, sequence length,
missing values, duplicates, split) into `prepare_dataset`: the worker calls it to
prepare the data it trains on, and the dashboard's Data tab, Configure tab and Start
button call it through `preflight` to say, before a run exists, whether that
preparation will succeed. The model enters through its tokenizer: without one, every
check but the token lengths is made.

Example:
    >>> verdict = preflight(load_recipe("recipes/classification.yaml"))
    >>> verdict.ok, verdict.template
    (True, 'classification')
    >>> preflight(load_recipe("recipes/classification.yaml", ["data.template=gemma"])).fix
    {'data.template': 'classification'}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_panel.data.check import ReadOptions
from gemma_panel.data.images import (
    PACKING_REFUSED,
    template_places_images,
    text_only_refusal,
)
from gemma_panel.data.prepare import PreparedDataset, prepare_dataset
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.templates import suggested_template
from gemma_panel.data.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from gemma_panel.config import Recipe


def read_options(recipe: Recipe) -> ReadOptions:
    """How the recipe's data files are read (plain-text mode, column overrides)."""
    d = recipe.data
    return ReadOptions(text_mode=d.text_mode, chunk_chars=d.chunk_chars,
                       columns=dict(d.columns))


def model_template_options(source: str | None) -> dict[str, Any]:
    """The chat-format options (``family``, ``empty_thought``) of a model source, read
    without loading it (`source_family`); empty when the source says nothing (a GGUF file:
    Gemma 3's format)."""
    from gemma_panel.models.registry import get_model_spec, source_family

    spec = get_model_spec(str(source or ""))
    if spec is not None:
        return spec.template_options()
    family = source_family(source)
    return {"family": family} if family else {}


def template_options(recipe: Recipe) -> dict[str, Any]:
    """What `resolve_template` needs besides the template's name: the model's family
    options and the recipe's ``data.thinking``."""
    return {**model_template_options(recipe.model.source), "thinking": recipe.data.thinking}


def prepare_recipe_data(recipe: Recipe, tokenizer: TextTokenizer | None = None,
                        **options: Any) -> PreparedDataset:
    """Read, check, split and tokenize the recipe's data as its run does.

    The data layer is told ``data.sequence_length`` as the user set it (its messages name
    it); what a sequence of that length holds is `tokens_per_sequence`'s to say.
    ``options`` go to `prepare_dataset` (e.g. ``output_dir``).

    Raises:
        DatasetError: the data would stop the run; its report says where and why.
    """
    d = recipe.data
    prepared = prepare_dataset(
        d.train_path, read=read_options(recipe), validation_path=d.validation_path,
        validation_fraction=d.validation_fraction, seed=d.seed, template=d.template,
        tokenizer=tokenizer, sequence_length=d.sequence_length, missing=d.missing,
        duplicates=d.duplicates, template_options=template_options(recipe), **options)
    _refuse_images(recipe, prepared)
    return prepared


IMAGE_FAMILIES = ("gemma3", "gemma4")  # whose images train (training/vision_inputs.py)


def _refuse_images(recipe: Recipe, prepared: PreparedDataset) -> None:
    """Image data that its run cannot train is refused up front, in words: a recipe that
    packs, or a registry model that reads text only (a folder's model is checked when
    it loads: training/vision.py). A template that puts no images in its prompts trains
    the text alone, and the report says so (``images_ignored``)."""
    report = prepared.report
    if not report.has("images"):
        return
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(str(recipe.model.source or ""))
    refusal = None
    if spec is not None and (spec.family not in IMAGE_FAMILIES or "image" not in spec.modalities):
        refusal = text_only_refusal(recipe.model.source, spec.keras_hub_presets,
                                    reads_images="image" in spec.modalities)
    if prepared.train and not template_places_images(prepared.template, prepared.train[0]):
        four = model_template_options(recipe.model.source).get("family") == "gemma4"
        chat = "gemma4 (Gemma 4's chat format)" if four else "gemma (Gemma 3's chat format)"
        how = (f"use data.template={chat} to train on them"
               if refusal is None else refusal.rstrip("."))  # the model cannot: say so
        report.warning("images_ignored", f"the template '{prepared.template.name}' puts no "
                       "images in its prompts, so the images are ignored and the text "
                       f"alone is trained; {how}")
        return
    message = PACKING_REFUSED if recipe.data.pack else refusal
    if message is None:
        return
    report.error("image_training", message.rstrip("."))
    raise DatasetError(f"{report.source}: {message}", report=report, code="image_training")


@dataclass(frozen=True)
class Verdict:
    """Whether a recipe's data passes preparation, and if not why, in one sentence.

    Args:
        ok: preparation succeeds (with `tokens_checked`, token lengths included).
        message: one sentence: what will be trained, or what stops it and what to do.
        fix: recipe field -> value that removes the problem (e.g. the template the data
            needs); empty when there is no one-field fix.
        tokens_checked: whether a tokenizer measured the examples.
    """

    ok: bool
    message: str
    task: str | None = None
    template: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    train_examples: int = 0
    validation_examples: int = 0
    fix: dict[str, Any] = field(default_factory=dict)
    tokens_checked: bool = False

    @property
    def ready(self) -> bool:
        """Ready to train: it passes, and token lengths were checked too."""
        return self.ok and self.tokens_checked

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ready": self.ready}


def preflight(recipe: Recipe, tokenizer: TextTokenizer | None = None) -> Verdict:
    """Prepare the recipe's data as its run will (writing nothing) and say how it went."""
    try:
        prepared = prepare_recipe_data(recipe, tokenizer)
    except DatasetError as exc:
        return _refused(recipe, exc, tokenizer is not None)
    name, task = prepared.template.name, prepared.mapping.task
    n_train, n_val = len(prepared.train), len(prepared.validation)
    checked = tokenizer is not None
    what = (f"{n_train} training and {n_val} validation examples ({task}, template "
            f"'{name}')")
    message = (f"ready to train: {what}" if checked else
               f"the data fits the recipe: {what}; token lengths are not checked yet "
               "(they need the model's tokenizer)")
    mismatch = next((p.message for p in prepared.report.problems
                     if p.code == "template_family"), None)
    if mismatch:
        message += f"; but {mismatch}"
    return Verdict(True, message, task, name, prepared.mapping.as_dict(), n_train, n_val,
                   tokens_checked=checked)


def _refused(recipe: Recipe, exc: DatasetError, checked: bool) -> Verdict:
    report = exc.report or ValidationReport(source=str(recipe.data.train_path))
    task, chosen = report.task, recipe.data.template
    fix: dict[str, Any] = {}
    if report.has("template_mismatch") and chosen != "auto" and task is not None:
        wanted = suggested_template(task)
        if wanted != chosen:
            fix = {"data.template": wanted}
    errors = [p for p in report.problems if p.severity == "error"]
    first = next((p for p in errors if p.code == "template_mismatch"), errors[0]) \
        if errors else None
    why = (_said(first) if first else str(exc).splitlines()[0]).rstrip(".")
    name = Path(str(recipe.data.train_path)).name
    if fix:
        message = (f"NOT ready to train: {name} is {task} data, which the "
                   f"'{chosen}' template cannot render ({why}): set data.template to "
                   f"{fix['data.template']}.")
    else:
        count = f"{report.n_errors} error(s) in the data; the first: " if report.n_errors \
            else ""
        message = f"NOT ready to train: {count}{why}; fix it, then check again."
    return Verdict(False, message, task, chosen, dict(report.columns or {}), fix=fix,
                   tokens_checked=checked)


def _said(problem) -> str:
    """A problem in words with its place in the file (the file itself is named apart)."""
    place = (f"line {problem.line}" if problem.line is not None else
             f"row {problem.row}" if problem.row is not None else Path(problem.file or "").name)
    return f"{place}: {problem.message}" if place else problem.message
