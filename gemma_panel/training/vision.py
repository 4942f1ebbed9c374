"""Training on images and text: KerasHub's Gemma 3 vision tower, one example per row.

KerasHub's ``Gemma3CausalLMPreprocessor`` (with its image converter) does the layout: each
``<start_of_image>`` in the prompt becomes ``\\n\\n<start_of_image>``, then
``num_vision_tokens_per_image`` ``<img>`` placeholder tokens, then ``<end_of_image>\\n\\n``;
it returns the images resized and scaled, ``vision_indices`` (where the vision encoder's
output replaces the placeholders' embeddings), ``vision_mask`` (those tokens attend to each
other both ways) and a loss weight that is 1 on the response only.

The packed text step (``step.py``) puts several examples in a row and attends by segment;
KerasHub places vision tokens by their index in the row and gives them bidirectional
attention there, which segment attention does not compose with. So image data is trained
unpacked: a padded row per example (``data.pack=false``; a recipe that packs is refused),
one micro-batch per step, with the same optimizer, LoRA and LM-head loss as ``step.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gemma_panel.config import Recipe
from gemma_panel.data.check import ReadOptions
from gemma_panel.data.columns import detect_columns
from gemma_panel.data.images import (
    IMAGE_TOKEN,
    LLAVA_PLACEHOLDER,
    PACKING_REFUSED,
    ImageRefused,
    image_column,
    resolve_image,
    row_image_refs,
)
from gemma_panel.data.readers import open_records
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.templates import USER_TURN, GemmaChatTemplate, render_text
from gemma_panel.data.validate import RowValidator
from gemma_panel.errors import UserError
from gemma_panel.training.remat import remat_blocks
from gemma_panel.training.step import TrainFunctions, head_loss


@dataclass
class ImageExample:
    """One image-text example as the preprocessor takes it.

    Args:
        prompt: the rendered prompt (user turn and the model turn's opening), with one
            ``<start_of_image>`` where each image goes.
        response: the answer and its end-of-turn text: the only part with loss.
        images: the image files, in the order of their tokens.
    """

    prompt: str
    response: str
    images: list[Path] = field(default_factory=list)
    row: int = 0


def refuse_packing(recipe: Recipe) -> None:
    """Image data trains one example per row: a recipe that packs is refused, in words."""
    if recipe.data.pack:
        raise UserError(PACKING_REFUSED)


def refuse_text_only(causal_lm) -> None:
    """A causal LM without a vision tower (a ``*_text`` preset, Gemma 3 1B/270M) cannot see
    the images: refuse it, in words."""
    preprocessor = getattr(causal_lm, "preprocessor", None)
    if getattr(preprocessor, "image_converter", None) is None or \
            getattr(causal_lm.backbone, "vision_encoder", None) is None:
        raise UserError("this model has no vision tower, so it cannot see the images: load a "
                        "Gemma 3 preset with one (e.g. gemma3_instruct_4b, not "
                        "gemma3_instruct_4b_text).")


def read_image_examples(path: str | os.PathLike, read: ReadOptions | None = None,
                        template: GemmaChatTemplate | None = None) -> list[ImageExample]:
    """Every usable row of an image dataset, rendered with Gemma's chat format.

    LLaVA's ``<image>`` placeholders become ``<start_of_image>``; a row whose text marks no
    place gets its images at the start of the first user turn. In a multi-turn
    conversation only the last answer carries loss (KerasHub's preprocessor takes one
    prompt and one response); the earlier turns are prompt. Run the data check first:
    rows with problems are skipped here, not explained.
    """
    read, template = read or ReadOptions(), template or GemmaChatTemplate()
    report = ValidationReport(source=os.fspath(path))
    records = open_records(path, report, format=read.format, encoding=read.encoding,
                           delimiter=read.delimiter)
    head = list(itertools.islice(records, 100))
    columns = list(dict.fromkeys(k for r in head for k in r.values))
    mapping = detect_columns(columns, read.columns)
    validator = RowValidator(report, mapping, tools=read.tools)
    column, base = image_column(columns), Path(os.fspath(path)).parent
    out = []
    for record in itertools.chain(head, records):
        example = None if record.broken else validator.check(record)
        if example is None:
            continue
        try:
            images = [resolve_image(r, base) for r in
                      row_image_refs(record.values, column, mapping.messages)]
        except ImageRefused:
            continue
        segments = template.segments(example)
        prompt = render_text(segments[:-1]).replace(LLAVA_PLACEHOLDER, IMAGE_TOKEN)
        missing = len(images) - prompt.count(IMAGE_TOKEN)
        if missing > 0:
            prompt = prompt.replace(USER_TURN, USER_TURN + IMAGE_TOKEN * missing, 1)
        out.append(ImageExample(prompt, render_text(segments[-1:]), images, record.row))
    if not out:
        raise DatasetError(f"{report.source}: no usable image rows; run gemma-panel data "
                           "check on it to see why.", code="no_examples")
    return out


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """An image as float32 RGB (height, width, 3), 0-255, resized to `size` (height, width)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32)


