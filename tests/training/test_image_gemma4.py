"""A tiny random Gemma 4 with a tiny random vision tower learns from image-text rows, as
the Gemma 3 one does (tests/training/test_image_training.py): the images are marked with
Gemma 4's ``<|image|>``, only the answers carry loss (never a prompt, image or padding
token), and images of different sizes share one batch without changing each other's
encoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gemma_panel.config import load_recipe
from gemma_panel.data import Example
from gemma_panel.data.images import GEMMA4_IMAGE_TOKEN, IMAGE_TOKEN
from gemma_panel.data.templates_gemma4 import Gemma4ChatTemplate
from gemma_panel.errors import UserError
from gemma_panel.models.lora import enable_lora
from gemma_panel.training.vision import (
    VisionTrainFunctions,
    image_batch,
    image_example,
    lay_out,
    read_image_examples,
    refuse_text_only,
    train_on_images,
)
from gemma_panel.training.vision_inputs import image_inputs
from tests.training.tiny_vlm import (
    VISION_TOKENS,
    build_tiny_gemma4_vlm,
    check_rows_equal_the_preprocessor,
    check_targets_off_the_mask_change_nothing,
    write_colour_rows,
)

TEMPLATE = Gemma4ChatTemplate()


@pytest.fixture(scope="module")
def tiny_vlm4():
    return build_tiny_gemma4_vlm()


@pytest.fixture(scope="module")
def colour_rows(tmp_path_factory):
    return read_image_examples(write_colour_rows(tmp_path_factory.mktemp("colours")),
                               template=TEMPLATE, marker=GEMMA4_IMAGE_TOKEN)


def recipe(*overrides):
    return load_recipe(None, ["data.pack=false", "train.batch_size=4", "train.warmup_steps=0",
                              "train.learning_rate=0.01", "train.schedule=constant",
                              "lora.dropout=0", *overrides])


def test_rows_render_in_gemma4s_format_with_its_image_marker(colour_rows, tiny_vlm4):
    assert image_inputs(tiny_vlm4.preprocessor).marker == GEMMA4_IMAGE_TOKEN == "<|image|>"
    first = colour_rows[0]
    assert first.prompt == ("<|turn>user\n<|image|>\nWhat colour is it?<turn|>\n"
                            "<|turn>model\n")
    assert first.response == "It is red.<turn|>"
    # a row whose text marks no place: the image opens Gemma 4's user turn
    row = image_example(Example(prompt="Which colour?", response="Red."), first.images,
                        TEMPLATE, GEMMA4_IMAGE_TOKEN)
    assert row.prompt.startswith("<|turn>user\n<|image|>Which colour?")


def test_a_row_written_with_gemma3s_marker_trains_gemma4_on_its_image(colour_rows, tiny_vlm4):
    """Data written for Gemma 3 (``<start_of_image>`` in the text) keeps its image where the
    text puts it; it was dropped before as if the sequence length cut it off."""
    first = colour_rows[0]
    row = image_example(Example(prompt=f"Look: {IMAGE_TOKEN} Which colour?", response="Red."),
                        first.images, TEMPLATE, GEMMA4_IMAGE_TOKEN)
    assert IMAGE_TOKEN not in row.prompt
    assert row.prompt.startswith(f"<|turn>user\nLook: {GEMMA4_IMAGE_TOKEN} Which colour?")
    rows, dropped = lay_out(tiny_vlm4.preprocessor, [row])
    assert dropped == 0 and rows.vision_mask.sum() == VISION_TOKENS


def test_prompt_image_and_padding_tokens_carry_no_loss(tiny_vlm4, colour_rows):
    x, targets, mask = image_batch(tiny_vlm4.preprocessor, colour_rows)
    tokenizer = tiny_vlm4.preprocessor.tokenizer
    vision = x["vision_mask"].astype(bool)
    assert vision.sum(axis=1).tolist() == [VISION_TOKENS] * len(colour_rows)
    markers = np.isin(x["token_ids"], [tokenizer.start_of_image_token_id,
                                       tokenizer.end_of_image_token_id])
    assert markers.sum(axis=1).tolist() == [2] * len(colour_rows)
    padding = x["padding_mask"] == 0
    assert padding.any() and not mask[vision | markers | padding].any()
    for row, example in enumerate(colour_rows):
        answer = [*np.asarray(tokenizer(example.response)).tolist(), tokenizer.end_token_id]
        # the positions with loss predict exactly the answer and the end token...
        assert targets[row][mask[row]].tolist() == answer
        # ...and are the last ones before the end token (whose target is padding)
        last = int(x["padding_mask"][row].sum()) - 1
        assert np.flatnonzero(mask[row]).tolist() == list(range(last - len(answer), last))
        assert np.flatnonzero(vision[row]).max() < last - len(answer)


def test_targets_off_the_mask_change_nothing(tiny_vlm4, colour_rows):
    check_targets_off_the_mask_change_nothing(tiny_vlm4, recipe(), colour_rows)


def test_the_rows_feed_the_backbone_as_the_preprocessor_does(tiny_vlm4, colour_rows):
    check_rows_equal_the_preprocessor(tiny_vlm4, colour_rows, (
        "pixel_values", "pixel_position_ids", "vision_indices", "vision_mask", "padding_mask",
        "position_ids"))


def test_a_few_lora_steps_on_images_lower_the_loss(colour_rows):
    lm = build_tiny_gemma4_vlm()
    layers = enable_lora(lm, rank=8, alpha=32,
                         target_layers=["query", "value", "attention_output", "ffw_linear"])
    assert layers and all("vision" not in layer.path for layer in layers)
    losses = train_on_images(lm, colour_rows, recipe(), steps=10)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def encoded(lm, pixels):
    """The vision tower's pooled tokens for (images, height, width, 3) pixels, one batch."""
    out = lm.preprocessor.image_converter(pixels)
    return np.asarray(lm.backbone.vision_encoder(
        {"pixel_values": np.asarray(out["pixel_values"])[:, None],
         "pixel_position_ids": np.asarray(out["pixel_position_ids"])[:, None]}))[:, 0]


