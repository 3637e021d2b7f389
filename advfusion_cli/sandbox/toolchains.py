"""How to compile and run a program in each language the sandbox knows: one table, canonical ids.

Commands are argv templates. Placeholders: a tool name in braces ({python}, {javac}, ...) is
that tool's absolute path; {memory_mb}, {main_class}, {source} and {workdir} come from the run.
Managed runtimes reserve far more address space than they use, so each language carries how
much address space to add on top of the memory limit (RLIMIT_AS) and how much resident memory
(the cgroup limit, where available); the runtime's own heap flag carries the real limit:
java -Xmx, node --max-old-space-size, php memory_limit.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from advfusion_cli.errors import unknown_name_error


@dataclass(frozen=True)
class LanguageSpec:
    id: str
    source_name: str  # file the source is written to; java's depends on its public class
    tools: dict[str, str]  # placeholder -> executable looked up on PATH
    compile: tuple[str, ...] | None  # argv template; None for interpreted languages
    run: tuple[str, ...]  # argv template
    address_space_extra_mb: int  # RLIMIT_AS = memory_mb + this
    resident_extra_mb: int  # cgroup memory limit = memory_mb + this
    oom_markers: tuple[str, ...] = ()  # stderr text meaning "ran out of memory"
    compile_env: dict[str, str] = field(default_factory=dict)
    run_env: dict[str, str] = field(default_factory=dict)


# One GC thread, one-CPU sizing and small fixed reservations keep the JVM inside RLIMIT_AS.
_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:ActiveProcessorCount=1",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:CompressedClassSpaceSize=64m",
    "-XX:MaxMetaspaceSize=128m",
)

LANGUAGE_TABLE: dict[str, LanguageSpec] = {
    spec.id: spec
    for spec in (
        LanguageSpec(
            id="python",
            source_name="main.py",
            tools={"python": "python3"},
            compile=None,
            # -I: ignore PYTHON* variables and the user site directory.
            run=("{python}", "-I", "main.py"),
            address_space_extra_mb=256,
            resident_extra_mb=64,
            oom_markers=("MemoryError",),
            run_env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        ),
        LanguageSpec(
            id="javascript",
            source_name="main.js",
            tools={"node": "node"},
            compile=None,
            run=("{node}", "--max-old-space-size={memory_mb}", "main.js"),
            address_space_extra_mb=1536,
            resident_extra_mb=256,
            oom_markers=("JavaScript heap out of memory",),
        ),
        LanguageSpec(
            id="java",
            source_name="{main_class_file}.java",
            tools={"javac": "javac", "java": "java"},
            compile=(
                "{javac}",
                "-J-Xmx{memory_mb}m",
                *(f"-J{flag}" for flag in _JVM_FLAGS),
                "-J-XX:TieredStopAtLevel=1",
                "-encoding",
                "UTF-8",
                "-d",
                ".",
                "{source}",
            ),
            run=(
                "{java}",
                "-Xmx{memory_mb}m",
                *_JVM_FLAGS,
                "-Dfile.encoding=UTF-8",
                "-cp",
                ".",
                "{main_class}",
            ),
            address_space_extra_mb=1280,
            resident_extra_mb=256,
            # Heap exhaustion only: "unable to create native thread" is the process limit.
            oom_markers=tuple(
                f"java.lang.OutOfMemoryError: {kind}"
                for kind in (
                    "Java heap space",
                    "GC overhead limit exceeded",
                    "Requested array size exceeds",
                    "Metaspace",
                    "Direct buffer memory",
                )
            ),
        ),
        LanguageSpec(
            id="c",
            source_name="main.c",
            tools={"gcc": "gcc"},
            compile=("{gcc}", "-O2", "-std=gnu17", "-o", "main", "{source}", "-lm"),
            run=("./main",),
            address_space_extra_mb=64,
            resident_extra_mb=32,
        ),
        LanguageSpec(
            id="cpp",
            source_name="main.cpp",
            tools={"gxx": "g++"},
            compile=("{gxx}", "-O2", "-std=gnu++17", "-o", "main", "{source}"),
            run=("./main",),
            address_space_extra_mb=64,
            resident_extra_mb=32,
            oom_markers=("std::bad_alloc",),
        ),
        LanguageSpec(
            id="go",
            source_name="main.go",
            tools={"go": "go"},
            compile=("{go}", "build", "-o", "main", "{source}"),
            run=("./main",),
            address_space_extra_mb=512,
            resident_extra_mb=64,
            oom_markers=("runtime: out of memory",),
            # Never fetch modules or toolchains; keep the build cache inside the run directory.
            compile_env={
                "GOCACHE": "{workdir}/.gocache",
                "GOPATH": "{workdir}/.gopath",
                "GOTOOLCHAIN": "local",
                "GOPROXY": "off",
                "GOFLAGS": "-mod=mod",
            },
            run_env={"GOMAXPROCS": "1"},
        ),
        LanguageSpec(
            id="ruby",
            source_name="main.rb",
            tools={"ruby": "ruby"},
            compile=None,
            run=("{ruby}", "main.rb"),
            address_space_extra_mb=256,
            resident_extra_mb=64,
            oom_markers=("NoMemoryError", "failed to allocate memory"),
        ),
        LanguageSpec(
            id="rust",
            source_name="main.rs",
            tools={"rustc": "rustc"},
            compile=("{rustc}", "-O", "--edition", "2021", "-o", "main", "{source}"),
            run=("./main",),
            address_space_extra_mb=64,
            resident_extra_mb=32,
            oom_markers=("memory allocation of",),
        ),
        LanguageSpec(
            id="php",
            source_name="main.php",
            tools={"php": "php"},
            compile=None,
            run=("{php}", "-d", "memory_limit={memory_mb}M", "main.php"),
            address_space_extra_mb=256,
            resident_extra_mb=64,
            oom_markers=("Allowed memory size of",),
        ),
    )
}
LANGUAGES: tuple[str, ...] = tuple(LANGUAGE_TABLE)

LANGUAGE_ALIASES = {
    "py": "python",
    "py3": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "nodejs": "javascript",
    "node.js": "javascript",
    "c++": "cpp",
    "cxx": "cpp",
    "golang": "go",
    "rb": "ruby",
    "rs": "rust",
}


def canonical_language(name: str) -> str | None:
    """The canonical id for a language name or alias (case-insensitive), or None."""
    key = name.strip().lower()
    if key in LANGUAGE_TABLE:
        return key
    return LANGUAGE_ALIASES.get(key)


def resolve_language(name: str) -> str:
    """Like canonical_language, but an unknown name is a UserError with suggestions."""
    language = canonical_language(name)
    if language is None:
        raise unknown_name_error("language", name, [*LANGUAGES, *LANGUAGE_ALIASES])
    return language


def _real_rustc(rustc: str) -> str:
    """rustup's `rustc` is a proxy that needs the caller's HOME; run the toolchain's own binary."""
    try:
        sysroot = subprocess.run(
            [rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return rustc
    direct = os.path.join(sysroot, "bin", "rustc")
    return direct if os.access(direct, os.X_OK) else rustc


@functools.cache
def find_toolchain(language: str) -> dict[str, str] | None:
    """Absolute paths of the language's tools, or None when any is missing. Cached."""
    spec = LANGUAGE_TABLE[language]
    paths: dict[str, str] = {}
    for placeholder, executable in spec.tools.items():
        if placeholder == "python":
            # The interpreter running advfusion: always present, with the packages it has.
            paths[placeholder] = sys.executable
            continue
        found = shutil.which(executable)
        if found is None:
            return None
        paths[placeholder] = _real_rustc(found) if placeholder == "rustc" else found
    return paths


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_PUBLIC_TYPE = re.compile(
    r"^\s*public\s+(?:(?:final|abstract|strictfp|sealed)\s+)*(?:class|record|enum|interface)\s+"
    r"([A-Za-z_$][\w$]*)",
    re.MULTILINE,
)
_ANY_CLASS = re.compile(r"\bclass\s+([A-Za-z_$][\w$]*)")


def java_main_class(source: str) -> tuple[str, str]:
    """(class to run, file stem) for a Java source.

    javac requires a public top-level type to live in <Name>.java, so the file is named after
    it; without one, the class declaring `main` is run from Main.java.
    """
    code = _COMMENTS.sub(" ", source)
    package = _PACKAGE.search(code)
    prefix = f"{package.group(1)}." if package else ""
    public = _PUBLIC_TYPE.search(code)
    if public:
        return prefix + public.group(1), public.group(1)
    main_at = code.find("static void main")
    candidates = _ANY_CLASS.findall(code[:main_at] if main_at >= 0 else code)
    name = candidates[-1] if candidates else "Main"
    return prefix + name, "Main"


def render(template: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """Fill an argv template's placeholders."""
    return [part.format(**values) for part in template]
