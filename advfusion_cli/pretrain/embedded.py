"""Where the shipped tiny code model lives, and the id users name it by.

The folder is a normal Hugging Face model folder, so `from_pretrained(embedded_model_path())`
goes through exactly the code path a hub model would.
"""

from __future__ import annotations

import json
from pathlib import Path

EMBEDDED_MODEL_ID = "advfusion/tiny-code"

_ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-code"


def embedded_model_path() -> Path:
    """The committed model folder (config, weights, tokenizer, model card)."""
    return _ASSET_DIR


def is_embedded_model_id(name: str) -> bool:
    """True for the id (or the bare folder name) that stands for the shipped model."""
    return name in (EMBEDDED_MODEL_ID, "tiny-code")


def embedded_model_card() -> dict:
    """The machine-readable card (`card.json`) written beside the shipped weights."""
    return json.loads((_ASSET_DIR / "card.json").read_text())
