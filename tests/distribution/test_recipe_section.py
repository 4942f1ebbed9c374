"""The recipe's ``distribution`` section and the ``devices`` command, end to end."""

import json
import os
import subprocess
import sys

import pytest

from gemma_panel.config import RecipeError, load_recipe, recipe_to_yaml


def test_a_mesh_override_is_kept_as_whole_numbers_and_written_back():
    recipe = load_recipe("recipes/quickstart.yaml",
                         ["distribution.strategy=fsdp", "distribution.mesh={batch: 2, model: 1}"])
    assert recipe.distribution.strategy == "fsdp"
    assert recipe.distribution.mesh == {"batch": 2, "model": 1}
    assert "mesh: {batch: 2, model: 1}" in recipe_to_yaml(recipe)


@pytest.mark.parametrize("override, words", [
    ("distribution.mesh={batch: two}", "whole numbers"),
    ("distribution.mesh={gpu: 2}", "unknown axis 'gpu'"),
    ("distribution.strategy=ddp", "is not one of auto"),
])
def test_a_bad_distribution_setting_is_refused_before_any_device_is_seen(override, words):
    with pytest.raises(RecipeError, match=words):
        load_recipe("recipes/quickstart.yaml", [override])


def test_devices_reports_every_device_jax_sees():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    done = subprocess.run([sys.executable, "-m", "gemma_panel", "devices", "--json"],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert (report["backend"], report["count"], report["hosts"]) == ("cpu", 4, 1)


CONFIGURE_DEVICES = """
import sys
from gemma_panel.ui.config_model import ConfigModel
config = ConfigModel(base_path=None)
config.check_devices()
config.jobs.wait(120)
config.jobs.poll()
print(config.devices)
print("jax imported" if "jax" in sys.modules else "no jax")
"""


def test_the_configure_tab_shows_the_devices_a_child_process_sees():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, "-c", CONFIGURE_DEVICES], capture_output=True,
                          text=True, env=env, timeout=180, check=True)
    devices, jax_state = done.stdout.strip().splitlines()[-2:]
    assert devices.startswith("devices: 2 x cpu (cpu backend)"), devices
    assert jax_state == "no jax"  # the dashboard's process never starts JAX for it
