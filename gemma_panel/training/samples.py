"""What a run asks its model at each evaluation: sample prompts, task rows, task scores.

Samples are shown beside the base model's answers; task rows (held-out examples with their
references) are scored with the task's metrics (accuracy for labels, exact match and token
F1 for answers).
"""

from __future__ import annotations

from gemma_panel.config import Recipe
from gemma_panel.host_memory import release_free_memory


def sample_items(prepared, recipe: Recipe) -> tuple[list[dict], list[dict]]:
    """(sample prompts to show, validation rows for task metrics), as prompt/reference.

    A prompt is what the model sees before its answer, as in training: the template's turn
    for chat and classification data (``eval.sample_prompts`` are put into it too), the
    opening words of a held-out text for plain text, whose continuation is the reference.
    """
    from gemma_panel.data import Example

    def split(example):
        segments = prepared.template.segments(example)
        first = next(i for i, s in enumerate(segments) if s.trained)
        prompt = "".join(s.text for s in segments[:first])
        if first == 0:  # plain text: show how the model continues its opening
            prompt, reference = _opening(segments[0].text)
            return {"prompt": prompt, "reference": reference}
        return {"prompt": prompt, "reference": segments[first].text}

    rows = [split(e) for e in prepared.validation]
    if not recipe.eval.sample_prompts:
        samples = rows[: recipe.eval.num_samples]
    elif prepared.mapping.task == "completion":
        samples = [{"prompt": p, "reference": ""} for p in recipe.eval.sample_prompts]
    else:
        samples = [{**split(Example(prompt=p, response="", label="")), "reference": ""}
                   for p in recipe.eval.sample_prompts]
    return samples, rows[: recipe.eval.task_examples]


_OPENING_WORDS = 12


def _opening(text: str) -> tuple[str, str]:
    """(the first words of a text, the rest): a sample prompt and its reference."""
    words = text.split(" ")
    cut = min(_OPENING_WORDS, max(1, len(words) // 4))
    return " ".join(words[:cut]), " " + " ".join(words[cut:])


def answers(generator, items, max_new_tokens) -> list[str]:
    """The generator's answer to each item's prompt, all prompts in one batch; an image
    run's items (with ``images``) through its model's own generate function."""
    from gemma_panel.models.generation import SamplingOptions

    if items and "images" in items[0]:
        from gemma_panel.training.vision_samples import image_answers

        return image_answers(generator.lm, items, max_new_tokens, generator.stop_ids)
    options = SamplingOptions(max_new_tokens=max_new_tokens)
    return generator.generate_many([item["prompt"] for item in items], options)


def answers_both(generator, samples: list[dict], task_rows: list[dict], max_new_tokens: int
                 ) -> tuple[list[str], list[str]]:
    """(answers to the samples, to the task rows), each distinct prompt generated once, in
    one batch: the samples are usually the first task rows, and a decode step reads every
    weight whatever its batch, so one batch of both costs about what one of either does."""
    def key(item):
        return item["prompt"], tuple(item.get("images", ()))

    distinct = list({key(i): i for i in samples + task_rows}.values())
    found = dict(zip(map(key, distinct), answers(generator, distinct, max_new_tokens)))
    release_free_memory()  # generation's (and the validation loss's) freed buffers
    return [found[key(i)] for i in samples], [found[key(i)] for i in task_rows]


def task_metrics(task: str, predictions, references) -> dict[str, float]:
    """The task's own scores of generated answers (none for plain-text completion)."""
    from gemma_panel.evaluation import accuracy, exact_match, macro_f1, token_f1

    if not references:
        return {}
    if task == "classification":
        return {"accuracy": accuracy(predictions, references),
                "macro_f1": macro_f1(predictions, references)}
    if task == "completion":
        return {}
    return {"exact_match": exact_match(predictions, references),
            "token_f1": token_f1(predictions, references)}