def test_images_of_different_sizes_share_a_batch_unchanged(tiny_vlm4, tmp_path):
    """Each image is scaled onto one square canvas (aspect ratio kept, black right and
    bottom): every image gets one patch grid, so one batch of a wide and a tall picture
    encodes each as it is encoded alone. Given to the converter as they are, the two get
    different grids, and KerasHub pools the batch with the widest one's: the tall
    picture's tokens change."""
    rng = np.random.default_rng(0)
    files = []
    for name, size in (("wide", (32, 12)), ("tall", (12, 32))):
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), np.uint8)).save(
            tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    reader = image_inputs(tiny_vlm4.preprocessor)
    canvas = np.stack([reader.read(f) for f in files])
    assert canvas.shape == (2, 16, 16, 3) and canvas[1, :, 8:].max() == 0  # tall: black right
    together, alone = encoded(tiny_vlm4, canvas), encoded(tiny_vlm4, canvas[1:])
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-5, atol=1e-6)
    # the same pictures at their own grids (the converter resizes each to 16x8 or 8x16)
    raw = [np.asarray(Image.open(f).convert("RGB").resize(s), np.float32)
           for f, s in zip(files, ((16, 8), (8, 16)))]
    tall_alone = encoded(tiny_vlm4, raw[1][None])[0]
    out = [tiny_vlm4.preprocessor.image_converter(r[None]) for r in raw]
    batch = {k: np.concatenate([np.asarray(o[k]) for o in out])[:, None]
             for k in ("pixel_values", "pixel_position_ids")}
    tall_in_batch = np.asarray(tiny_vlm4.backbone.vision_encoder(batch))[1, 0]
    assert not np.allclose(tall_in_batch, tall_alone, atol=1e-4)


def test_gemma4_with_a_tower_is_trained_and_3n_is_refused_in_one_sentence(tiny_vlm4):
    from types import SimpleNamespace

    refuse_text_only(tiny_vlm4)  # a Gemma 4 with a vision tower: no complaint
    tower = object()
    gemma3n = type("Gemma3nCausalLM", (), {
        "preprocessor": SimpleNamespace(image_converter=tower),
        "backbone": SimpleNamespace(vision_encoder=tower)})()
    with pytest.raises(UserError, match="is a Gemma 3n: its images are not trained here "
                                        r"\(KerasHub's Gemma 3n converter always builds"):
        refuse_text_only(gemma3n)
    text_only = type("Gemma4CausalLM", (), {
        "preprocessor": SimpleNamespace(image_converter=None),
        "backbone": SimpleNamespace(vision_encoder=None)})()
    with pytest.raises(UserError, match="has no vision tower"):
        refuse_text_only(text_only)


