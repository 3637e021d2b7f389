"""One renderer per language: the same IR program as library file or stdin/stdout program."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import unknown_name_error
from ..ir import Program
from . import go, java, javascript, python, ruby
from .common import FileLayout


@dataclass(frozen=True)
class Renderer:
    module: Callable[[Program, FileLayout | None], str]  # functions only (library file)
    program: Callable[[Program], str]  # functions + a harness reading stdin, printing stdout


RENDERERS: dict[str, Renderer] = {
    "python": Renderer(python.module, python.full_program),
    "javascript": Renderer(javascript.module, javascript.full_program),
    "java": Renderer(java.module, java.full_program),
    "go": Renderer(go.module, go.full_program),
    "ruby": Renderer(ruby.module, ruby.full_program),
}


def _renderer(language: str) -> Renderer:
    if language not in RENDERERS:
        raise unknown_name_error("testbed language", language, RENDERERS)
    return RENDERERS[language]


def render_module(program: Program, language: str, layout: FileLayout | None = None) -> str:
    """The program's functions as one source file (Java in a class, Go in a package)."""
    return _renderer(language).module(program, layout)


def render_program(program: Program, language: str) -> str:
    """A complete program: the functions plus a main that reads stdin and prints the answer."""
    return _renderer(language).program(program)


__all__ = ["FileLayout", "RENDERERS", "render_module", "render_program"]
