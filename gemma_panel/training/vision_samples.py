"""What an image run asks its model at each evaluation: held-out rows with their images.

The text runs' generator (models/generation.py) reads token ids only. An image row's prompt
also needs its pixels, the vision encoder's output placed at the image tokens and those
tokens' two-way attention: KerasHub's own generate function does all of it, so an image
run's samples and task rows are answered through it (greedy, batched, stopping at the end
of the turn), with the images read as training reads them (`vision_inputs`: Gemma 3's
fixed square, Gemma 4's aspect-kept square canvas). Gemma 4's generate function takes the
same preprocessed inputs (pixel patches, vision indices and mask) and answers from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gemma_panel.config import Recipe
from gemma_panel.data.images import IMAGE_TOKEN


def image_sample_items(prepared, recipe: Recipe, causal_lm=None
                       ) -> tuple[list[dict], list[dict]]:
    """(sample prompts to show, validation rows for task metrics) of an image dataset, as
    prompt/reference/images, the images marked as `causal_lm`'s preprocessor marks them
    (Gemma 3's without one); ``eval.sample_prompts`` are asked without an image."""
    from gemma_panel.data import Example
    from gemma_panel.data.preflight import read_options
    from gemma_panel.training.vision import image_example, image_rows
    from gemma_panel.training.vision_inputs import image_inputs

    d = recipe.data
    marker = image_inputs(causal_lm.preprocessor).marker if causal_lm else IMAGE_TOKEN
    files = image_rows(d.validation_path or d.train_path, read_options(recipe),
                       prepared.mapping)

    def item(example, images) -> dict:
        row = image_example(example, images, prepared.template, marker)
        answer = prepared.template.segments(example)[-1].text  # without the end-of-turn
        return {"prompt": row.prompt, "reference": answer,
                "images": [str(p) for p in row.images]}

    rows = [item(e, files.get(e.row, [])) for e in prepared.validation]
    if recipe.eval.sample_prompts:
        samples = [{**item(Example(prompt=p, response="", label=""), []), "reference": ""}
                   for p in recipe.eval.sample_prompts]
    else:
        samples = rows[: recipe.eval.num_samples]
    return samples, rows[: recipe.eval.task_examples]


def image_answers(causal_lm, items: list[dict], max_new_tokens: int,
                  stop_ids: set[int]) -> list[str]:
    """Each item's greedy answer, its images given to the model (one batch)."""
    if not items:
        return []
    inputs, lengths = _generate_inputs(causal_lm.preprocessor, items, max_new_tokens)
    _use_greedy(causal_lm)
    stops = tuple(sorted(stop_ids))
    out = causal_lm.generate_function(inputs, stop_token_ids=stops)
    ids = np.asarray(out["token_ids"])
    tokenizer = causal_lm.preprocessor.tokenizer
    answers = []
    for row, start in zip(ids, lengths):
        new = [int(t) for t in row[start: start + max_new_tokens]]
        cut = next((i for i, t in enumerate(new) if t in stop_ids), len(new))
        text = tokenizer.detokenize(np.asarray(new[:cut], dtype="int32")) if cut else ""
        text = text.numpy() if hasattr(text, "numpy") else text
        answers.append(text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))
    return answers


def _generate_inputs(preprocessor, items: list[dict], max_new_tokens: int):
    """(the generate function's inputs, each prompt's length in tokens): prompts padded on
    the right to the longest prompt plus ``max_new_tokens``; rows without an image get a
    black one that no token reads."""
    import tensorflow as tf

    from gemma_panel.training.vision_inputs import image_inputs

    reader = image_inputs(preprocessor)
    most = reader.most
    files = np.empty(len(items), object)
    files[:] = [[Path(f) for f in item["images"]] for item in items]
    images = reader.pixels(files)
    prompts = [item["prompt"] for item in items]
    # room for any prompt: a token is at least a byte, and each image adds its tokens
    room = max(len(p.encode()) for p in prompts) + most * (
        preprocessor.num_vision_tokens_per_image + 16) + 16
    probe = preprocessor.generate_preprocess({"prompts": prompts, "images": tf.constant(images)},
                                             sequence_length=room)
    lengths = np.asarray(probe["padding_mask"]).sum(axis=1).astype(int)
    length = int(lengths.max()) + max_new_tokens
    x = preprocessor.generate_preprocess({"prompts": prompts, "images": tf.constant(images)},
                                         sequence_length=length)
    return {k: np.asarray(v) for k, v in x.items()}, [int(n) for n in lengths]


def _use_greedy(causal_lm) -> None:
    """Greedy decoding, as the text runs' samples are chosen (KerasHub's default is top-k)."""
    import keras_hub

    if not isinstance(getattr(causal_lm, "sampler", None), keras_hub.samplers.GreedySampler):
        causal_lm.sampler = keras_hub.samplers.GreedySampler()
        causal_lm.generate_function = None
    if getattr(causal_lm, "generate_function", None) is None:
        causal_lm.generate_function = None
        causal_lm.make_generate_function()
