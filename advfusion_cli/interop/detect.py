"""What a folder given to `advfusion import` holds, told apart by its files and fields.

Both the `adapters` library and peft name their config `adapter_config.json`: peft's has a
`peft_type`, the library's a `config` mapping with `hidden_size` and `version: adapters.*`.
"""

from __future__ import annotations

from pathlib import Path

from advfusion_cli.engine.serialization import read_json
from advfusion_cli.errors import UserError
from advfusion_cli.interop import adapters_layout as layout

ADAPTERS_ADAPTER = "adapters-adapter"
ADAPTERS_SETUP = "adapters-setup"
PEFT_LORA = "peft-lora"
FORMATS = ("adapters", "peft")


def kind_of(folder: Path, expected_format: str | None = None) -> str:
    """ADAPTERS_ADAPTER, ADAPTERS_SETUP or PEFT_LORA; one line naming the file otherwise."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"'{folder}' does not exist.")
    if not folder.is_dir():
        raise UserError(f"'{folder}' is a file; pass the folder that holds adapter_config.json.")
    if (folder / layout.SETUP_NAME).is_file():
        found = ADAPTERS_SETUP
    elif (folder / layout.CONFIG_NAME).is_file():
        found = _config_kind(folder / layout.CONFIG_NAME)
    elif (folder / layout.FUSION_CONFIG_NAME).is_file():
        raise UserError(
            f"'{folder}' holds a fusion alone; import the adapter setup folder above it "
            f"({layout.SETUP_NAME}), so the fusion comes with the adapters it fuses."
        )
    else:
        raise UserError(
            f"'{folder}' has neither {layout.CONFIG_NAME} nor {layout.SETUP_NAME}: not a saved "
            "`adapters` adapter or setup, nor a peft folder."
        )
    found_format = "peft" if found == PEFT_LORA else "adapters"
    if expected_format is not None and expected_format != found_format:
        what = (
            "a peft LoRA folder (its adapter_config.json has peft_type)"
            if found == PEFT_LORA
            else "an `adapters` library folder"
        )
        raise UserError(f"'{folder}' is {what}, not the {expected_format} format asked for.")
    return found


def _config_kind(path: Path) -> str:
    data = read_json(path)
    if "peft_type" in data:
        return PEFT_LORA
    if layout.is_adapters_config(data):
        return ADAPTERS_ADAPTER
    if data.get("kind") == "adapter" and "format_version" in data:
        raise UserError(
            f"{path} is already an advfusion adapter; load it with the engine "
            "(host.load_adapter) or copy it into the adapter store."
        )
    raise UserError(
        f"{path} is neither an `adapters` config (config, hidden_size, version adapters.*) "
        "nor a peft one (peft_type)."
    )
