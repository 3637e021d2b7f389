"""`advfusion sandbox install LANG...`: the toolchains (and test libraries) programs need.

Names are MultiPL-E extensions or language names (lua, rkt, racket, ml, ocaml, pl, ...) or
the task sandbox's languages (python, java, c, ...). As root with apt-get, every missing
package is installed in one `apt-get install` (after one `apt-get update`); anywhere else one
line names the command to run. Julia and Swift have no Debian package: one line says what to
install instead. Nothing is ever silently skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from advfusion_cli.errors import UserError


@dataclass(frozen=True)
class Wanted:
    name: str  # as the user typed it
    label: str  # the language, as shown
    packages: tuple[str, ...]
    no_package: str | None
    installed: Callable[[], bool]
    clear: Callable[[], None]  # forget the cached "missing" answer


def _wanted(name: str) -> Wanted:
    from advfusion_cli.sandbox.multiple_languages import resolve_multiple_language
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain
    from advfusion_cli.sandbox.toolchain_setup import PACKAGES
    from advfusion_cli.sandbox.toolchains import canonical_language, find_toolchain

    try:
        row = resolve_multiple_language(name)
    except UserError:
        language = canonical_language(name)
        if language is None:
            raise
        return Wanted(
            name,
            language,
            (PACKAGES["apt-get"][language],),
            None,
            lambda: find_toolchain(language) is not None,
            find_toolchain.cache_clear,
        )
    return Wanted(
        name,
        f"{row.name} ({row.ext})",
        row.apt,
        row.no_package,
        lambda: find_multiple_toolchain(row.ext) is not None,
        find_multiple_toolchain.cache_clear,
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _apt(args: list[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, check=False).returncode


def install(names: list[str], log: Callable[[str], None]) -> bool:
    """Install what `names` need; True when every one is executable afterwards."""
    if not names:
        raise UserError("sandbox install needs at least one language (e.g. lua rkt ml r pl).")
    wanted = [_wanted(name) for name in names]  # an unknown name fails before any work
    missing = []
    for item in wanted:
        if item.installed():
            log(f"{item.label}: already installed")
        elif item.no_package:
            log(f"{item.label}: {item.no_package}")
        else:
            missing.append(item)
    packages = list(dict.fromkeys(p for item in missing for p in item.packages))
    if packages:
        command = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
        if not _is_root() or shutil.which("apt-get") is None:
            sudo = "" if _is_root() else "sudo "
            how = f"{sudo}{command}" if shutil.which("apt-get") else f"the packages {packages}"
            log(f"not installing as this user; run: {how}")
            return False
        log(f"installing: {' '.join(packages)}")
        if _apt(["update", "-qq"]) != 0 or _apt([*command.split()[1:], "-qq"]) != 0:
            log(f"apt-get failed; run it yourself to see why: apt-get update && {command}")
    ok = all(not item.no_package for item in wanted)
    for item in missing:
        item.clear()
        if item.installed():
            log(f"{item.label}: installed")
        else:
            log(f"{item.label}: still not executable after installing {' '.join(item.packages)}")
            ok = False
    return ok
