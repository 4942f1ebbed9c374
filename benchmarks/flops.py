"""Model FLOPs of training a Gemma: the count lives in ``gemma_panel.planning.flops``.

The planner's time estimate and these benchmarks use one count; this module keeps the
``from flops import ...`` of the benchmark scripts and their tests working.
"""

from gemma_panel.planning.flops import Shape, attended, lora_macs, training_flops

__all__ = ["Shape", "attended", "lora_macs", "training_flops"]
