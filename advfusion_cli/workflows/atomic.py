"""Crash-safe file writes: write to a temporary sibling, fsync, then rename over the target.

A reader (or a resumed run) therefore sees either the old file or the complete new one,
never a half-written one. Directories are published the same way (build under a temporary
name, fsync every file, rename), which is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (a rename or a new file) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value: object) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Atomically create `path` with a library writer that takes a file name (safetensors, torch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        writer(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (before publishing it by rename)."""
    for current, _dirs, files in os.walk(root):
        for name in files:
            fsync_file(Path(current) / name)
        fsync_dir(Path(current))


def publish_dir(build: Callable[[Path], None], target: Path) -> None:
    """Build a directory under a temporary name, then rename it to `target` (replacing it).

    Replacing an existing directory takes two renames (old aside, new in); a crash between
    them leaves the old copy under `.<name>.old-*`, never a half-written `target`.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync; a torn last line after a crash is dropped on resume."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())
