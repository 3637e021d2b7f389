"""Load a causal code LLM (hub id or local folder) in full precision, 8-bit or 4-bit NF4.

QLoRA-style 4-bit loading (Dettmers et al., 2023): NF4 weights, double quantization of the
scales, a compute dtype for the matmuls (bf16 on GPU, fp32 on CPU by default). The tokenizer
always gets a pad token (eos, else unk; never a new one, so embeddings are never resized) and
left padding, which generation with a decoder-only model needs.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from advfusion_cli.errors import UserError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
QUANTIZATION_MODES = ("none", "8bit", "4bit")


@dataclass(frozen=True)
class QuantizationConfig:
    """How to quantize the base weights (bitsandbytes). `mode` "none" loads them as stored."""

    mode: Literal["none", "8bit", "4bit"] = "none"
    quant_type: Literal["nf4", "fp4"] = "nf4"  # 4-bit only
    double_quant: bool = True  # 4-bit only: quantize the quantization scales too
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = (
        "auto"  # auto: bf16 GPU, fp32 CPU
    )

    def __post_init__(self) -> None:
        if self.mode not in QUANTIZATION_MODES:
            raise UserError(
                f"Unknown quantization '{self.mode}'. Available: {', '.join(QUANTIZATION_MODES)}."
            )
        if self.quant_type not in ("nf4", "fp4"):
            raise UserError(f"Unknown 4-bit quant_type '{self.quant_type}'. Available: nf4, fp4.")
        if self.compute_dtype != "auto" and self.compute_dtype not in DTYPES:
            raise UserError(
                f"Unknown compute_dtype '{self.compute_dtype}'. Available: auto, {', '.join(DTYPES)}."
            )

    @classmethod
    def parse(cls, value: QuantizationConfig | str | None) -> QuantizationConfig:
        """Accept a config, a mode name ("none", "8bit", "4bit") or None (= "none")."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(mode=value.strip().lower())  # type: ignore[arg-type]
        raise UserError(
            f"quantization must be one of {', '.join(QUANTIZATION_MODES)}; got {value!r}."
        )

    def to_transformers(self, on_gpu: bool):
        """The `BitsAndBytesConfig` for `from_pretrained`, or None for mode "none"."""
        if self.mode == "none":
            return None
        from transformers import BitsAndBytesConfig

        if self.mode == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        if self.compute_dtype == "auto":
            compute = torch.bfloat16 if on_gpu else torch.float32
        else:
            compute = DTYPES[self.compute_dtype]
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=compute,
        )


def resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """ "auto" (the checkpoint's own dtype) or a torch dtype from its name."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return "auto"
    if dtype not in DTYPES:
        raise UserError(f"Unknown dtype '{dtype}'. Available: auto, {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else with separators is meant as a folder."""
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\"))
        or name.endswith(("/", "\\"))
        or name.count("/") > 1
        or "\\" in name
    )


def check_source(name_or_path: str, what: str = "model") -> str:
    """Return the hub id or folder to load, failing early on a folder that cannot work."""
    if not isinstance(name_or_path, str | os.PathLike) or not str(name_or_path).strip():
        raise UserError(f"A {what} name or path is required (got {name_or_path!r}).")
    name = str(name_or_path).strip()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what.capitalize()} path '{name}' is a file; expected a folder.")
        if what == "model" and not (path / "config.json").is_file():
            raise UserError(f"Model folder '{name}' has no config.json.")
        return str(path)
    if _looks_like_path(name):
        raise UserError(f"{what.capitalize()} folder '{name}' does not exist.")
    return name


class _HeldLoadReport(logging.Filter):
    """Holds transformers' multi-line LOAD REPORT while a model loads.

    When the load then fails on mismatched shapes, the report would be a second, many-line
    stderr message next to our one-line error: it is dropped (its first mismatch goes into
    the error). Otherwise `release()` logs it as transformers would have.
    """

    LOGGER = "transformers.modeling_utils"

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            self.records.append(record)
            return False
        return True

    def __enter__(self) -> _HeldLoadReport:
        logging.getLogger(self.LOGGER).addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)

    def release(self) -> None:
        logger = logging.getLogger(self.LOGGER)
        for record in self.records:
            logger.handle(record)
        self.records = []

    def first_mismatch(self) -> str:
        """` (model.embed_tokens.weight: ckpt ... vs model ...)` from the held report, or ''."""
        for record in self.records:
            for line in str(record.msg).splitlines():
                cells = [cell.strip() for cell in line.split("|")]
                if len(cells) >= 3 and "MISMATCH" in cells[1]:
                    shapes = re.findall(r"torch\.Size\(\[([^\]]*)\]\)", cells[2])
                    if len(shapes) == 2:
                        stored, built = shapes
                        return f" ({cells[0]}: stored [{stored}], config.json gives [{built}])"
                    return f" ({cells[0]})"
        return ""


def _config_reason(exc: BaseException) -> str:
    """The useful line of a config error: the validator's own message when it wraps one."""
    if isinstance(exc, ArithmeticError):
        return f"a size or head count is invalid ({type(exc).__name__}: {_first_line(exc)})"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    inner = [line for line in lines[1:] if line.startswith(("ValueError:", "TypeError:"))]
    if inner:
        return inner[0].split(":", 1)[1].strip()
    return _first_line(exc)


