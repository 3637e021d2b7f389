"""LoRA baseline through peft (Hu et al., 2021: W x + (alpha/r) B A x) on a loaded base.

The same `load_model` base serves LoRA and the adapters. 4-bit/8-bit bases are prepared the
QLoRA way (peft's `prepare_model_for_kbit_training`: norms, embeddings and lm_head upcast to
fp32, everything frozen) both when LoRA is added for training and when it is loaded for
evaluation, so a LoRA run is evaluated on the model it was trained on. Weights are saved in
peft's own format so any peft user can load them; a small `base_fingerprint.json` beside them
guards against loading onto the wrong base.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from advfusion_cli.engine.architectures import layout_for
from advfusion_cli.engine.freezing import enable_gradient_checkpointing
from advfusion_cli.engine.serialization import (
    ADAPTER_CONFIG,
    base_fingerprint,
    check_fingerprint,
    read_json,
    write_json,
)
from advfusion_cli.errors import UserError

FINGERPRINT_FILE = "base_fingerprint.json"


@dataclass(frozen=True)
class LoraSettings:
    """The authors' LoRA: r 16, alpha 16, dropout 0.1, no bias; targets per architecture."""

    r: int = 16
    alpha: float = 16
    dropout: float = 0.1
    bias: Literal["none", "all", "lora_only"] = "none"
    target_modules: tuple[str, ...] | None = None  # None: the architecture's registered default

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise UserError(f"LoRA r must be a positive integer, got {self.r!r}.")
        if self.alpha <= 0:
            raise UserError(f"LoRA alpha must be positive, got {self.alpha!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}.")
        if self.bias not in ("none", "all", "lora_only"):
            raise UserError(f"LoRA bias must be none, all or lora_only, got '{self.bias}'.")
        if self.target_modules is not None:
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
            if not self.target_modules:
                raise UserError("LoRA target_modules must not be empty.")


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft calls transformers' deprecated *gradient_checkpointing* names; not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated")
        yield


def is_quantized(model: nn.Module) -> bool:
    return bool(
        getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    )


def _check_targets(model: nn.Module, targets: tuple[str, ...]) -> None:
    leaf_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in leaf_names]
    if missing:
        raise UserError(
            f"LoRA target module(s) {', '.join(missing)} not found in {type(model).__name__}."
        )


_PREPARED = "_advfusion_kbit_prepared"


def prepare_quantized_base(model: nn.Module, *, gradient_checkpointing: bool = False) -> bool:
    """peft's k-bit preparation of a 4-/8-bit base (once per model); False when not quantized.

    Training and evaluation both call this, so the non-quantized parts (norms, embeddings,
    lm_head) are fp32 in both: skipping it at evaluation would score LoRA on a bf16 variant
    of the model it was trained on.
    """
    from peft import prepare_model_for_kbit_training

    if not is_quantized(model):
        return False
    if getattr(model, _PREPARED, False) and not gradient_checkpointing:
        return True
    with _quiet_peft():
        prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    setattr(model, _PREPARED, True)
    return True


def add_lora(
    model: nn.Module, settings: LoraSettings | None = None, *, gradient_checkpointing: bool = False
):
    """Wrap `model` with fresh LoRA weights; only the LoRA matrices are trainable.

    Returns the `peft.PeftModel` (use it in place of `model`).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        raise UserError("This model already carries peft adapters; load a fresh base for LoRA.")
    if getattr(model, "_advfusion_host", None) is not None:
        raise UserError("This model carries an AdapterHost; detach it before adding LoRA.")
    settings = settings or LoraSettings()
    targets = settings.target_modules or layout_for(model).lora_targets
    _check_targets(model, targets)
    prepared = prepare_quantized_base(model, gradient_checkpointing=gradient_checkpointing)
    if gradient_checkpointing and not prepared:  # peft's preparation enabled it already
        enable_gradient_checkpointing(model)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        bias=settings.bias,
        target_modules=list(targets),
        task_type="CAUSAL_LM",
    )
    was_training = model.training
    with _quiet_peft():
        peft_model = get_peft_model(model, config)
    return peft_model.train(was_training)  # peft leaves the new LoRA layers in train mode


def save_lora(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Save the LoRA weights in peft's format (adapter_model.safetensors + adapter_config.json)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise UserError("save_lora needs the model returned by add_lora or load_lora.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    write_json(folder / FINGERPRINT_FILE, base_fingerprint(model.get_base_model()))
    return folder


def load_lora(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    is_trainable: bool = False,
    strict_base: bool = True,
):
    """Load saved LoRA weights onto a base model; returns the `peft.PeftModel`.

    A quantized base gets the same k-bit preparation as in training (`prepare_quantized_base`).
    """
    from peft import PeftModel

    folder = Path(folder)
    config_path = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise UserError(f"LoRA folder '{folder}' does not exist.")
    peft_config = read_json(config_path)
    if "peft_type" not in peft_config:
        raise UserError(
            f"{config_path} is not a peft config (kind {peft_config.get('kind')!r}); "
            "load advfusion adapters with AdapterHost.load_adapter."
        )
    if not (folder / "adapter_model.safetensors").is_file():
        # peft would fall back to a pickled adapter_model.bin, which can run code on load.
        raise UserError(
            f"LoRA folder '{folder}' has no adapter_model.safetensors "
            "(only safetensors weights are loaded)."
        )
    fingerprint_path = folder / FINGERPRINT_FILE
    if fingerprint_path.is_file():
        check_fingerprint(
            read_json(fingerprint_path), base_fingerprint(model), fingerprint_path, strict_base
        )
    prepare_quantized_base(model)  # after the checks: a refused folder leaves the base as it was
    try:
        with _quiet_peft():
            return PeftModel.from_pretrained(model, str(folder), is_trainable=is_trainable)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"Could not load LoRA weights from '{folder}': {exc}") from exc
