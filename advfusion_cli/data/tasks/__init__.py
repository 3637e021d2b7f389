"""The task registry: one registration per task; unknown names fail with a suggestion."""

from __future__ import annotations

from advfusion_cli.data.tasks import code_generation, code_translation, commit_message, custom
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec
from advfusion_cli.errors import unknown_name_error

_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"task '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    if name not in _REGISTRY:
        raise unknown_name_error("task", name, _REGISTRY)
    return _REGISTRY[name]


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)


register_task(commit_message.SPEC)
register_task(code_generation.SPEC)
register_task(code_translation.SPEC)
register_task(custom.SPEC)

__all__ = ["LoadRequest", "TaskSpec", "get_task", "list_tasks", "register_task"]