def _weights_reason(exc: BaseException) -> str:
    from safetensors import SafetensorError

    if isinstance(exc, SafetensorError):
        return f"model.safetensors is not a readable safetensors file ({_first_line(exc)})"
    return _config_reason(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _config_errors() -> tuple[type[BaseException], ...]:
    """What building a model config from a bad config.json raises (a user input problem)."""
    found: list[type[BaseException]] = [OSError, ValueError, KeyError, TypeError, ArithmeticError]
    try:  # transformers validates configs with huggingface_hub's strict dataclasses
        from huggingface_hub.errors import StrictDataclassError

        found.append(StrictDataclassError)
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    return tuple(found)


def _weight_errors() -> tuple[type[BaseException], ...]:
    """What loading unreadable weights raises: a junk/truncated safetensors file."""
    from safetensors import SafetensorError  # a dependency of transformers

    return (OSError, ValueError, SafetensorError)


def _weights_mismatch(exc: BaseException) -> bool:
    """transformers' error when the stored weights' shapes differ from what config.json builds."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "ignore_mismatched_sizes" in text or "size mismatch" in text
    )


def _is_causal_lm_config(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


def _wants_gpu(device_map) -> bool:
    if not torch.cuda.is_available():
        return False
    return device_map is None or not (isinstance(device_map, str) and device_map == "cpu")


def load_model(
    name_or_path: str | os.PathLike,
    quantization: QuantizationConfig | str | None = "none",
    dtype: str | torch.dtype = "auto",
    device_map: str | dict | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> nn.Module:
    """Load a causal LM from a hub id or a local folder; returns it in eval mode.

    device_map: None (one device: the GPU when there is one, else CPU), or anything
    `from_pretrained` accepts ("auto", "cpu", "cuda", {"": 0}, ...).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    source = check_source(str(name_or_path), "model")
    quant = QuantizationConfig.parse(quantization)
    torch_dtype = resolve_dtype(dtype)
    try:
        config = AutoConfig.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code
        )
    except _config_errors() as exc:
        # A config.json whose values cannot build a model (hidden_size not a multiple of the
        # heads, zero heads, a wrong type) is the user's input, not a programming error.
        raise UserError(
            f"Could not load the config of model '{source}' ({Path(source) / 'config.json'}): "
            f"{_config_reason(exc)}"
        ) from exc
    if not trust_remote_code and not _is_causal_lm_config(config):
        raise UserError(
            f"Model '{source}' (model_type '{config.model_type}') is not a causal language model."
        )

    on_gpu = _wants_gpu(device_map)
    if device_map is None and on_gpu:
        device_map = {"": torch.cuda.current_device()}
    # Weights load from safetensors only: a pickled pytorch_model.bin can run code on load.
    kwargs: dict = dict(
        revision=revision,
        trust_remote_code=trust_remote_code,
        dtype=torch_dtype,
        use_safetensors=True,
    )
    bnb_config = quant.to_transformers(on_gpu)
    if bnb_config is not None:
        _require_bitsandbytes(quant.mode)
        kwargs["quantization_config"] = bnb_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    held = _HeldLoadReport()
    try:
        with held:
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except _config_errors() + _weight_errors() as exc:
        raise UserError(f"Could not load model '{source}': {_weights_reason(exc)}") from exc
    except RuntimeError as exc:
        if not _weights_mismatch(exc):
            held.release()
            raise
        raise UserError(
            f"Could not load model '{source}': the shapes of its weights do not match its "
            f"config.json{held.first_mismatch()} (check vocab_size, hidden_size, "
            "intermediate_size, the head counts)."
        ) from exc
    held.release()
    if quant.mode == "4bit":
        keep_cpu_4bit_weights_differentiable(model)
    model.eval()
    return model


def _require_bitsandbytes(mode: str) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise UserError(f"quantization '{mode}' needs the bitsandbytes package.") from exc


def keep_cpu_4bit_weights_differentiable(model: nn.Module) -> int:
    """Turn off bitsandbytes' CPU-only inference repacking of 4-bit weights; returns the count.

    On CPUs with AVX512-BF16, bitsandbytes rewrites a Linear4bit's weight in place into a
    packed layout the first time it runs in eval mode without grad, and that layout has no
    backward: training after any evaluation would silently get wrong gradients. GPUs are
    unaffected; on CPU we trade that inference speed-up for correct training.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def load_tokenizer(
    name_or_path: str | os.PathLike,
    padding_side: Literal["left", "right"] = "left",
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """Load the tokenizer and guarantee a pad token without adding tokens.

    The pad token reuses eos (else unk); a tokenizer with neither fails, because adding a new
    token would silently require resizing the model's embeddings.
    """
    from transformers import AutoTokenizer

    if padding_side not in ("left", "right"):
        raise UserError(f"padding_side must be 'left' or 'right', got '{padding_side}'.")
    source = check_source(str(name_or_path), "tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"Could not load the tokenizer of '{source}': {_first_line(exc)}") from exc
    if isinstance(tokenizer, bool) or not hasattr(tokenizer, "pad_token"):
        raise UserError(f"'{source}' has no tokenizer.")
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise UserError(
                f"Tokenizer of '{source}' has no pad, eos or unk token to pad with; add a pad "
                "token and resize the model's embeddings explicitly."
            )
        tokenizer.pad_token = fallback
    tokenizer.padding_side = padding_side
    return tokenizer
