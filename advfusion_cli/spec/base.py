"""Shared pieces of the job-spec tree: the strict base model and cross-field errors.

Every section forbids unknown keys (a typo is an error, never silently ignored) and is
frozen (a resolved spec is a record of what ran; change it with `model_copy(update=...)`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

# The error type the message formatter recognises: ctx["key"] extends the error's location,
# so a check written on a whole section still names the exact key it is about.
KEY_ERROR_TYPE = "spec_key"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def key_error(key: str, message: str) -> PydanticCustomError:
    """An error about `key` (a dotted path relative to the model raising it)."""
    return PydanticCustomError(KEY_ERROR_TYPE, "{message}", {"key": key, "message": message})
