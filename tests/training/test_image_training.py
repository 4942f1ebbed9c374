"""A tiny random Gemma 3 with a tiny random vision tower learns from image-text rows, and
only the answers carry loss (never a prompt token or a vision token)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from gemma_panel.config import load_recipe
from gemma_panel.data.images import IMAGE_TOKEN
from gemma_panel.errors import UserError
from gemma_panel.models.lora import enable_lora
from gemma_panel.training.vision import (
    VisionTrainFunctions,
    image_batch,
    read_image_examples,
    refuse_packing,
    refuse_text_only,
    train_on_images,
)

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
           "white": (250, 250, 250)}
VISION_TOKENS = 4  # (16 px / 4 px patches / pool 2) ** 2


@pytest.fixture(scope="module")
def tiny_vlm():
    """Gemma 3 with 2 layers of width 64 and a 1-layer vision encoder over 16x16 images."""
    import keras_hub
    import sentencepiece
    from keras_hub.src.models.gemma3.gemma3_vision_encoder import Gemma3VisionEncoder

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([f"What colour is it? It is {c}." for c in COLOURS] * 20),
        model_writer=proto, vocab_size=300, model_type="bpe", byte_fallback=True,
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", minloglevel=2,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>", "<img>",
                              "<start_of_image>", "<end_of_image>"],
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>")
    tokenizer = keras_hub.models.Gemma3Tokenizer(proto=proto.getvalue())
    encoder = Gemma3VisionEncoder(image_size=16, patch_size=4, num_heads=2, hidden_dim=16,
                                  num_layers=1, intermediate_dim=32, output_dim=64, pool_size=2)
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), image_size=16, num_layers=2,
        num_query_heads=2, num_key_value_heads=1, hidden_dim=64, intermediate_dim=128,
        head_dim=32, query_head_dim_normalize=True, use_post_ffw_norm=True,
        use_post_attention_norm=True, final_logit_soft_cap=None,
        attention_logit_soft_cap=None, sliding_window_size=64,
        use_sliding_window_attention=True, vision_encoder=encoder)
    converter = keras_hub.layers.Gemma3ImageConverter(image_size=(16, 16), scale=1 / 127.5,
                                                      offset=-1.0)
    preprocessor = keras_hub.models.Gemma3CausalLMPreprocessor(
        tokenizer=tokenizer, image_converter=converter, sequence_length=48,
        max_images_per_prompt=1, num_vision_tokens_per_image=VISION_TOKENS)
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=preprocessor)


@pytest.fixture(scope="module")
def colour_rows(tmp_path_factory):
    """LLaVA rows: a plain-colour picture and its colour, the answer only the image gives."""
    folder = tmp_path_factory.mktemp("colours")
    (folder / "img").mkdir()
    rows = []
    for name, rgb in COLOURS.items():
        Image.new("RGB", (24, 20), rgb).save(folder / "img" / f"{name}.png")
        rows.append({"image": f"img/{name}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is it?"},
            {"from": "gpt", "value": f"It is {name}."}]})
    path = folder / "colours.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_image_examples(path)


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
    """The loss reads targets only where the mask is: scrambling every other target
    (prompt, vision placeholders, padding) leaves it exactly as it was."""
    functions = VisionTrainFunctions(tiny_vlm, recipe(), 1, 4 * 48)
    trainable, _, frozen = functions.initial_state()
    x, targets, mask = image_batch(tiny_vlm.preprocessor, colour_rows)
    scrambled = np.where(mask, targets, np.random.default_rng(0).integers(
        0, 300, targets.shape)).astype("int32")
    loss, count, _ = functions.eval_step(trainable, frozen, (x, targets, mask))
    loss2, count2, _ = functions.eval_step(trainable, frozen, (x, scrambled, mask))
    assert float(count) == float(count2) == mask.sum() and float(loss) == float(loss2)


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

    text_only = SimpleNamespace(preprocessor=SimpleNamespace(image_converter=None),
                                backbone=SimpleNamespace(vision_encoder=None))
    with pytest.raises(UserError, match="no vision tower.*not gemma3_instruct_4b_text"):
        refuse_text_only(text_only)
    refuse_text_only(tiny_vlm)  # the tiny one has a tower: no complaint
