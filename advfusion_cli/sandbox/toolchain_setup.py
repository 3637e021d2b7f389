"""A missing language toolchain: install it where that is safe, otherwise say exactly how.

`make install` runs `python -m advfusion_cli.sandbox.toolchain_setup ruby`: the demo's
headline metric, pass@1, runs the generated Ruby programs. As root with apt (a fresh container
or VM, where nobody else's system is touched) the interpreter is installed quietly, best effort,
as `.ci/run` does; anywhere else one line names the command to run. The same command appears in
an evaluation's "pass@k not computed" reason, so the demo's note says it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from advfusion_cli.sandbox.toolchains import LANGUAGE_TABLE, find_toolchain

# Package that provides each language's tools, per package manager (Debian/Ubuntu, Fedora, macOS).
PACKAGES: dict[str, dict[str, str]] = {
    "apt-get": {
        "python": "python3",
        "javascript": "nodejs",
        "java": "default-jdk-headless",
        "c": "gcc",
        "cpp": "g++",
        "go": "golang-go",
        "ruby": "ruby",
        "rust": "rustc",
        "php": "php-cli",
    },
    "dnf": {
        "python": "python3",
        "javascript": "nodejs",
        "java": "java-latest-openjdk-devel",
        "c": "gcc",
        "cpp": "gcc-c++",
        "go": "golang",
        "ruby": "ruby",
        "rust": "rust",
        "php": "php-cli",
    },
    "brew": {
        "python": "python",
        "javascript": "node",
        "java": "openjdk",
        "c": "gcc",
        "cpp": "gcc",
        "go": "go",
        "ruby": "ruby",
        "rust": "rust",
        "php": "php",
    },
}

# How the note names a toolchain (default: the language id, capitalised).
_NAMES = {"javascript": "Node.js", "cpp": "a C++ compiler", "c": "a C compiler"}


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _which(program: str) -> str | None:
    return shutil.which(program)


def install_command(language: str) -> str:
    """The exact command that installs `language`'s toolchain on this machine."""
    if language not in LANGUAGE_TABLE:
        return f"install a {language} toolchain"
    for manager in ("apt-get", "dnf", "brew"):
        if _which(manager) is None:
            continue
        package = PACKAGES[manager][language]
        sudo = "" if manager == "brew" or _is_root() else "sudo "
        yes = "" if manager == "brew" else " -y"
        return f"{sudo}{manager} install{yes} {package}"
    tools = " and ".join(sorted(set(LANGUAGE_TABLE[language].tools.values())))
    return f"install {language} so that {tools} is on PATH"


def _apt_install(package: str) -> None:
    """apt-get update + install, quiet; failures are left to the caller's check."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    if subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet).returncode != 0:
        return
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=False,
        **quiet,
    )


def ensure_toolchain(language: str) -> list[str]:
    """Install `language`'s toolchain if missing and allowed; the lines to print (none when it
    was already there)."""
    if find_toolchain(language) is not None:
        return []
    lines = []
    if _is_root() and _which("apt-get") is not None:
        package = PACKAGES["apt-get"][language]
        lines.append(f"installing {package} (pass@1 runs the generated {language} programs)")
        _apt_install(package)
        find_toolchain.cache_clear()  # the cached "missing" answer is stale now
        if find_toolchain(language) is not None:
            return lines
    name = _NAMES.get(language, language.capitalize())
    lines.append(
        f"note: pass@1 needs {name}, which is not installed; install it with: "
        f"{install_command(language)}"
    )
    return lines


def main(argv: list[str]) -> int:
    """`python -m advfusion_cli.sandbox.toolchain_setup LANGUAGE...`; always exits 0 (best
    effort: everything but pass@1 works without the toolchain)."""
    for language in argv:
        for line in ensure_toolchain(language):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
