"""Scale: the devices a run sees, how it spreads over them, and where each weight lives.

``describe_devices`` (devices.py) reports the hardware; ``resolve`` (distribution.py) turns
the recipe's ``distribution`` section into a mesh plan; ``step_shardings`` (layouts.py) lays
the train step's weights, LoRA factors, optimizer state and batches onto that mesh with the
Gemma layout map.
"""

from gemma_panel.distribution.devices import DeviceReport, describe_devices
from gemma_panel.distribution.layouts import StepShardings, gemma_layout_map, step_shardings
from gemma_panel.distribution.strategy import (
    STRATEGIES,
    DistributionError,
    DistributionSection,
    MeshPlan,
    resolve,
    section_problems,
)

__all__ = [
    "STRATEGIES", "DeviceReport", "DistributionError", "DistributionSection", "MeshPlan",
    "StepShardings", "describe_devices", "gemma_layout_map", "resolve", "section_problems",
    "step_shardings",
]
