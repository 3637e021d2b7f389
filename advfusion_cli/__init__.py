"""advfusion: adapter-based multilingual fine-tuning of code LLMs (AdvFusion and baselines)."""

__version__ = "0.1.0"
