"""Recommended settings from the data, the model and the hardware, each with its reason.

``recommend(recipe, stats, hardware)`` returns `Recommendation`s: ``kind="setting"`` for a
recipe field (its path, the value, one sentence why, and where the rule comes from),
``kind="warning"`` for a setting that will go wrong (warnings.py), and ``kind="note"`` for
advice the default already follows (the distribution strategy: 'auto' picks it).

Example:
    >>> recs = recommend(recipe, DatasetStats.of_prepared(prepared), "tpu-v5e:8")
    >>> next(r for r in recs if r.field == "train.epochs").reason
    '314 examples: 3 epochs; with fewer than 1,000 examples, more passes help ...'
"""

from __future__ import annotations

import dataclasses

from gemma_panel.planning import memory, sources
from gemma_panel.planning.advice import Context as _Context
from gemma_panel.planning.advice import Recommendation
from gemma_panel.planning.advice import setting as _setting
from gemma_panel.planning.hardware import HardwareError, as_hardware
from gemma_panel.planning.stats import DatasetStats

ALL_TARGETS = ["query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2",
               "ffw_linear"]
SEQUENCE_MULTIPLE = 64
EVALUATIONS_PER_RUN = 10
PADDING_WORTH_PACKING = 0.25


def recommend(recipe, stats: DatasetStats | None, hardware=None,
              model: memory.ModelSize | None = None) -> list[Recommendation]:
    """Settings for this recipe's data and hardware, then warnings about the recipe as is.

    Args:
        stats: the training data's token lengths (None: only the data-free rules).
        hardware: a `Hardware`, a `DeviceReport`, a profile name (``"l4"``, ``"tpu-v5e:8"``)
            or None (this machine's CPU).
        model: the model's size; None reads the registry entry of ``model.source``.
    """
    from gemma_panel.planning.warnings import recipe_warnings

    hw = as_hardware(hardware)
    if model is None:
        model = _registry_size(recipe.model.source)
    ctx = _Context(recipe, stats, hw, model, {})
    out: list[Recommendation] = []
    rules = (_sequence_length, _packing, _epochs, _precision, _memory_mode, _batch,
             _learning_rate, _warmup, _lora, _evaluation, _distribution)
    # precision, then the memory mode, before the batch that fits
    for rule in rules:
        for rec in rule(ctx):
            if rec.field and rec.kind == "setting":
                ctx.values[rec.field] = rec.value
                rec = dataclasses.replace(rec, current=_current(recipe, rec.field))
            out.append(rec)
    return out + recipe_warnings(recipe, stats, hw, model)


def _current(recipe, path: str):
    section, name = path.split(".")
    return getattr(getattr(recipe, section), name)


def _registry_size(source: str) -> memory.ModelSize | None:
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(source)
    return memory.ModelSize.of_spec(spec) if spec else None


def _count(n: int) -> str:
    return f"{n:,} example{'s' * (n != 1)}"


