"""A folder of prepared-data entries, each found by a fingerprint and published whole.

An entry is `<cache>/<kind>-<digest>/`: the files a builder wrote plus `manifest.json`,
written last, that records the full key (what was fingerprinted), each file's size and
blake2b checksum, and the builder's info. Entries are built in a private folder and renamed
into place, so a reader never sees half an entry; a file lock per digest makes a second
process wait for the first one's build and then read it. An entry whose manifest, sizes,
checksums or contents do not check out is rebuilt with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MANIFEST = "manifest.json"
FORMAT = 2  # bump when the layout of entries changes: old entries are then misses


def digest_of(key: dict[str, Any]) -> str:
    text = json.dumps({"format": FORMAT, **key}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class DamagedEntry(Exception):
    """An entry that cannot be trusted; the message says why, in a few words."""


class PreparedCache:
    """Entries under `folder`; `load_or_build` is the one way in."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder).expanduser()

    def entry_dir(self, kind: str, key: dict[str, Any]) -> Path:
        return self.folder / f"{kind}-{digest_of(key)}"

    def load_or_build(
        self,
        kind: str,
        key: dict[str, Any],
        build: Callable[[Path], dict[str, Any]],
        load: Callable[[Path, dict[str, Any]], T],
    ) -> T:
        """`load(entry, info)` of the entry for `key`, building it first when missing.

        `build(folder)` writes the entry's files into an empty folder and returns its info
        (JSON-able); `load` may raise DamagedEntry (or any Arrow/OS error) for bad contents.
        """
        from filelock import FileLock

        entry = self.entry_dir(kind, key)
        found = self._try_load(entry, key, load)
        if found is not None:
            return found[0]
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / f".{entry.name}.lock")):
            found = self._try_load(entry, key, load)  # another process may have built it
            if found is not None:
                return found[0]
            self._build(entry, key, build)
            found = self._try_load(entry, key, load)
            if found is None:  # only a broken disk gets here
                raise OSError(f"the data cache entry {entry} could not be read back")
            return found[0]

    def _try_load(self, entry: Path, key: dict, load: Callable) -> tuple[Any] | None:
        """(loaded,) for a sound entry, None when missing; a damaged one is removed."""
        if not entry.is_dir():
            return None
        try:
            info = self._check(entry, key)
            return (load(entry, info),)
        except (DamagedEntry, OSError, ValueError, KeyError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        except Exception as err:  # pyarrow raises its own types for corrupt files
            if type(err).__module__.split(".")[0] not in ("pyarrow", "datasets"):
                raise
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        print(
            f"warning: data cache entry {entry} is damaged ({reason}); rebuilding it.",
            file=sys.stderr,
        )
        shutil.rmtree(entry, ignore_errors=True)
        return None

    @staticmethod
    def _check(entry: Path, key: dict) -> dict[str, Any]:
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except FileNotFoundError:
            raise DamagedEntry("no manifest") from None
        except ValueError:
            raise DamagedEntry("unreadable manifest") from None
        if json.loads(json.dumps(key, default=str)) != manifest.get("key"):
            raise DamagedEntry("manifest is for another key")
        for name, recorded in manifest["files"].items():
            path = entry / name
            if not path.is_file() or path.stat().st_size != recorded["size"]:
                raise DamagedEntry(f"{name} is missing or has the wrong size")
            if file_checksum(path) != recorded["blake2b"]:
                raise DamagedEntry(f"{name} does not match its checksum")
        return manifest["info"]

    def _build(self, entry: Path, key: dict, build: Callable[[Path], dict]) -> None:
        shutil.rmtree(entry, ignore_errors=True)
        staging = self.folder / f".building-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            info = build(staging)
            files = {
                p.name: {"size": p.stat().st_size, "blake2b": file_checksum(p)}
                for p in sorted(staging.iterdir())
                if p.is_file()
            }
            manifest = {"key": key, "files": files, "info": info}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            os.replace(staging, entry)  # an entry appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
