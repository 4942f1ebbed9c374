"""Checking an export by loading it back: logits, greedy generations, perplexity.

Every exporter loads what it wrote with the consumer that will use it (KerasHub, TensorFlow,
transformers, the gguf reader) and records numbered checks in a :class:`Verification`, which
goes into the manifest. A check that fails makes the export fail: nothing is moved into place.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemma_panel.export.manifest import ExportError

# A fixed probe: plain English with digits and punctuation, so common and rare pieces both
# appear. The first tokens of the tuned model's answer are compared, not a whole text.
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. In 1905, Einstein wrote"
PROBE_TOKENS = 24


class VerificationError(ExportError):
    """An export that was written but did not load back as the model it came from."""


@dataclass
class Verification:
    """The checks one export went through; ``passed`` only if every one passed."""

    checks: list[dict] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str = "", **values) -> bool:
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail, **values})
        return bool(passed)

    def note(self, name: str, detail: str = "", **values) -> None:
        """A measurement that is reported but judges nothing (sizes, perplexities)."""
        self.checks.append({"name": name, "passed": True, "detail": detail, "measured": True,
                            **values})

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)

    def failures(self) -> list[dict]:
        return [c for c in self.checks if not c["passed"]]

    def require(self, what: str) -> None:
        """Raise ``VerificationError`` naming every failed check."""
        failed = self.failures()
        if failed:
            lines = "; ".join(f"{c['name']}: {c['detail']}" for c in failed)
            if all(c["name"].endswith("_carries_lora") for c in failed):
                then = ("The fine-tune's change does not stand out from this format's own "
                        "error: export a finer type (f32, f16 or q8_0), or tune longer or at a "
                        "higher learning rate.")
            else:
                then = ("This is a bug in the exporter or in the consumer's version; please "
                        "report it with the run's recipe.")
            raise VerificationError(
                f"The {what} export was written but did not load back as the model: {lines}. "
                f"Nothing was kept. {then}")

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": self.checks}


def probe_ids(lm, length: int = PROBE_TOKENS) -> np.ndarray:
    """Token ids (1, length) of the probe text with BOS, from the model's own tokenizer."""
    tokenizer = lm.preprocessor.tokenizer
    ids = [int(i) for i in np.asarray(tokenizer(PROBE_TEXT)).reshape(-1)]
    bos = tokenizer.start_token_id
    ids = ([bos] if bos is not None else []) + ids
    while len(ids) < length:  # tiny test tokenizers cut the probe into fewer pieces
        ids = ids + ids[1:]
    return np.array([ids[:length]], dtype="int32")


def keras_logits(lm, ids: np.ndarray, padding_mask: np.ndarray | None = None) -> np.ndarray:
    """Float32 logits (batch, length, vocabulary) of a KerasHub causal LM (or a reloaded one)."""
    return np.asarray(lm(logits_inputs(lm, ids, padding_mask), training=False),
                      dtype=np.float32)


def logits_inputs(lm, ids: np.ndarray, padding_mask: np.ndarray | None = None) -> dict:
    """The inputs ``lm`` takes for text ``ids``: the padding mask (all ones by default), the
    positions a Gemma 4 takes as input, and no images for a model with a vision tower."""
    mask = np.asarray(np.ones_like(ids) if padding_mask is None else padding_mask, "int32")
    inputs = {"token_ids": np.asarray(ids, "int32"), "padding_mask": mask}
    if "position_ids" in getattr(lm.backbone, "input", {}):  # Gemma 4 takes them as input
        inputs["position_ids"] = np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype("int32")
    return inputs | no_images(lm.backbone, mask.shape)


def no_images(backbone, shape: tuple[int, int]) -> dict:
    """The inputs a backbone with a vision tower takes besides the text, for text alone:
    no image (every image axis of length 0) and per-token masks of zeros. The exports'
    checks run text through the model, as the consumers of a text export do."""
    spec = getattr(backbone, "input", None)
    if not isinstance(spec, dict):
        return {}
    out = {}
    for name, tensor in spec.items():
        if name in ("token_ids", "padding_mask", "position_ids"):
            continue
        if name.endswith("_mask") and len(tensor.shape) == 2:  # one entry per token
            out[name] = np.zeros(shape, "int32")
            continue
        dims = [shape[0]] + [0 if d is None else d for d in tensor.shape[1:]]
        if all(d for d in tensor.shape[2:]):  # (batch, count, fixed...): no entry at all
            dims[1] = 0
        patch = getattr(getattr(backbone, "vision_encoder", None), "patch_size", None)
        if name == "pixel_values" and tensor.shape[-1] is None and patch:  # Gemma 4's patches
            dims[-1] = 3 * patch * patch
        out[name] = np.zeros(dims, tensor.dtype)
    return out


