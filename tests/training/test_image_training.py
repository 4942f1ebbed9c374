"""A tiny random Gemma 3 with a tiny random vision tower learns from image-text rows, and
only the answers carry loss (never a prompt token or a vision token)."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_panel.config import load_recipe
from gemma_panel.data.images import IMAGE_TOKEN
from gemma_panel.errors import UserError
from gemma_panel.models.lora import enable_lora
from gemma_panel.training.vision import (
    image_batch,
    read_image_examples,
    refuse_packing,
    refuse_text_only,
    train_on_images,
)
from tests.training.tiny_vlm import (
    VISION_TOKENS,
    build_tiny_vlm,
    check_targets_off_the_mask_change_nothing,
    write_colour_rows,
)


@pytest.fixture(scope="module")
def tiny_vlm():
    return build_tiny_vlm()


@pytest.fixture(scope="module")
def colour_rows(tmp_path_factory):
    """LLaVA rows: a plain-colour picture and its colour, the answer only the image gives."""
    return read_image_examples(write_colour_rows(tmp_path_factory.mktemp("colours")))


def recipe(*overrides):
    return load_recipe(None, ["data.pack=false", "train.batch_size=4", "train.warmup_steps=0",
                              "train.learning_rate=0.01", "train.schedule=constant",
                              "lora.dropout=0", *overrides])


def test_rows_render_with_one_image_token_where_llava_put_it(colour_rows):
    first = colour_rows[0]
    assert first.prompt == (f"<start_of_turn>user\n{IMAGE_TOKEN}\nWhat colour is it?"
                            "<end_of_turn>\n<start_of_turn>model\n")
    assert first.response == "It is red.<end_of_turn>"
    assert [p.name for p in first.images] == ["red.png"]


def test_prompt_and_vision_tokens_carry_no_loss(tiny_vlm, colour_rows):
    x, targets, mask = image_batch(tiny_vlm.preprocessor, colour_rows)
    vision = x["vision_mask"].astype(bool)
    assert vision.sum(axis=1).tolist() == [VISION_TOKENS] * len(colour_rows)
    assert not mask[vision].any()
    tokenizer = tiny_vlm.preprocessor.tokenizer
    for row, example in enumerate(colour_rows):
        answer = [*np.asarray(tokenizer(example.response)).tolist(), tokenizer.end_token_id]
        # the positions with loss predict exactly the answer and the end token...
        assert targets[row][mask[row]].tolist() == answer
        # ...and are the last ones before the end token (whose target is padding)
        last = int(x["padding_mask"][row].sum()) - 1
        assert np.flatnonzero(mask[row]).tolist() == list(range(last - len(answer), last))
        assert np.flatnonzero(vision[row]).max() < last - len(answer)  # images are prompt


def test_targets_off_the_mask_change_nothing(tiny_vlm, colour_rows):
    check_targets_off_the_mask_change_nothing(tiny_vlm, recipe(), colour_rows)


def test_a_lora_run_on_images_lowers_the_loss(tiny_vlm, colour_rows):
    layers = enable_lora(tiny_vlm, rank=8, alpha=32,
                         target_layers=["query", "value", "attention_output", "ffw_linear"])
    assert layers and all("decoder_block" in layer.path for layer in layers)
    losses = train_on_images(tiny_vlm, colour_rows, recipe(), steps=10)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_packing_recipe_is_refused_in_one_sentence():
    with pytest.raises(UserError, match="not packed .* set data.pack=false"):
        refuse_packing(load_recipe(None, []))


def test_a_model_without_a_vision_tower_is_refused_in_one_sentence(tiny_vlm):
    from types import SimpleNamespace

    def model(cls, tower):
        return type(cls, (), {"preprocessor": SimpleNamespace(image_converter=tower),
                              "backbone": SimpleNamespace(vision_encoder=tower)})()

    with pytest.raises(UserError, match="no vision tower.*not gemma3_instruct_4b_text"):
        refuse_text_only(model("Gemma3CausalLM", None))
    refuse_text_only(tiny_vlm)  # the tiny one has a tower: no complaint
    # Gemma 3n has a tower whose inputs neither image path feeds: refused, not mis-trained
    # (review finding: every row was dropped with "raise data.sequence_length"); Gemma 4's
    # are trained (tests/training/test_image_gemma4.py)
    with pytest.raises(UserError, match="is a Gemma 3n: its images are not trained here"):
        refuse_text_only(model("Gemma3nCausalLM", object()))
    with pytest.raises(UserError, match="is a GemmaCausalLM: image runs train Gemma 3 and "
                                        "Gemma 4 vision models"):
        refuse_text_only(model("GemmaCausalLM", object()))
    refuse_text_only(model("Gemma4CausalLM", object()))
