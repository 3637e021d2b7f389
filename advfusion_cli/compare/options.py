"""Parsing `compare`'s lists: methods (with did-you-mean), seeds, and one `--vary key=v1,v2`."""

from __future__ import annotations

from dataclasses import dataclass

from advfusion_cli.errors import UserError
from advfusion_cli.inference.resolve import canonical_method
from advfusion_cli.spec.schema import MAX_SEED

DEFAULT_METHODS = (
    "lora",
    "compacter",
    "task-adapter",
    "adapterfusion",
    "advfusion",
    "advfusion-compacter",
)
ADAPTER_METHODS = ("lora", "compacter", "task-adapter")
FUSION_METHODS = (
    "adapterfusion",
    "adapterfusion-compacter",
    "advfusion",
    "advfusion-compacter",
)

# Short names for the settings people vary most; any dotted spec key works too.
VARY_SHORTHANDS = {
    "quantization": "model.quantization",
    "dtype": "model.dtype",
    "lr": "training.lr",
    "fusion_lr": "training.fusion_lr",
    "fusion-lr": "training.fusion_lr",
    "steps": "training.max_steps",
    "max_steps": "training.max_steps",
    "batch_size": "training.batch_size",
    "mask_mode": "method.mask_mode",
    "mask-mode": "method.mask_mode",
    "phase1_data": "method.phase1_data",
    "phase1-data": "method.phase1_data",
    "reduction_factor": "method.reduction_factor",
    "temperature": "method.temperature",
    "regularization_weight": "method.regularization_weight",
}


def parse_methods(text: str) -> list[str]:
    """Canonical method labels in the given order; duplicates and unknown names are errors."""
    methods: list[str] = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        method = canonical_method(raw)
        if method in methods:
            raise UserError(f"--methods lists '{method}' twice.")
        methods.append(method)
    if not methods:
        raise UserError("--methods needs at least one method, e.g. --methods lora,advfusion.")
    return methods


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            continue
        try:
            seed = int(raw)
        except ValueError:
            raise UserError(f"--seeds takes integers separated by commas, got '{raw}'.") from None
        if not 0 <= seed <= MAX_SEED:
            raise UserError(f"--seeds: {seed} is out of range (a seed is 0 to {MAX_SEED}).")
        if seed in seeds:
            raise UserError(f"--seeds lists {seed} twice.")
        seeds.append(seed)
    if not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 0,1,2.")
    return seeds


@dataclass(frozen=True)
class Vary:
    """One setting run at several values; `key` is the dotted spec key, `label` as typed."""

    key: str
    label: str
    values: tuple[str, ...]


def parse_vary(text: str | None) -> Vary | None:
    if text is None:
        return None
    name, sep, values_text = text.partition("=")
    name = name.strip()
    values = tuple(v.strip() for v in values_text.split(",") if v.strip())
    if not sep or not name or not values:
        raise UserError(f"--vary takes key=v1,v2 (e.g. quantization=4bit,none), got '{text}'.")
    if len(set(values)) != len(values):
        raise UserError(f"--vary lists a value twice: '{values_text}'.")
    key = VARY_SHORTHANDS.get(name, name)
    if "." not in key:
        from advfusion_cli.errors import unknown_name_error

        raise unknown_name_error("--vary key", name, [*VARY_SHORTHANDS, "<section.key>"])
    if key == "training.seed":  # every job's seed comes from --seeds, which would win
        raise UserError(
            f"--vary {name} conflicts with --seeds, which sets training.seed: "
            f"use --seeds {','.join(values)} instead."
        )
    return Vary(key, name, values)