def image_batch(preprocessor, examples: Sequence[ImageExample]) -> tuple[dict, np.ndarray,
                                                                          np.ndarray]:
    """(inputs, targets, loss mask) for a batch, through KerasHub's preprocessor.

    The loss mask is the preprocessor's response weight, and never a vision or padding
    position (it already is not; this keeps it so whatever the preprocessor does).
    """
    import tensorflow as tf

    size = tuple(preprocessor.image_converter.image_size)
    most = preprocessor.max_images_per_prompt
    if any(len(e.images) > most for e in examples):
        raise UserError(f"a row has more than {most} images, the most the preprocessor "
                        "takes per prompt; raise its max_images_per_prompt or split the row.")
    images = np.zeros((len(examples), most, *size, 3), np.float32)
    for i, example in enumerate(examples):
        for j, file in enumerate(example.images):
            images[i, j] = load_image(file, size)
    x, y, weight = preprocessor({"prompts": [e.prompt for e in examples],
                                 "responses": [e.response for e in examples],
                                 "images": tf.constant(images)})
    x = {k: np.asarray(v) for k, v in x.items()}
    x["padding_mask"], x["vision_mask"] = (x["padding_mask"].astype("int32"),
                                           x["vision_mask"].astype("int32"))
    mask = np.asarray(weight).astype(bool) & (x["vision_mask"] == 0) & (x["padding_mask"] > 0)
    return x, np.asarray(y).astype("int32"), mask


class VisionTrainFunctions(TrainFunctions):
    """`TrainFunctions` for unpacked image-text rows: the backbone takes the images, the
    vision indices and masks; the loss is the same LM-head loss at the loss positions."""

    def __init__(self, causal_lm, recipe: Recipe, total_steps: int, max_tokens: int):
        refuse_packing(recipe)
        super().__init__(causal_lm, recipe, total_steps, max_tokens, max_tokens)

    def _loss_terms(self, trainable, frozen, batch, key, max_tokens, with_accuracy=False):
        inputs, targets, loss_mask = batch
        with self.lora_forward_pass(self.lora_layers, self.dropout, key), \
                remat_blocks(self.backbone, self.remat):
            hidden, _ = self.backbone.stateless_call(trainable, frozen, inputs)
        pool = trainable if self._embedding_trainable else frozen
        embeddings = pool[self._embedding_index]
        if self._embedding_scale is not None:
            embeddings = embeddings.astype(jnp.float32) / frozen[self._embedding_scale][:, None]
        return head_loss(hidden, embeddings, targets, loss_mask, max_tokens, self.soft_cap,
                         with_accuracy)

    def _train_step(self, trainable, opt_state, frozen, batch, key):
        def loss_fn(params):
            loss, count, _ = self._loss_terms(params, frozen, batch, key, self.max_train_tokens)
            return loss / jnp.maximum(count, 1.0), count

        (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        updates, opt_state = self.optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        return trainable, opt_state, {"loss": loss, "grad_norm": optax.global_norm(grads),
                                      "loss_tokens": count}


def train_on_images(causal_lm, examples: Sequence[ImageExample], recipe: Recipe,
                    steps: int) -> list[float]:
    """`steps` optimizer steps of `recipe.train.batch_size` examples (cycled in order);
    the trained weights are written back into `causal_lm`. Returns each step's loss."""
    refuse_text_only(causal_lm)
    batch_size = recipe.train.batch_size
    seq = causal_lm.preprocessor.sequence_length
    functions = VisionTrainFunctions(causal_lm, recipe, steps, batch_size * seq)
    trainable, opt_state, frozen = functions.initial_state()
    key = jax.random.key(recipe.data.seed)
    rows = itertools.cycle(examples)
    losses = []
    for step in range(steps):
        batch = image_batch(causal_lm.preprocessor,
                            [next(rows) for _ in range(batch_size)])
        trainable, opt_state, metrics = functions.train_step(
            trainable, opt_state, frozen, batch, jax.random.fold_in(key, step))
        losses.append(float(metrics["loss"]))
    functions.assign(trainable)
    return losses
