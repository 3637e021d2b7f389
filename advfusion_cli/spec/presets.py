"""Named presets: whole groups of settings chosen by one word (`preset: paper`).

A preset sits between the schema defaults and the spec file. It has common values and
per-method values; the latter apply only to the method finally chosen (by the spec file,
`--set` or a flag), so a preset can tune AdvFusion without making a LoRA spec invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advfusion_cli.errors import unknown_name_error


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)
    method_values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def method_layer(self, method_name: str) -> dict[str, Any]:
        """The preset's settings for `method_name` (they sit under the user's method keys)."""
        return dict(self.method_values.get(method_name, {}))


# The schema defaults ARE the testbed settings (what runs with no arguments); the preset
# exists so a spec can name them explicitly and so `paper` has a counterpart.
TESTBED = Preset(
    name="testbed",
    description=(
        "The embedded default: the shipped tiny model on the generated testbed, fp32 on CPU. "
        "Adapters lr 5e-3 and fusion lr 1e-3 (a 2-M-parameter model needs far more than the "
        "paper's 1e-4: 5e-3 doubled the adapter's BLEU in the testbed notes), 150 optimizer "
        "steps of batch 8 per stage, AdvFusion 75 + 75 steps (equal compute to AdapterFusion), "
        "lengths 384/256/512: a whole demo runs in minutes on 2 CPU cores."
    ),
)

PAPER = Preset(
    name="paper",
    description=(
        "The authors' settings (arXiv 2511.02869, their code): 4-bit NF4 with double "
        "quantization and bf16 compute, gradient checkpointing, paged_adamw_32bit, linear "
        "schedule with 3% warmup, weight decay 0, lr 1e-4 for adapters and fusion, 2 epochs "
        "per stage (and per AdvFusion phase), batch 1 x grad-accum 4, prompt/target/total "
        "4096/4096/8192 tokens, loss over prompt and target, eval and save every 0.2 epoch, "
        "best checkpoint by eval loss kept."
    ),
    values={
        "model": {
            "quantization": "4bit",
            "double_quant": True,
            "dtype": "bfloat16",
            "compute_dtype": "bfloat16",
            "gradient_checkpointing": True,
        },
        "data": {
            "max_prompt_tokens": 4096,
            "max_target_tokens": 4096,
            "max_total_tokens": 8192,
            "loss_on": "all",
        },
        "training": {
            "lr": 1e-4,
            "fusion_lr": 1e-4,
            "scheduler": "linear",
            "warmup_ratio": 0.03,
            "weight_decay": 0.0,
            "epochs": 2.0,
            "max_steps": None,
            "batch_size": 1,
            "grad_accum": 4,
            "eval_every_epochs": 0.2,
            "eval_every_steps": None,
            "save_every_epochs": 0.2,
            "save_every_steps": None,
            "keep_best": True,
            "optimizer": "paged_adamw_32bit",
            "precision": "bf16",
            "max_grad_norm": 1.0,
        },
    },
    method_values={
        "lora": {"r": 16, "alpha": 16.0, "dropout": 0.1},
        "advfusion": {
            "split_budget": False,
            "mask_mode": "zero",
            "phase1_data": "target",
            "reset_optimizer_between_phases": False,
        },
    },
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (TESTBED, PAPER)}
DEFAULT_PRESET = TESTBED.name


def canonical_preset(name: str) -> str:
    key = name.strip().lower()
    if key in PRESETS:
        return key
    raise unknown_name_error("preset", name, PRESETS)


def get_preset(name: str) -> Preset:
    return PRESETS[canonical_preset(name)]
