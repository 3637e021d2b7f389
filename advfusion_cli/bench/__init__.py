"""Throughput and memory benchmark: every adapter method's training step as a ratio to the frozen base.

`run_bench(BenchSettings(...))` measures, side by side in one process and on one random base
model, the frozen base's forward+backward (the floor), one task adapter, one Compacter, peft
LoRA, AdapterFusion and AdvFusion phase 1 for several N, plus generation throughput; `render`
and `write_json` report it. See docs/performance.md.
"""

from advfusion_cli.bench.configurations import Configuration, training_configurations
from advfusion_cli.bench.generation import GenerationSettings
from advfusion_cli.bench.real_shapes import fusion_memory, fusion_parameters_per_place
from advfusion_cli.bench.report import goal_checks, render, write_json
from advfusion_cli.bench.runner import BenchSettings, run_bench
from advfusion_cli.bench.shapes import BenchShapes

__all__ = [
    "BenchSettings",
    "BenchShapes",
    "Configuration",
    "GenerationSettings",
    "fusion_memory",
    "fusion_parameters_per_place",
    "goal_checks",
    "render",
    "run_bench",
    "training_configurations",
    "write_json",
]
