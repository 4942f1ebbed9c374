"""Image data through the normal trainer (`train`, as `gemma-panel run` and the dashboard's
Start run it): a tiny random Gemma 3 with a vision tower learns, is evaluated, checkpoints
and resumes exactly; a text-only model is refused in one sentence naming it."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.config import load_recipe
from gemma_panel.data.preflight import preflight
from gemma_panel.errors import UserError
from gemma_panel.training import train
from gemma_panel.training.vision import read_image_examples
from tests.training.resume import stopped_and_resumed
from tests.training.test_trainer import Recorder, trained_weights
from tests.training.tiny_vlm import (
    COLOURS,
    build_tiny_vlm,
    check_rows_equal_the_preprocessor,
    write_colour_rows,
)


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory):
    """The tiny vision model as a KerasHub preset folder, as `model.source` names one."""
    folder = tmp_path_factory.mktemp("vlm") / "preset"
    build_tiny_vlm().save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return write_colour_rows(tmp_path_factory.mktemp("colours"), repeat=3)  # 12 rows


def image_recipe(source, data, *overrides):
    return load_recipe(None, [
        f"model.source={source}", f"data.train_path={data}", "data.pack=false",
        "data.sequence_length=48", "data.validation_fraction=0.25", "train.max_steps=6",
        "train.batch_size=4", "train.warmup_steps=0", "train.learning_rate=0.01",
        "train.schedule=constant", "train.checkpoint_every=2", "train.log_every=1",
        "eval.every_steps=3", "lora.rank=8", "lora.alpha=32", *overrides])


def test_an_image_run_learns_is_evaluated_checkpointed_and_resumes_exactly(
        vlm_folder, colours, tmp_path):
    sink = Recorder()
    recipe = image_recipe(vlm_folder, colours, "lora.dropout=0.1")
    straight, resumed = stopped_and_resumed(recipe, tmp_path, sink=sink)
    assert straight.status == "succeeded" and straight.step == 6
    assert sink.start["train_sequences"] == 9 and sink.start["validation_sequences"] == 3
    losses = [v for _, v in sink.series("loss")]
    assert len(losses) == 6 and losses[-1] < 0.85 * losses[0], losses
    val = sink.series("val_loss")
    assert [s for s, _ in val] == [0, 3, 6] and val[-1][1] < val[0][1]
    assert [s for s, _ in sink.checkpoints] == [2, 3, 4, 6]  # every 2, and the best (3, 6)
    for a, b in zip(trained_weights(straight), trained_weights(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(np.abs(a).max() > 0 for a in trained_weights(resumed))


def test_the_run_feeds_the_images_as_the_preprocessor_does(colours):
    check_rows_equal_the_preprocessor(build_tiny_vlm(), read_image_examples(colours)[:4],
                                      ("images", "vision_indices", "vision_mask",
                                       "padding_mask"))


def test_a_text_only_model_is_refused_in_one_sentence_naming_it(tiny_gguf, colours, tmp_path):
    with pytest.raises(UserError, match=f"the model {tiny_gguf} has no vision tower.*"
                                        "gemma3_instruct_4b"):
        train(image_recipe(tiny_gguf, colours), tmp_path)


def test_a_registry_text_model_is_refused_before_it_loads(colours):
    verdict = preflight(image_recipe("gemma3-4b", colours))
    assert not verdict.ok
    assert "gemma3-4b (KerasHub preset gemma3_instruct_4b_text) cannot train on this " \
        "data's images, as it reads text only" in verdict.message


def test_an_image_run_answers_its_samples_from_their_images(vlm_folder, tmp_path):
    """Every evaluation answers held-out image rows with their pictures: trained on
    colours, the tuned model names each picture's colour, where the base model did not."""
    sink = Recorder()
    rows = write_colour_rows(tmp_path, repeat=STEPS_REPEAT)
    recipe = image_recipe(vlm_folder, rows, f"train.max_steps={STEPS}",
                          f"eval.every_steps={STEPS}", "eval.num_samples=4",
                          "eval.task_examples=4", "eval.max_new_tokens=16", EVERY_PROJECTION)
    assert train(recipe, tmp_path / "run", sink=sink).status == "succeeded"
    step, samples = sink.samples[-1]
    assert step == STEPS and len(samples) == 4
    colours_asked = [next(c for c in COLOURS if c in s["images"][0]) for s in samples]
    assert len(set(colours_asked)) > 1  # the rows ask about different pictures
    for colour, sample in zip(colours_asked, samples):
        assert sample["tuned"].strip() == f"It is {colour}.", sample
        assert sample["base"] != sample["tuned"]
    last = sink.metrics[-1][2]
    assert last["exact_match"] == 1.0, last


STEPS, STEPS_REPEAT = 120, 6
# LoRA on every projection: on query and value alone the 2-layer model names a colour for
# most pictures but not all after 120 steps
EVERY_PROJECTION = "lora.target_layers=[query,key,value,attention_output,ffw_gating,ffw_gating_2,ffw_linear]"
