"""The advfusion engine: language adapters, AdapterFusion and AdvFusion on any causal code LLM.

AdvFusion (arXiv 2511.02869) fuses frozen per-language adapters with AdapterFusion, first with
the target language's adapter masked, then restored. Typical use:

    model = load_model("Qwen/Qwen2.5-Coder-1.5B", quantization="4bit")
    host = attach_host(model)
    for lang in ("python", "java", "ruby"):
        host.add_adapter(lang, AdapterConfig.task_adapter())   # or AdapterConfig.compacter()
    host.fuse(["python", "java", "ruby"])
    host.mask("ruby")                                          # AdvFusion phase 1
    params = host.freeze_for_fusion_training()
    loss = model(**batch).loss + host.fusion_regularization()

LoRA runs through peft on the same base (`add_lora`). See docs/engine.md.
"""

from advfusion_cli.engine.architectures import (
    ArchitectureLayout,
    register_architecture,
    supported_architectures,
)
from advfusion_cli.engine.attention_record import FusionAttentionRecord
from advfusion_cli.engine.freezing import (
    count_parameters,
    enable_gradient_checkpointing,
    trainable_parameter_names,
)
from advfusion_cli.engine.host import AdapterHost, attach_host, default_adapter_dtype
from advfusion_cli.engine.loading import QuantizationConfig, load_model, load_tokenizer
from advfusion_cli.engine.lora import LoraSettings, add_lora, load_lora, save_lora
from advfusion_cli.engine.modules import AdapterConfig, FusionConfig
from advfusion_cli.engine.serialization import base_fingerprint

__all__ = [
    "AdapterConfig",
    "AdapterHost",
    "ArchitectureLayout",
    "FusionAttentionRecord",
    "FusionConfig",
    "LoraSettings",
    "QuantizationConfig",
    "add_lora",
    "attach_host",
    "base_fingerprint",
    "count_parameters",
    "default_adapter_dtype",
    "enable_gradient_checkpointing",
    "load_lora",
    "load_model",
    "load_tokenizer",
    "register_architecture",
    "save_lora",
    "supported_architectures",
    "trainable_parameter_names",
]