@pytest.fixture(scope="module")
def vlm4_folder(tmp_path_factory):
    """The tiny Gemma 4 vision model as a KerasHub preset folder, as `model.source` names
    one (its config names Gemma4Backbone, so runs use Gemma 4's chat format)."""
    import json

    folder = tmp_path_factory.mktemp("vlm4") / "preset"
    lm = build_tiny_gemma4_vlm()
    lm.save_to_preset(str(folder))
    # KerasHub 0.32's Gemma4ImageConverter.get_config leaves out max_soft_tokens and
    # pooling_kernel_size, so a saved preset reloads with the real models' 280 and 3 (right
    # for them, not for this tiny tower): write the tiny one's back
    c = lm.preprocessor.image_converter
    tiny = {"max_soft_tokens": c.max_soft_tokens, "pooling_kernel_size": c.pooling_kernel_size}

    def restore(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Gemma4ImageConverter":
                node["config"].update(tiny)
            for value in node.values():
                restore(value)

    for path in folder.glob("*.json"):  # the converter's, the preprocessor's, the task's
        config = json.loads(path.read_text())
        restore(config)
        path.write_text(json.dumps(config))
    return folder


def test_a_gemma4_image_run_learns_is_evaluated_and_answers_from_its_images(
        vlm4_folder, tmp_path):
    """`train` (as `gemma-panel run` runs it) on image rows of a Gemma 4 vision model: the
    loss and the validation loss fall, and each evaluation answers held-out rows from their
    pictures through KerasHub's generate function."""
    from gemma_panel.training import train
    from tests.training.test_image_run import image_recipe
    from tests.training.test_trainer import Recorder

    sink = Recorder()
    rows = write_colour_rows(tmp_path, repeat=3)  # 12 rows
    recipe = image_recipe(vlm4_folder, rows, "eval.num_samples=2", "eval.task_examples=3",
                          "eval.max_new_tokens=8", "lora.dropout=0")
    assert train(recipe, tmp_path / "run", sink=sink).status == "succeeded"
    assert sink.start["train_sequences"] == 9 and sink.start["validation_sequences"] == 3
    losses = [v for _, v in sink.series("loss")]
    assert len(losses) == 6 and losses[-1] < 0.85 * losses[0], losses
    val = sink.series("val_loss")
    assert [s for s, _ in val] == [0, 3, 6] and val[-1][1] < val[0][1]
    step, samples = sink.samples[-1]
    assert step == 6 and len(samples) == 2
    assert {s["reference"] for s in samples} == {"It is green.", "It is red."}
    # the same prompt with another picture: the base model's answers differ, so the
    # pictures reach KerasHub's generate function; six steps teach the answer's start
    assert samples[0]["base"] != samples[1]["base"], samples
    assert all(s["tuned"].startswith("It is") for s in samples), samples
    assert "exact_match" in sink.metrics[-1][2]


def test_a_gemma4_with_an_audio_tower_trains_image_rows(tiny_vlm4, colour_rows):
    """E2B and E4B also have an audio tower, whose backbone takes audio inputs: image rows
    give it the empty ones KerasHub's preprocessor writes for a row without audio."""
    import jax
    import keras_hub

    audio = keras_hub.models.Gemma4AudioEncoder(
        input_feat_size=16, hidden_size=16, num_heads=2, num_layers=1, chunk_size=4,
        context_left=5, sscp_conv_channels=(8, 4), output_proj_dims=16, output_dim=64)
    config = {**tiny_vlm4.backbone.get_config(), "audio_encoder": audio,
              "vision_encoder": tiny_vlm4.backbone.vision_encoder}
    backbone = keras_hub.models.Gemma4Backbone(**config)
    p = tiny_vlm4.preprocessor
    preprocessor = keras_hub.models.Gemma4CausalLMPreprocessor(
        tokenizer=p.tokenizer, image_converter=p.image_converter, sequence_length=48,
        max_images_per_prompt=1, num_vision_tokens_per_image=VISION_TOKENS,
        audio_input_feat_size=16)
    lm = keras_hub.models.Gemma4CausalLM(backbone=backbone, preprocessor=preprocessor)
    rows, _ = lay_out(preprocessor, colour_rows)
    batch = rows.grouped(1, 4).arrays()
    assert {"audio_mel", "audio_mask"} <= set(batch[3]) and "audio_mel" in backbone.input
    functions = VisionTrainFunctions(lm, recipe(), 1, 4 * 48)
    trainable, opt_state, frozen = functions.initial_state()
    _, _, metrics = functions.train_step(trainable, opt_state, frozen, batch,
                                         jax.random.key(0))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss_tokens"]) > 0
