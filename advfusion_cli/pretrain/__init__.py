"""The embedded default model: a tiny Llama pretrained offline on the generated testbed corpus.

`embedded_model_path()` points at the committed folder; `pretrain_base` regenerates it.
"""

from advfusion_cli.pretrain.embedded import EMBEDDED_MODEL_ID, embedded_model_path

__all__ = ["EMBEDDED_MODEL_ID", "embedded_model_path"]