def torch_logits(model, ids: np.ndarray, padding_mask: np.ndarray | None = None) -> np.ndarray:
    import torch

    kwargs = {}
    if padding_mask is not None:
        kwargs["attention_mask"] = torch.tensor(np.asarray(padding_mask, dtype="int64"))
    with torch.no_grad():
        out = model(input_ids=torch.tensor(np.asarray(ids, dtype="int64")), **kwargs)
    return out.logits.float().numpy()


def compare_logits(verification: Verification, name: str, ours: np.ndarray,
                   theirs: np.ndarray, tolerance: float) -> bool:
    """Record max |difference| against ``tolerance`` and the top-1 agreement."""
    diff = float(np.abs(ours - theirs).max())
    top1 = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    return verification.check(
        name, diff <= tolerance,
        f"max |logit difference| {diff:.3g} (tolerance {tolerance:g}), top-1 agreement "
        f"{top1:.3f}", max_abs_diff=diff, tolerance=tolerance, top1_agreement=top1)


# "LoRA carried": the export must sit closer to the tuned model than to the base model, in
# its consumer, by more than this many times the consumer's error measured on the base
# model (see carries_lora). 2 is the least k at which an export that dropped the LoRA (the
# base export itself, whose margin is at most 2 x noise - effect) can never pass, whatever
# the size of the effect; 3 refused a real q4_0 export of a lightly tuned 270M (margin 1.55,
# 3 x noise 1.87, measured by pytest tests/export/test_exports_270m.py).
LORA_MARGIN_K = 2.0


@dataclass
class LoraBase:
    """The base model of a LoRA run: its Keras logits on the probe and a merged-free copy that
    each exporter writes and loads the same way as the export, to measure its consumer."""

    logits: np.ndarray
    model: Any = None


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(values, dtype=np.float64)))))


def centred(logits: np.ndarray) -> np.ndarray:
    """Logits less each position's mean over the vocabulary: the softmax ignores a constant
    added to one position's logits, so such a shift is neither LoRA nor noise."""
    values = np.asarray(logits, dtype=np.float64)
    return values - values.mean(-1, keepdims=True)


def along(values: np.ndarray, direction: np.ndarray) -> float:
    """The component of ``values`` along ``direction``, in RMS units of the probe's logits."""
    v = np.asarray(values, dtype=np.float64).ravel()
    d = np.asarray(direction, dtype=np.float64).ravel()
    return float(v @ d / (np.linalg.norm(d) * np.sqrt(d.size)))


def carries_lora(verification: Verification, name: str, exported: np.ndarray,
                 tuned: np.ndarray, base: np.ndarray, consumer_base: np.ndarray,
                 k: float = LORA_MARGIN_K) -> bool:
    """The export is measurably closer to the tuned model than to the base, in its consumer.

    Every logit vector is first ``centred`` per position. Measured along the LoRA's effect on
    the probe, ``effect = tuned - base`` (Keras logits):
    the export sits at ``p = along(exported - base, effect)``; the tuned model at
    ``rms(effect)``, the base at 0. So ``d_tuned = |rms(effect) - p|``, ``d_base = |p|``.
    ``consumer_base`` is the base model written and loaded exactly as the export was (same
    format, file type and runtime): its own error along the same direction,
    ``noise = |along(consumer_base - base, effect)|``, is how far the consumer alone (runtime
    noise; for a quantized file its quantization error) moves a model along it. Passes when
    ``d_base - d_tuned > k * noise`` (and the noise is at least float32 rounding).

    An export whose LoRA was dropped is the base export: ``p`` is the noise itself, so
    ``d_base - d_tuned = 2 * noise - rms(effect)`` and it fails. (Across the whole logits a
    quantized file's error can exceed the LoRA's effect; only its part along the effect can
    pass for the LoRA, so that is what is compared.) The whole-vector RMS distances are
    recorded beside.
    """
    exported, tuned, base, consumer_base = (centred(x) for x in (exported, tuned, base,
                                                                 consumer_base))
    effect = tuned - base
    size = rms(effect)
    if size == 0.0:
        return verification.check(name, False, "the LoRA does not change the tuned model's "
                                  "logits, so no export can show it", lora_effect=0.0)
    position = along(exported - base, effect)
    d_tuned, d_base = abs(size - position), abs(position)
    noise = max(abs(along(consumer_base - base, effect)), 1e-6 * rms(tuned))
    bound, margin = k * noise, d_base - d_tuned
    return verification.check(
        name, margin > bound,
        f"along the LoRA's effect (RMS {size:.3g} on the probe's logits) the export is "
        f"{d_tuned:.3g} from the tuned model and {d_base:.3g} from the base; margin "
        f"{margin:.3g} must exceed {k:g} x the consumer's own error on the base model "
        f"({noise:.3g}) = {bound:.3g}, else the LoRA is not measurably in the export",
        lora_effect=size, carried_fraction=position / size, d_tuned=d_tuned, d_base=d_base,
        noise=noise, margin=margin, bound=bound,
        rms_from_tuned=rms(exported - tuned), rms_from_base=rms(exported - base),
        rms_consumer_error_on_base=rms(consumer_base - base))