# -- data ---------------------------------------------------------------------------------
def _sequence_length(ctx: _Context):
    s = ctx.stats
    if not s or not s.examples:
        return []
    p99 = s.percentile(99)
    length = max(SEQUENCE_MULTIPLE, -(-p99 // SEQUENCE_MULTIPLE) * SEQUENCE_MULTIPLE)
    context = _context_length(ctx.recipe.model.source)
    if context and length > context:
        length = context
    cut = s.cut_share(length)
    yield _setting("data.sequence_length", length,
                   f"99% of examples are at most {p99} tokens, so {length} keeps them whole "
                   f"({cut:.1%} cut); memory and time grow with the length.", sources.DATA)


def _context_length(source: str) -> int | None:
    from gemma_panel.models.registry import get_model_spec

    spec = get_model_spec(source)
    return spec.context_length if spec else None


def _packing(ctx: _Context):
    s = ctx.stats
    if not s or not s.examples:
        return []
    length = ctx.get("data.sequence_length")
    padding = 1 - s.kept_tokens(length) / (s.examples * (length + 1))
    pack = padding > PADDING_WORTH_PACKING
    rows = s.sequences(length, True)
    why = (f"unpacked, {padding:.0%} of every sequence would be padding; packed, the "
           f"{_count(s.examples)} fill {rows:,} sequences instead of {s.examples:,}"
           if pack else f"only {padding:.0%} of each sequence would be padding, so packing "
           "saves little")
    yield _setting("data.pack", pack, why + ".", sources.PACKING)


# -- schedule -----------------------------------------------------------------------------
def epochs_for(examples: int) -> float:
    """Passes over the data by dataset size (the rule ``recommend`` and the warning share)."""
    if examples < 100:
        return 5.0
    if examples < 1_000:
        return 3.0
    if examples < 10_000:
        return 2.0
    return 1.0


def _epochs(ctx: _Context):
    n = ctx.examples
    if not n:
        return []
    epochs = epochs_for(n)
    if n < 100:
        why = (f"{_count(n)}: {epochs:.0f} epochs; so few examples need several passes, and "
               "validation loss will soon turn up, so keep early stopping on.")
        source = sources.LIMA
    elif n < 1_000:
        why = (f"{_count(n)}: {epochs:.0f} epochs; with fewer than 1,000 examples, more passes "
               "help until validation loss turns up.")
        source = f"{sources.LIMA}; {sources.QLORA_GUIDES}"
    elif n < 10_000:
        why = f"{_count(n)}: {epochs:.0f} epochs; a second pass still helps at this size."
        source = sources.QLORA_GUIDES
    else:
        tokens = ctx.stats.trained_tokens(ctx.get("data.sequence_length"))
        why = (f"{_count(n)} ({tokens:,} trained tokens): one pass is enough; the data, not "
               "more passes over it, is what the model learns from.")
        source = sources.CHINCHILLA
    yield _setting("train.epochs", epochs, why, source)


def _effective_batch(ctx: _Context) -> int:
    n = ctx.examples
    target = 4 if n < 100 else 8 if n < 10_000 else 16 if n < 100_000 else 32
    rows = ctx.stats.sequences(ctx.get("data.sequence_length"), ctx.get("data.pack"))
    room = max(1, rows // 8)  # at least ~8 updates per epoch
    return _pow2_floor(min(target, room))


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _batch(ctx: _Context):
    if not ctx.examples:
        return []
    effective = _effective_batch(ctx)
    batch = _fitting_batch(ctx, effective)
    accumulation = max(1, effective // batch)
    place = ("on a CPU a bigger batch is not faster per token"
             if ctx.hardware.backend == "cpu" else
             f"{batch} sequences is the largest power of two that fits the memory")
    yield _setting("train.batch_size", batch,
                   f"an effective batch of {effective} suits {_count(ctx.examples)}; {place}.",
                   sources.QLORA)
    yield _setting("train.gradient_accumulation", accumulation,
                   f"{batch} x {accumulation} gives the effective batch of {effective} at the "
                   "memory of one batch.", sources.ACCUMULATION)


def _fitting_batch(ctx: _Context, effective: int) -> int:
    devices = ctx.hardware.count
    floor = max(1, devices)
    cap = 4 if ctx.hardware.backend == "cpu" else effective
    batch = max(floor, min(effective, cap))
    while batch > floor and ctx.model and _badge(ctx, batch) != "fits":
        batch //= 2
    return max(floor, batch)


def _badge(ctx: _Context, batch: int, strategy: str | None = None) -> str:
    return _estimate(ctx, batch, strategy).badge


def _estimate(ctx: _Context, batch: int | None = None, strategy: str | None = None):
    recipe = ctx.recipe
    length = ctx.get("data.sequence_length")
    share = ctx.stats.answer_share(length, ctx.get("data.pack")) if ctx.stats else 0.5
    run = dataclasses.replace(memory.training_shape(recipe, share), sequence_length=length,
                              batch_size=batch or ctx.get("train.batch_size"),
                              dtype=ctx.get("model.dtype"),
                              base_weights=ctx.get("memory.base_weights"),
                              remat=ctx.get("memory.remat"))
    hw = ctx.hardware
    strategy = strategy or ("single" if hw.count == 1 else "data_parallel")
    return memory.estimate_memory(ctx.model, run, hw.backend, hw.memory_per_device, strategy,
                                  hw.count)


def _learning_rate(ctx: _Context):
    if not ctx.get("lora.enabled"):
        yield _setting("train.learning_rate", 2e-5,
                       "full fine-tuning changes every weight, so it wants about 10x less than "
                       "LoRA's 2e-4.", sources.FULL_FT)
        return
    big = ctx.model is not None and ctx.model.params >= 20_000_000_000
    rate = 1e-4 if big else 2e-4
    size = "models above 20B parameters" if big else "models of this size"
    yield _setting("train.learning_rate", rate,
                   f"LoRA trains well at {rate:g} for {size}; higher risks loss spikes, lower "
                   "learns slowly.", sources.QLORA)


def _warmup(ctx: _Context):
    total = ctx.total_steps()
    if not total:
        return []
    warmup = min(max(1, round(0.03 * total)), max(0, total - 1))
    yield _setting("train.warmup_steps", warmup,
                   f"3% of the run's {total} steps lets Adam's statistics settle before full-size "
                   "updates.", sources.QLORA)


# -- LoRA ---------------------------------------------------------------------------------
def _lora(ctx: _Context):
    if not ctx.get("lora.enabled") or not ctx.examples:
        return []
    n, task = ctx.examples, ctx.stats.task
    if task == "classification":
        rank, targets = 4, ["query", "value"]
        why = "choosing a label needs little capacity, so a small adapter on query and value"
        source = sources.KERAS_GEMMA
    elif n < 1_000:
        rank, targets = 8, ["query", "value"]
        why = f"with {_count(n)}, a small adapter on query and value learns the style " \
              "without memorising the data"
        source = sources.LORA
    else:
        rank = 16 if n < 100_000 else 32
        targets = list(ALL_TARGETS)
        why = f"{_count(n)} can teach more, and adapting every projection matches full " \
              "fine-tuning best"
        source = sources.QLORA
    yield _setting("lora.rank", rank, f"rank {rank}: {why}.", source)
    yield _setting("lora.alpha", float(2 * rank),
                   f"alpha = 2 x rank ({2 * rank}) keeps the update scale alpha/rank at 2 "
                   "whatever the rank.", sources.QLORA_GUIDES)
    yield _setting("lora.target_layers", targets,
                   f"{', '.join(targets)}: {why}.", source)


# -- evaluation ---------------------------------------------------------------------------
def _evaluation(ctx: _Context):
    total = ctx.total_steps()
    if not total:
        return []
    every = max(1, total // EVALUATIONS_PER_RUN)
    evaluations = total // every
    yield _setting("eval.every_steps", every,
                   f"every {every} of {total} steps gives about {evaluations} points on the "
                   "validation curve, enough to see overfitting without slowing the run.",
                   sources.EVAL_CADENCE)
    if evaluations >= 6 and ctx.get("train.epochs") > 1:
        yield _setting("eval.early_stopping_patience", 3,
                       "stop after 3 evaluations without a better validation loss; the best "
                       "checkpoint is kept.", sources.PRECHELT)
    else:
        yield _setting("eval.early_stopping_patience", None,
                       f"{evaluations} evaluations in one pass are too few to stop early "
                       "safely.", sources.PRECHELT)


# -- hardware -----------------------------------------------------------------------------
def _precision(ctx: _Context):
    hw = ctx.hardware
    if not hw.bf16_fast:
        yield _setting("model.dtype", "float32",
                       f"{hw.backend.upper()}: bfloat16 is not faster here, and float32 is "
                       "exact.", sources.DEVICES)
    else:
        ctx.values["model.dtype"] = "mixed_bfloat16"
        dtype = "mixed_bfloat16" if ctx.model is None or _leanest_badge(ctx) == "fits" \
            else "bfloat16"
        yield _setting("model.dtype", dtype,
                       f"{hw.name} computes bfloat16 natively; {dtype} halves activation "
                       "memory" + (" and the weights" if dtype == "bfloat16" else "")
                       + " at a tiny precision cost.", sources.MIXED)


MEMORY_MODES = (  # (base_weights, remat), cheapest in quality first
    ("float32", False), ("float32", True), ("bfloat16", True), ("int8", True))


def _leanest_badge(ctx: _Context) -> str:
    """The badge with the leanest memory mode, which costs less in quality than bfloat16
    weights (the order of memory.py's remedies); the memory-mode rule then picks the mode."""
    base, remat = MEMORY_MODES[-1] if ctx.get("lora.enabled") else MEMORY_MODES[1]
    saved = dict(ctx.values)
    ctx.values |= {"memory.base_weights": base, "memory.remat": remat}
    try:
        return _estimate(ctx).badge
    finally:
        ctx.values = saved


def _memory_mode(ctx: _Context):
    """The first memory mode (no change, remat, bfloat16 then int8 base weights) in which the
    smallest batch fits each device under the leanest strategy the devices allow."""
    if ctx.model is None:
        return []
    hw = ctx.hardware
    strategy = "fsdp" if hw.count > 1 else "single"
    modes = MEMORY_MODES if ctx.get("lora.enabled") else MEMORY_MODES[:2]
    for base, remat in modes:
        ctx.values |= {"memory.base_weights": base, "memory.remat": remat}
        estimate = _estimate(ctx, max(1, hw.count), strategy)
        if estimate.badge in ("fits", "unknown"):
            break
    where = f"about {estimate.total / memory.GIB:.1f} GiB per device" + (
        f" of {hw.name}'s {hw.memory_per_device / memory.GIB:.0f} GiB"
        if hw.memory_per_device else "")
    mode = " and ".join(f"memory.{k}" for k, on in (("remat=true", remat),
                                                     (f"base_weights={base}", base != "float32"))
                        if on)
    if (base, remat) == MEMORY_MODES[0]:
        why = f"the run fits without smaller base weights or recomputation ({where})"
    elif estimate.badge == "does not fit":
        why = f"even with {mode} it needs {where}: see the memory table's remedies"
    else:
        why = f"the run does not fit without {mode}; with {mode}, {where}"
    yield _setting("memory.remat", remat,
                   (f"recompute each block in the backward pass (no quality cost, about 30% "
                    f"slower): {why}." if remat else f"keep every block's activations: {why}."),
                   sources.DEVICES)
    yield _setting("memory.base_weights", base,
                   (f"int8 frozen base weights (a quarter of the memory, loss moves ~1%, "
                    f"the QLoRA recipe): {why}." if base == "int8" else
                    f"bfloat16 frozen base weights (half the memory, loss moves ~0.01%): "
                    f"{why}." if base == "bfloat16" else
                    f"frozen weights unquantized, as model.dtype stores them: {why}."),
                   sources.QLORA if base == "int8" else sources.DEVICES)


def _distribution(ctx: _Context):
    hw = ctx.hardware
    if hw.count <= 1:
        strategy, why = "single", "one device"
    elif ctx.model is None or _estimate(ctx, strategy="data_parallel").badge == "fits":
        strategy, why = "data_parallel", f"the model fits each of the {hw.count} devices"
    elif _estimate(ctx, strategy="fsdp").badge != "does not fit":
        strategy = "fsdp"
        why = f"the model does not fit one device, but does split over {hw.count}"
    else:
        strategy, why = "model_parallel", "even fsdp does not fit"
    yield Recommendation("distribution.strategy", strategy,
                         f"{why}: {strategy} (the default, 'auto', chooses by the same rule; "
                         "set distribution.strategy only to force another).", sources.DISTRIBUTION, kind="note")


__all__ = ["HardwareError", "Recommendation", "epochs_for", "recommend"]
