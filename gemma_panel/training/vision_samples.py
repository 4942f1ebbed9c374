"""What an image run asks its model at each evaluation: held-out rows with their images.

The text runs' generator (models/generation.py) reads token ids only. An image row's prompt
also needs its pixels, the vision encoder's output placed at the image tokens and those
tokens' two-way attention: KerasHub's own generate function does all of it, so an image
run's samples and task rows are answered through it (greedy, batched, stopping at the end
of the turn), with the images read as training reads them (`vision.load_image`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gemma_panel.config import Recipe


def image_sample_items(prepared, recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """(sample prompts to show, validation rows for task metrics) of an image dataset, as
    prompt/reference/images; ``eval.sample_prompts`` are asked without an image."""
    from gemma_panel.data import Example
    from gemma_panel.data.preflight import read_options
    from gemma_panel.training.vision import image_example, image_rows

    d = recipe.data
    files = image_rows(d.validation_path or d.train_path, read_options(recipe),
                       prepared.mapping)

    def item(example, images) -> dict:
        row = image_example(example, images, prepared.template)
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

    from gemma_panel.training.vision import load_image

    size = tuple(preprocessor.image_converter.image_size)
    most = preprocessor.max_images_per_prompt
    images = np.zeros((len(items), most, *size, 3), np.float32)
    for i, item in enumerate(items):
        for j, file in enumerate(item["images"][:most]):
            images[i, j] = load_image(Path(file), size)
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
