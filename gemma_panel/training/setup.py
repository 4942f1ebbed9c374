"""What a run starts from: the tuned model (LoRA enabled, weights still the base's) and the
recipe's data prepared with its tokenizer; ``TrainingError`` for a run that cannot go on.

``train`` (trainer.py), the planner's calibration and the exporters' run loader all start
here, so the three build the same model from the same recipe.
"""

from __future__ import annotations

from gemma_panel.config import Recipe
from gemma_panel.errors import UserError


class TrainingError(UserError, RuntimeError):
    """A run that cannot go on, said in words with what to try next."""



def load_tuned_model(recipe: Recipe):
    """The recipe's model with LoRA enabled as configured (weights still the base's), its
    frozen weights quantized to int8 first when ``memory.base_weights`` says so."""
    import keras

    from gemma_panel.models import load_model
    from gemma_panel.models.lora import enable_lora, quantize_int8

    keras.utils.set_random_seed(recipe.train.seed)
    lm = load_model(recipe.model.source, dtype=recipe.model.dtype, progress=False)
    backbone = lm.backbone
    if recipe.lora.enabled:
        if recipe.memory.base_weights == "int8":  # quantize first: LoRA factors stay float
            quantize_int8(backbone)
        enable_lora(backbone, recipe.lora.rank, recipe.lora.alpha, recipe.lora.target_layers,
                    seed=recipe.train.seed)
    else:
        backbone.trainable = True
    return lm


def prepare_data(recipe: Recipe, lm):
    """Read, check, split and tokenize the recipe's data with the model's tokenizer.

    The same preparation the dashboard's preflight runs (``gemma_panel.data.preflight``).
    """
    from gemma_panel.data import DatasetError, KerasHubTokenizer
    from gemma_panel.data.preflight import prepare_recipe_data

    try:
        return prepare_recipe_data(recipe, KerasHubTokenizer(lm.preprocessor.tokenizer))
    except DatasetError as exc:
        raise TrainingError(f"the data cannot be used: {exc}") from exc
