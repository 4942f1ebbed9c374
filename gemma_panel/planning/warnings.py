"""Settings that will go wrong, said before the run: each a `Recommendation(kind="warning")`.

A learning rate far outside LoRA's range, more epochs than the data supports, a sequence
length that cuts most answers or drops their end-of-turn token, a chat template that is
not the model family's, and a run that will not fit the device.
"""

from __future__ import annotations

from gemma_panel.planning import memory, sources
from gemma_panel.planning.hardware import Hardware
from gemma_panel.planning.stats import DatasetStats

LORA_RATE_RANGE = (1e-5, 1e-3)  # 10x below 1e-4 to ~3x above 3e-4
FULL_RATE_MAX = 1e-4
MOST = 0.5
STOP_CUT_SHARE = 0.01  # more than 1% of answers without their stop token


def recipe_warnings(recipe, stats: DatasetStats | None, hardware: Hardware,
                    model: memory.ModelSize | None):
    """Warnings about the recipe as it is (not as recommended)."""
    from gemma_panel.planning.recommend import Recommendation

    found = [*_learning_rate(recipe), *_epochs(recipe, stats), *_length(recipe, stats),
             *_template(recipe, stats), *_fit(recipe, stats, hardware, model)]
    return [Recommendation(path, value, reason, source, kind="warning",
                           current=_current(recipe, path))
            for path, value, reason, source in found]


def _current(recipe, path):
    section, name = path.split(".")
    return getattr(getattr(recipe, section), name)


def _learning_rate(recipe):
    rate = recipe.train.learning_rate
    if recipe.lora.enabled:
        low, high = LORA_RATE_RANGE
        if not low <= rate <= high:
            effect = "nothing will be learned" if rate < low else \
                "the loss will spike or turn NaN"
            why = (f"a learning rate of {rate:g} is far outside LoRA's working range (about "
                   f"1e-4 to 3e-4): {effect}.")
            yield "train.learning_rate", 2e-4, why, sources.QLORA
    elif rate > FULL_RATE_MAX:
        why = (f"{rate:g} is a LoRA learning rate; full fine-tuning at it destroys what the "
               "model knew: use about 2e-5.")
        yield "train.learning_rate", 2e-5, why, sources.FULL_FT


def _epochs(recipe, stats):
    from gemma_panel.planning.recommend import epochs_for

    if not stats or not stats.examples or recipe.train.max_steps:
        return
    supported = max(3.0, 2 * epochs_for(stats.examples))
    if recipe.train.epochs > supported:
        why = (f"{recipe.train.epochs:g} epochs over {stats.examples:,} examples will "
               f"memorise them (more than {supported:g} rarely helps at this size).")
        yield "train.epochs", epochs_for(stats.examples), why, sources.LIMA


def _length(recipe, stats):
    if not stats or not stats.examples:
        return
    length = recipe.data.sequence_length
    cut = stats.cut_share(length)
    longer = -(-stats.percentile(99) // 64) * 64
    if cut > MOST:
        why = (f"data.sequence_length {length} cuts {cut:.0%} of the examples, so most "
               f"answers lose their ends; {longer} keeps 99% whole.")
        yield "data.sequence_length", longer, why, sources.DATA
    if cut > STOP_CUT_SHARE and stats.task != "completion":
        why = (f"{cut:.0%} of the answers are cut before their end-of-turn token, so the "
               "model is never shown where to stop after them and may ramble.")
        yield "data.sequence_length", longer, why, sources.DATA


def _template(recipe, stats):
    from gemma_panel.data.templates import family_mismatch, resolve_template
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(recipe.model.source)
    if spec is None:
        return
    task = stats.task if stats else None
    try:
        template = resolve_template(recipe.data.template, task, family=spec.family)
    except Exception:  # noqa: BLE001 - an unusable template is preflight's to report
        return
    problem = family_mismatch(template, spec.family)
    if problem:
        yield ("data.template", "auto", f"{problem}.", sources.TEMPLATES)


def _fit(recipe, stats, hardware: Hardware, model):
    if model is None or not hardware.memory_per_device:
        return
    length = recipe.data.sequence_length
    share = stats.answer_share(length, recipe.data.pack) if stats else 0.5
    strategy = "single" if hardware.count == 1 else "fsdp"
    estimate = memory.estimate_memory(model, memory.training_shape(recipe, share),
                                      hardware.backend, hardware.memory_per_device, strategy,
                                      hardware.count)
    if estimate.badge == "does not fit":
        why = (f"the run needs about {estimate.total / memory.GIB:.1f} GiB per device but "
               f"{hardware.name} has {hardware.memory_per_device / memory.GIB:.0f} GiB: it "
               "would end out of memory; see the memory table's remedies.")
        yield "train.batch_size", max(1, recipe.train.batch_size // 4), why, sources.DEVICES


__all__ = ["recipe_warnings"]
