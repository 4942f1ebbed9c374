"""What differs between the Gemma families' image inputs, in one place.

An image run is the same for Gemma 3 and Gemma 4 (training/vision.py): KerasHub's own
preprocessor lays each row out (the image's placeholder tokens, ``vision_indices``,
``vision_mask``, a loss weight on the response only), the pixels are read per batch, and the
trainer's step, optimizer, LoRA and LM-head loss do the rest. Three things differ, and each
family's class (`Gemma3Inputs`, `Gemma4Inputs`) says them:

- **the prompt's image marker**: Gemma 3's ``<start_of_image>``; Gemma 4's
  ``preprocessor.image_placeholder`` (``<|image|>``), which its preprocessor expands to
  ``<|image>``, ``num_vision_tokens_per_image`` ``<|image|>`` and ``<image|>``.
- **the canvas a file is read onto**: Gemma 3's converter takes one fixed square
  (``image_size``, 896 px), and each image is resized to it, as KerasHub resizes it.
  Gemma 4's converter keeps the aspect ratio, scaling an image to at most
  ``max_soft_tokens`` pooled patches; but every image of a batch must share one patch
  grid, because KerasHub's pooling (``Gemma4VisionAveragePooling``) takes the pooled
  grid's width from the widest image of the whole batch, and a narrower image's patches
  then fall into the wrong pooled tokens, or past the last (tests/training/
  test_image_gemma4.py shows it). So each image is scaled, aspect ratio kept, to fit the converter's square
  canvas (the side it gives a square picture: 768 px for 280 tokens of 16-px patches
  pooled 3x3) and padded with black on the right and bottom, where KerasHub's own batch
  path pads; a square picture gets the patch grid KerasHub gives it alone.
- **the backbone's inputs**: Gemma 3 takes ``images`` (the converter's output); Gemma 4
  ``pixel_values`` and ``pixel_position_ids`` (the converter's patches, padded to a fixed
  count), ``position_ids``, and the empty audio inputs its preprocessor writes.

Gemma 3n is refused: KerasHub's converter always builds its 300M-parameter vision tower,
whose inputs (and preprocessor) are neither family's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gemma_panel.data.images import IMAGE_TOKEN


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """An image as float32 RGB (height, width, 3), 0-255, resized to `size` (height, width)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32)


def letterbox_image(path: Path, side: int) -> np.ndarray:
    """An image as float32 RGB (side, side, 3), 0-255: scaled (bicubic, aspect ratio kept)
    until its longer side is `side`, black on the right or bottom."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        scale = side / max(rgb.size)
        size = tuple(min(side, max(1, round(n * scale))) for n in rgb.size)
        canvas = Image.new("RGB", (side, side))
        canvas.paste(rgb.resize(size, Image.BICUBIC), (0, 0))
    return np.asarray(canvas, dtype=np.float32)


class Gemma3Inputs:
    """Gemma 3's image inputs (`Gemma3CausalLMPreprocessor` with its image converter)."""

    family = "Gemma 3"

    def __init__(self, preprocessor):
        self.preprocessor = preprocessor
        self.converter = preprocessor.image_converter
        self.most = preprocessor.max_images_per_prompt

    @property
    def marker(self) -> str:
        return IMAGE_TOKEN

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) every image is read at."""
        return tuple(self.converter.image_size)

    def read(self, path: Path) -> np.ndarray:
        return load_image(path, self.canvas)

    def pixels(self, files: np.ndarray) -> np.ndarray:
        """(``*files.shape``, images per prompt, height, width, 3) float32, 0-255: each
        cell's image files read onto the canvas, black where a row has fewer images."""
        out = np.zeros((*files.shape, self.most, *self.canvas, 3), np.float32)
        for at in np.ndindex(files.shape):
            for j, file in enumerate(files[at][: self.most]):
                out[(*at, j)] = self.read(Path(file))
        return out

    def backbone_pixels(self, pixels: np.ndarray) -> dict:
        """`pixels` as the backbone takes them, converted as the preprocessor converts."""
        flat = pixels.reshape(-1, *pixels.shape[-3:])
        return {"images": np.asarray(self.converter(flat), np.float32).reshape(pixels.shape)}

    def text_inputs(self, token_ids: np.ndarray) -> dict:
        """The backbone's other per-token inputs besides those `lay_out` keeps: none."""
        return {}


class Gemma4Inputs(Gemma3Inputs):
    """Gemma 4's image inputs (`Gemma4CausalLMPreprocessor` with its image converter)."""

    family = "Gemma 4"

    @property
    def marker(self) -> str:
        return self.preprocessor.image_placeholder

    @property
    def canvas(self) -> tuple[int, int]:
        """The square the converter gives a square picture: its side is the largest
        multiple of patch x pooling whose patches fit ``max_soft_tokens`` pooled tokens."""
        c = self.converter
        side = math.isqrt(c.max_soft_tokens) * c.patch_size * c.pooling_kernel_size
        return side, side

    def read(self, path: Path) -> np.ndarray:
        return letterbox_image(path, self.canvas[0])

    def backbone_pixels(self, pixels: np.ndarray) -> dict:
        lead = pixels.shape[:-3]  # (..., images per prompt)
        out = self.converter(pixels.reshape(-1, *pixels.shape[-3:]))
        values = np.asarray(out["pixel_values"], np.float32)
        positions = np.asarray(out["pixel_position_ids"], np.int32)
        return {"pixel_values": values.reshape(*lead, *values.shape[1:]),
                "pixel_position_ids": positions.reshape(*lead, *positions.shape[1:])}

    def text_inputs(self, token_ids: np.ndarray) -> dict:
        """Each token's position (0, 1, ... as the preprocessor counts them) and the empty
        audio inputs the preprocessor writes for a row without audio."""
        lead, length = token_ids.shape[:-1], token_ids.shape[-1]
        out = {"position_ids": np.broadcast_to(np.arange(length, dtype=np.int32),
                                               token_ids.shape).copy()}
        feat = getattr(self.preprocessor, "audio_input_feat_size", 0)
        if feat:
            out.update(audio_mel=np.zeros((*lead, 0, 1, feat), np.float32),
                       audio_mel_mask=np.zeros((*lead, 0, 1), np.int32),
                       audio_indices=np.zeros((*lead, 0), np.int32),
                       audio_mask=np.zeros(token_ids.shape, np.int32))
        return out


FAMILIES = {"Gemma3CausalLM": Gemma3Inputs, "Gemma4CausalLM": Gemma4Inputs}


def image_inputs(preprocessor) -> Gemma3Inputs:
    """The image inputs of a causal LM's preprocessor, by its family."""
    name = type(preprocessor).__name__.removesuffix("Preprocessor")
    return FAMILIES.get(name, Gemma3Inputs)(preprocessor)
