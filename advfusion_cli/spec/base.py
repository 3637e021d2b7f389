"""Shared pieces of the job-spec tree: the strict base model and cross-field errors.

Every section forbids unknown keys (a typo is an error, never silently ignored) and is
frozen (a resolved spec is a record of what ran; change it with `model_copy(update=...)`).
Numbers must be finite (`.inf` / `.nan` are errors), and true/false is not a number (pydantic
would read `max_steps: true` as 1).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

# The error type the message formatter recognises: ctx["key"] extends the error's location,
# so a check written on a whole section still names the exact key it is about.
KEY_ERROR_TYPE = "spec_key"


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                if isinstance(value, bool) and field is not None:
                    kind = _number_kind(field.annotation)
                    if kind is not None:
                        raise key_error(
                            key, f"must be {kind}, not true/false (got {str(value).lower()})"
                        )
        return data


def _number_kind(annotation: Any) -> str | None:
    """'an integer' / 'a number' when a field takes numbers but not booleans, else None."""
    found: set[Any] = set()

    def walk(tp: Any) -> None:
        origin = get_origin(tp)
        if origin is Annotated:
            walk(get_args(tp)[0])
        elif origin in (Union, types.UnionType):
            for arg in get_args(tp):
                walk(arg)
        elif origin is Literal:
            found.update(type(arg) for arg in get_args(tp))
        else:
            found.add(tp)

    walk(annotation)
    if bool in found or Any in found:
        return None
    if float in found:
        return "a number"
    if int in found:
        return "an integer"
    return None


def key_error(key: str, message: str) -> PydanticCustomError:
    """An error about `key` (a dotted path relative to the model raising it)."""
    return PydanticCustomError(KEY_ERROR_TYPE, "{message}", {"key": key, "message": message})
