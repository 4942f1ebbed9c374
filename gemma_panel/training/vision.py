"""Training on images and text: KerasHub's Gemma 3 and Gemma 4 vision towers, one example
per row.

KerasHub's preprocessor (``Gemma3CausalLMPreprocessor`` or ``Gemma4CausalLMPreprocessor``,
with its image converter) does the layout: each image marker in the prompt becomes
``num_vision_tokens_per_image`` placeholder tokens between start- and end-of-image tokens;
it returns the images converted, ``vision_indices`` (where the vision encoder's output
replaces the placeholders' embeddings), ``vision_mask`` (those tokens attend to each other
both ways) and a loss weight that is 1 on the response only. What differs between the two
families (the marker, how a file becomes pixels, the backbone's inputs) is
`vision_inputs`' to say.

The packed text step (``step.py``) puts several examples in a row and attends by segment;
KerasHub places vision tokens by their index in the row and gives them bidirectional
attention there, which segment attention does not compose with. So image data is trained
unpacked: a padded row per example (``data.pack=false``; a recipe that packs is refused),
with ``step.py``'s train step, optimizer, LoRA and LM-head loss; only the backbone's inputs
differ. ``train`` (trainer.py) runs image data through `image_sequences` and
`VisionTrainFunctions`: the worker, metrics, evaluation, checkpoints and resume are the
text runs' own.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from gemma_panel.config import Recipe
from gemma_panel.data.check import ReadOptions
from gemma_panel.data.columns import detect_columns
from gemma_panel.data.images import (
    GEMMA3N_IMAGES,
    IMAGE_MARKERS,
    IMAGE_TOKEN,
    LLAVA_PLACEHOLDER,
    PACKING_REFUSED,
    ImageRefused,
    image_base,
    image_column,
    resolve_image,
    row_image_refs,
    user_turn,
)
from gemma_panel.data.readers import open_records
from gemma_panel.data.report import DatasetError, ValidationReport
from gemma_panel.data.templates import GemmaChatTemplate, render_text
from gemma_panel.data.validate import RowValidator
from gemma_panel.errors import UserError
from gemma_panel.training.remat import remat_blocks
from gemma_panel.training.step import TrainFunctions
from gemma_panel.training.vision_inputs import FAMILIES, image_inputs


@dataclass
class ImageExample:
    """One image-text example as the preprocessor takes it.

    Args:
        prompt: the rendered prompt (user turn and the model turn's opening), with the
            model's image marker (``<start_of_image>``, Gemma 4's ``<|image|>``) where each
            image goes.
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


def refuse_text_only(causal_lm, name: str | None = None) -> None:
    """A causal LM without a vision tower (a ``*_text`` preset, Gemma 3 1B/270M) cannot see
    the images: refuse it, in words (naming the model's source when given)."""
    preprocessor = getattr(causal_lm, "preprocessor", None)
    model, kind = f"the model {name}" if name else "this model", type(causal_lm).__name__
    if kind == "Gemma3nCausalLM":
        raise UserError(f"{model} is a Gemma 3n: {GEMMA3N_IMAGES}; load a Gemma 3 or "
                        "Gemma 4 preset with a vision tower, or train this model on text.")
    if kind not in FAMILIES:
        raise UserError(f"{model} is a {kind}: image runs train Gemma 3 and Gemma 4 vision "
                        "models; load a preset with a vision tower (e.g. gemma3_instruct_4b, "
                        "gemma4_instruct_2b), or train this model on text.")
    if getattr(preprocessor, "image_converter", None) is None or \
            getattr(causal_lm.backbone, "vision_encoder", None) is None:
        raise UserError(f"{model} has no vision tower, so it cannot see the images: load a "
                        "preset with one (e.g. gemma3_instruct_4b, not "
                        "gemma3_instruct_4b_text; gemma4_instruct_2b).")


