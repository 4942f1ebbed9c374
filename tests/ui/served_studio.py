"""The studio as the browser tests serve it: a recipe and a trainer from the environment.

GP_TEST_RECIPE: a recipe YAML to start from (the tests' tiny model);
GP_TEST_TRAINER: module:function the workers run (default: the real trainer).
"""

import os

from gemma_panel.config import load_recipe
from gemma_panel.runs import DEFAULT_TRAINER
from gemma_panel.ui import create_app

recipe = load_recipe(os.environ["GP_TEST_RECIPE"]) if os.environ.get("GP_TEST_RECIPE") else None
create_app(recipe=recipe, trainer=os.environ.get("GP_TEST_TRAINER", DEFAULT_TRAINER)).servable()
