"""Tiny random Gemma 3 and Gemma 4 models with tiny random vision towers, and plain-colour
image rows that only the image answers: for image training tests in seconds."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
           "white": (250, 250, 250)}
VISION_TOKENS = 4  # (16 px / 4 px patches / pool 2) ** 2


def build_tiny_vlm():
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


def write_colour_rows(folder: Path, repeat: int = 1) -> Path:
    """LLaVA rows (``repeat`` of each colour): a plain-colour picture and its colour."""
    (folder / "img").mkdir(exist_ok=True)
    rows = []
    for name, rgb in COLOURS.items():
        Image.new("RGB", (24, 20), rgb).save(folder / "img" / f"{name}.png")
    for i in range(repeat):
        for name in COLOURS:
            rows.append({"image": f"img/{name}.png", "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is it?" + " " * i},
                {"from": "gpt", "value": f"It is {name}."}]})
    path = folder / "colours.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GEMMA4_MARKERS = ["<|turn>", "<turn|>", "<|image>", "<|image|>", "<image|>", "<|video|>"]


def build_tiny_gemma4_vlm(sequence_length: int = 48):
    """Gemma 4 with 2 layers of width 64 and a 1-layer vision encoder: 4-px patches pooled
    2x2, at most 4 pooled tokens an image (a 16x16 canvas); a tokenizer with Gemma 4's turn
    and image markers. Its random weights are the same each time (seed 0)."""
    import keras
    import keras_hub
    import sentencepiece

    keras.utils.set_random_seed(0)

    proto = io.BytesIO()
    sentences = [f"<|turn>user\nWhat colour is it?<turn|>\n<|turn>model\nIt is {c}.<turn|>"
                 for c in COLOURS]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 20), model_writer=proto, vocab_size=300,
        model_type="bpe", byte_fallback=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2,
        user_defined_symbols=GEMMA4_MARKERS, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>")
    tokenizer = keras_hub.models.Gemma4Tokenizer(proto=proto.getvalue())
    encoder = keras_hub.models.Gemma4VisionEncoder(
        image_size=16, patch_size=4, num_heads=2, hidden_dim=16, num_layers=1,
        intermediate_dim=32, head_dim=8, output_dim=64, pool_size=2,
        position_embedding_size=16)
    backbone = keras_hub.models.Gemma4Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), image_size=16, num_layers=2,
        num_query_heads=2, num_key_value_heads=1, hidden_dim=64, intermediate_dim=128,
        head_dim=32, global_head_dim=32, sliding_window_size=64,
        layer_types=["sliding_attention", "full_attention"], vision_encoder=encoder,
        use_vision_bidirectional_attention=True)
    converter = keras_hub.layers.Gemma4ImageConverter(
        patch_size=4, max_soft_tokens=VISION_TOKENS, pooling_kernel_size=2, scale=1 / 255)
    preprocessor = keras_hub.models.Gemma4CausalLMPreprocessor(
        tokenizer=tokenizer, image_converter=converter, sequence_length=sequence_length,
        max_images_per_prompt=1, num_vision_tokens_per_image=VISION_TOKENS)
    return keras_hub.models.Gemma4CausalLM(backbone=backbone, preprocessor=preprocessor)


def check_targets_off_the_mask_change_nothing(lm, recipe, examples) -> None:
    """The loss reads targets only where the mask is: scrambling every other target
    (prompt, image tokens, padding) leaves it exactly as it was."""
    import numpy as np

    from gemma_panel.training.vision import VisionTrainFunctions, image_batch, step_batch

    functions = VisionTrainFunctions(lm, recipe, 1, 4 * 48)
    trainable, _, frozen = functions.initial_state()
    x, targets, mask = image_batch(lm.preprocessor, examples)
    scrambled = np.where(mask, targets, np.random.default_rng(0).integers(
        0, 300, targets.shape)).astype("int32")
    loss, count, _ = functions.eval_step(trainable, frozen, step_batch(x, targets, mask))
    loss2, count2, _ = functions.eval_step(trainable, frozen, step_batch(x, scrambled, mask))
    assert float(count) == float(count2) == mask.sum() and float(loss) == float(loss2)


def check_rows_equal_the_preprocessor(lm, examples, keys: tuple[str, ...]) -> None:
    """The trainer's rows (laid out once, pixels read per batch) equal KerasHub's
    preprocessor given the same rows with their images, in the token ids, targets, mask
    and each backbone input of ``keys`` (the first carries the pixels); nothing is
    dropped."""
    import numpy as np

    from gemma_panel.training.vision import image_batch, lay_out

    x, targets, mask = image_batch(lm.preprocessor, examples)
    rows, dropped = lay_out(lm.preprocessor, examples)
    token_ids, run_targets, run_mask, inputs = rows.arrays()
    assert dropped == 0 and inputs[keys[0]].std() > 0
    np.testing.assert_array_equal(token_ids, x["token_ids"])
    np.testing.assert_array_equal(run_targets, targets)
    np.testing.assert_array_equal(run_mask, mask)
    for key in keys:
        np.testing.assert_allclose(inputs[key], x[key], err_msg=key)