def consumer_on_base(folder, write_and_load: Callable[[Path], np.ndarray]) -> np.ndarray:
    """Logits of the base model written and loaded by ``write_and_load(scratch)`` as the export
    was; the scratch folder inside the staging folder is removed whatever happens."""
    scratch = Path(folder) / ".base-check"
    scratch.mkdir()
    try:
        return np.asarray(write_and_load(scratch), dtype=np.float32)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_carries_lora(verification: Verification, name: str, folder, exported, tuned,
                       base: LoraBase | None, write_and_load) -> None:
    """``carries_lora`` for a LoRA run (nothing for a fully tuned one), measuring the base
    in the consumer with ``write_and_load``."""
    if base is None:
        return
    consumer_base = consumer_on_base(folder, write_and_load)
    carries_lora(verification, name, exported, tuned, base.logits, consumer_base)


def keras_greedy(lm, ids: np.ndarray, new_tokens: int) -> list[int]:
    """Greedy continuation through KerasHub's own ``generate`` (compiled, with a KV cache)."""
    plain = type(lm)(backbone=lm.backbone, preprocessor=None)
    plain.compile(sampler="greedy")
    length = ids.shape[1] + new_tokens
    token_ids = np.zeros((1, length), dtype="int32")
    token_ids[:, : ids.shape[1]] = ids
    mask = np.zeros((1, length), dtype="bool")
    mask[:, : ids.shape[1]] = True
    # KerasHub's compiled generate function directly: ``generate()`` itself fails on Gemma 3
    # without a preprocessor (it concatenates the ``images: None`` it returns).
    generate = plain.make_generate_function()
    out = generate({"token_ids": token_ids, "padding_mask": mask}, stop_token_ids=None)
    return [int(t) for t in np.asarray(out["token_ids"])[0][:length]]


def torch_greedy(model, ids: np.ndarray, new_tokens: int) -> list[int]:
    """Greedy continuation through transformers' ``generate``; it never stops early."""
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(np.asarray(ids, dtype="int64")),
            attention_mask=torch.ones(ids.shape, dtype=torch.long),
            do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            top_k=None, top_p=None, temperature=None,
        )
    return [int(t) for t in out[0].tolist()]


def perplexity(logits_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], sequences,
               batch_size: int = 1) -> float | None:
    """Perplexity over the loss positions of ``sequences`` (unpacked, see batches.py).

    ``logits_fn(inputs, padding_mask)`` returns float logits (batch, length, vocabulary).
    """
    if sequences is None or len(sequences) == 0:
        return None
    total = count = 0.0
    for start in range(0, len(sequences), batch_size):
        part = sequences.take(np.arange(start, min(start + batch_size, len(sequences))))
        mask = (part.segment_ids > 0).astype("int32")
        logits = np.asarray(logits_fn(part.inputs, mask), dtype=np.float64)
        top = logits.max(-1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
        picked = np.take_along_axis(logits, part.targets[..., None].astype("int64"), -1)[..., 0]
        weights = part.loss_mask.astype(np.float64)
        total += float(((lse - picked) * weights).sum())
        count += float(weights.sum())
    if count == 0:
        return None
    return float(np.exp(min(total / count, 50.0)))


def note_perplexity_change(verification: Verification, reference: float | None,
                           exported: float | None, what: str) -> None:
    """Report the validation perplexity before and after (quantized exports)."""
    if reference is None or exported is None:
        verification.note("validation_perplexity",
                          "not measured: no validation data was given with the export")
        return
    change = exported - reference
    verification.note(
        "validation_perplexity",
        f"{what}: {exported:.4f} vs {reference:.4f} for the tuned model "
        f"({change:+.4f}, {100 * change / reference:+.2f}%)",
        tuned=reference, exported=exported, change=change,
        relative_change=change / reference)