def read_image_examples(path: str | os.PathLike, read: ReadOptions | None = None,
                        template=None, marker: str = IMAGE_TOKEN) -> list[ImageExample]:
    """Every usable row of an image dataset, rendered with `template` (Gemma's chat format).

    LLaVA's ``<image>`` placeholders become the model's image `marker` (Gemma 3's
    ``<start_of_image>``; `vision_inputs` has each family's); a row whose text marks no
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
    column, base = image_column(columns), image_base(path)
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
        out.append(image_example(example, images, template, marker))
    if not out:
        raise DatasetError(f"{report.source}: no usable image rows; run gemma-panel data "
                           "check on it to see why.", code="no_examples")
    return out


def image_example(example, images: list[Path], template, marker: str = IMAGE_TOKEN
                  ) -> ImageExample:
    """One example rendered with `template`, its images' `marker` where its text puts them
    (LLaVA's ``<image>`` or either Gemma family's marker: data written for Gemma 3 trains
    Gemma 4 too) or else at the start of the first user turn (the template's)."""
    segments = template.segments(example)
    prompt = render_text(segments[:-1])
    for other in (LLAVA_PLACEHOLDER, *IMAGE_MARKERS):
        if other != marker:
            prompt = prompt.replace(other, marker)
    missing = len(images) - prompt.count(marker)
    if missing > 0:
        turn = user_turn(template)
        prompt = prompt.replace(turn, turn + marker * missing, 1)
    return ImageExample(prompt, render_text(segments[-1:]), images, example.row)


def image_batch(preprocessor, examples: Sequence[ImageExample], pixels: bool = True
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """(inputs, targets, loss mask) for a batch, through KerasHub's preprocessor.

    The loss mask is the preprocessor's response weight, and never a vision or padding
    position (it already is not; this keeps it so whatever the preprocessor does). Without
    `pixels` the images are black: the layout (tokens, vision indices, masks) is the same.
    """
    import tensorflow as tf

    inputs = image_inputs(preprocessor)
    if any(len(e.images) > inputs.most for e in examples):
        raise UserError(f"a row has more than {inputs.most} images, the most the "
                        "preprocessor takes per prompt; raise its max_images_per_prompt or "
                        "split the row.")
    files = np.empty(len(examples), object)
    files[:] = [e.images if pixels else [] for e in examples]
    x, y, weight = preprocessor({"prompts": [e.prompt for e in examples],
                                 "responses": [e.response for e in examples],
                                 "images": tf.constant(inputs.pixels(files))})
    x = {k: np.asarray(v) for k, v in x.items()}
    for key in ("padding_mask", "vision_mask", "audio_mask"):  # the backbone takes int32
        if key in x:
            x[key] = x[key].astype("int32")
    mask = np.asarray(weight).astype(bool) & (x["vision_mask"] == 0) & (x["padding_mask"] > 0)
    return x, np.asarray(y).astype("int32"), mask


def step_batch(x: dict, targets: np.ndarray, loss_mask: np.ndarray) -> tuple:
    """`image_batch`'s (inputs, targets, loss mask) as the train and eval steps take a
    batch: (token ids, targets, loss mask, the backbone's other inputs)."""
    vision = {k: v for k, v in x.items() if k != "token_ids"}
    return x["token_ids"], targets, loss_mask.astype("int32"), vision


@dataclass
class ImageSequences:
    """Image-text rows laid out once by the preprocessor, one example a row; the pixels
    are read per batch. The trainer uses them as it uses `batches.Sequences` (``take``,
    ``grouped``, ``arrays``; ``segment_ids`` is 1 on real tokens).

    ``files`` is an object array of each row's image paths (shaped like the rows);
    ``images`` the model family's image inputs (`vision_inputs`), which read them.
    """

    inputs: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    segment_ids: np.ndarray
    vision_indices: np.ndarray
    vision_mask: np.ndarray
    files: np.ndarray
    images: object = None

    _ROWS = ("inputs", "targets", "loss_mask", "segment_ids", "vision_indices",
             "vision_mask", "files")

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def real_tokens(self) -> int:
        return int((self.segment_ids > 0).sum())

    def _map(self, change) -> ImageSequences:
        return ImageSequences(*(change(getattr(self, k)) for k in self._ROWS),
                              images=self.images)

    def take(self, index) -> ImageSequences:
        return self._map(lambda a: a[index])

    def grouped(self, accumulation: int, batch_size: int) -> ImageSequences:
        return self._map(lambda a: a.reshape((accumulation, batch_size, *a.shape[1:])))

    def arrays(self) -> tuple:
        """(token ids, targets, loss mask, the backbone's other inputs), the images read
        and converted as the preprocessor converts them."""
        x = {"token_ids": self.inputs, "padding_mask": self.segment_ids,
             "vision_mask": self.vision_mask, "vision_indices": self.vision_indices,
             **self.images.backbone_pixels(self.images.pixels(self.files)),
             **self.images.text_inputs(self.inputs)}
        return step_batch(x, self.targets, self.loss_mask)


def lay_out(preprocessor, examples: Sequence[ImageExample], chunk: int = 16
            ) -> tuple[ImageSequences, int]:
    """(the examples as rows, how many were dropped): a row whose answer or image tokens
    the sequence length cuts off has nothing to learn or a broken image."""
    parts, dropped = [], 0
    per_image = preprocessor.num_vision_tokens_per_image
    for start in range(0, len(examples), chunk):
        part = list(examples[start:start + chunk])
        x, y, mask = image_batch(preprocessor, part, pixels=False)
        keep = mask.any(axis=1) & (x["vision_mask"].sum(axis=1)
                                   == [len(e.images) * per_image for e in part])
        dropped += int((~keep).sum())
        files = np.empty(len(part), object)
        files[:] = [e.images for e in part]
        parts.append([a[keep] for a in (x["token_ids"], y, mask, x["padding_mask"],
                                        x["vision_indices"], x["vision_mask"], files)])
    columns = [np.concatenate(c) for c in zip(*parts)] if parts else \
        [np.zeros((0, 1), "int32")] * 6 + [np.empty(0, object)]
    return ImageSequences(*columns, images=image_inputs(preprocessor)), dropped


def image_rows(path, read: ReadOptions, mapping) -> dict[int, list[Path]]:
    """Each row's image files (by row number) in a data file, for its prepared examples."""
    report = ValidationReport(source=os.fspath(path))
    records = list(open_records(path, report, format=read.format, encoding=read.encoding,
                                delimiter=read.delimiter))
    column = image_column(list(dict.fromkeys(k for r in records[:100] for k in r.values)))
    base, out = Path(os.fspath(path)).parent, {}
    for record in records:
        refs = [] if record.broken else row_image_refs(record.values, column, mapping.messages)
        out[record.row] = [resolve_image(r, base) for r in refs]  # checked: none refused
    return out


def image_sequences(recipe: Recipe, prepared, causal_lm, sink=None
                    ) -> tuple[ImageSequences, ImageSequences]:
    """(train, validation) rows of a prepared image dataset, as `train` (trainer.py) runs
    them: the examples the data preparation kept, split as it split them."""
    from gemma_panel.data.preflight import read_options
    from gemma_panel.training.setup import TrainingError

    refuse_packing(recipe)
    refuse_text_only(causal_lm, recipe.model.source)
    preprocessor = causal_lm.preprocessor
    preprocessor.sequence_length = recipe.data.sequence_length
    marker = image_inputs(preprocessor).marker
    d, read = recipe.data, read_options(recipe)
    train_files = image_rows(d.train_path, read, prepared.mapping)
    val_files = image_rows(d.validation_path, read, prepared.mapping) \
        if d.validation_path else train_files
    out, dropped = [], 0
    for examples, files in ((prepared.train, train_files), (prepared.validation, val_files)):
        rows, cut = lay_out(preprocessor, [image_example(e, files.get(e.row, []),
                                                         prepared.template, marker)
                                           for e in examples])
        out.append(rows)
        dropped += cut
    if dropped and sink is not None:
        sink.on_log(f"{dropped} image row(s) left out: data.sequence_length "
                    f"({d.sequence_length}) cuts off their answer or image tokens")
    if not len(out[0]):
        raise TrainingError("no image row fits data.sequence_length with its image tokens "
                            "and answer; raise data.sequence_length.")
    return out[0], out[1]


class VisionTrainFunctions(TrainFunctions):
    """`TrainFunctions` for unpacked image-text rows: the backbone takes the images, the
    vision indices and masks; the step, the optimizer and the LM-head loss are
    `TrainFunctions`' own. A batch is `ImageSequences.arrays()`."""

    def __init__(self, causal_lm, recipe: Recipe, total_steps: int, max_train_tokens: int,
                 max_eval_tokens: int | None = None):
        refuse_packing(recipe)
        super().__init__(causal_lm, recipe, total_steps, max_train_tokens,
                         max_eval_tokens or max_train_tokens)
        # the preprocessor's inputs the backbone takes (Gemma 4's preprocessor writes empty
        # audio inputs that a backbone without an audio tower has no input for)
        self.takes = set(self.backbone.input)

    def _loss_terms(self, trainable, frozen, batch, key, max_tokens, with_accuracy=False):
        token_ids, targets, loss_mask, vision = batch
        with self.lora_forward_pass(self.lora_layers, self.dropout, key), \
                remat_blocks(self.backbone, self.remat):
            hidden, _ = self.backbone.stateless_call(
                trainable, frozen, {"token_ids": token_ids,
                                    **{k: v for k, v in vision.items() if k in self.takes}})
        return self._head_terms(trainable, frozen, hidden, targets, loss_mask, max_tokens,
                                with_accuracy)

    def evaluate(self, trainable, frozen, sequences, batch_size: int) -> dict[str, float]:
        """Validation loss, perplexity and next-token accuracy at loss positions; the last
        batch is filled with copies of its last row that carry no loss."""
        loss = count = correct = 0.0
        for start in range(0, len(sequences), batch_size):
            index = np.arange(start, start + batch_size)
            part = sequences.take(np.minimum(index, len(sequences) - 1))
            part.loss_mask[index >= len(sequences)] = False
            l_sum, n, hits = self.eval_step(trainable, frozen, part.arrays())
            loss, count, correct = loss + float(l_sum), count + float(n), correct + float(hits)
        mean = loss / max(count, 1.0)
        return {"val_loss": mean, "val_perplexity": float(np.exp(min(mean, 50.0))),
                "val_token_accuracy": correct / max(count, 1.0)}


def train_on_images(causal_lm, examples: Sequence[ImageExample], recipe: Recipe,
                    steps: int) -> list[float]:
    """`steps` optimizer steps of `recipe.train.batch_size` examples (cycled in order);
    the trained weights are written back into `causal_lm`. Returns each step's loss.
    (`gemma-panel run` trains image data through `train`, with checkpoints and evaluation.)
    """
    refuse_text_only(causal_lm)
    batch_size = recipe.train.batch_size
    rows, _ = lay_out(causal_lm.preprocessor, examples)
    seq = rows.inputs.shape[1]
    functions = VisionTrainFunctions(causal_lm, recipe, steps, batch_size * seq)
    trainable, opt_state, frozen = functions.initial_state()
    key = jax.random.key(recipe.data.seed)
    losses = []
    for step in range(steps):
        index = np.arange(step * batch_size, (step + 1) * batch_size) % len(rows)
        batch = rows.take(index).grouped(1, batch_size).arrays()
        trainable, opt_state, metrics = functions.train_step(
            trainable, opt_state, frozen, batch, jax.random.fold_in(key, step))
        losses.append(float(metrics["loss"]))
    functions.assign(trainable)
    return losses
