"""A folder of prepared-data entries, each found by a fingerprint and published whole.

An entry is `<cache>/<kind>-<digest>/`: the files a builder wrote plus `manifest.json`,
written last, that records the full key (what was fingerprinted), each file's size and
blake2b checksum, and the builder's info. The digest also covers the code that renders and
encodes (`code_version`): an upgrade that changes a prompt or the encoding misses old entries.
Entries are built in a private folder and renamed into place, so a reader never sees half an
entry; a file lock per digest makes a second process wait for the first one's build and
then read it.

Reading is cheap after the first time: a full checksum pass writes `verified.json` (each
file's size and mtime as checked); later loads compare those with one stat per file and
checksum again only when one differs. On shared filesystems, reads can fail for a moment
(NFS: EIO, ESTALE): an OSError is retried, and if it persists reported with the entry kept.
Only damage confirmed under the entry's lock (a manifest, size, checksum or content that
does not check out) deletes an entry, which is then rebuilt with a one-line warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from advfusion_cli.errors import UserError

T = TypeVar("T")
MANIFEST = "manifest.json"
VERIFIED = "verified.json"  # sizes and mtimes of the files as their checksums were checked
FORMAT = 2  # bump when the layout of entries changes: old entries are then misses
READ_ATTEMPTS = 4  # a transient read error is tried this often before it is reported
RETRY_DELAY_S = 0.5  # doubled after each failed attempt
# The code whose output entries hold: loading, rendering, splitting and encoding.
CODE_FOLDERS = ("data",)
CODE_FILES = ("workflows/task_data.py",)


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<package version>+<sha256 of the data code>`: part of every entry's digest."""
    import advfusion_cli

    package = Path(advfusion_cli.__file__).parent
    paths = [p for folder in CODE_FOLDERS for p in (package / folder).rglob("*.py")]
    paths += [package / name for name in CODE_FILES]
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{advfusion_cli.__version__}+{digest.hexdigest()[:12]}"


def digest_of(key: dict[str, Any]) -> str:
    text = json.dumps(
        {"format": FORMAT, "code": code_version(), **key}, sort_keys=True, default=str
    )
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
        found = self._try_load(entry, key, load, repair=False)  # no lock: a damaged one waits
        if found is not None:
            return found[0]
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / f".{entry.name}.lock")):
            # another process may have built (or repaired) it; damage seen here is confirmed
            found = self._try_load(entry, key, load, repair=True)
            if found is not None:
                return found[0]
            self._build(entry, key, build)
            found = self._try_load(entry, key, load, repair=False)
            if found is None:  # only a broken disk gets here
                raise OSError(f"the data cache entry {entry} could not be read back")
            return found[0]

    def _try_load(self, entry: Path, key: dict, load: Callable, repair: bool) -> tuple[Any] | None:
        """(loaded,) for a sound entry; None when it is missing or damaged. A damaged entry
        is removed only with `repair` (the caller holds the entry's lock). An OSError other
        than a missing file is retried, then reported as a UserError; the entry stays."""
        delay = RETRY_DELAY_S
        for attempt in range(1, READ_ATTEMPTS + 1):
            if not entry.is_dir():
                return None
            try:
                info = self._check(entry, key)
                return (load(entry, info),)
            except FileNotFoundError as err:  # a listed file is gone: damage
                reason = f"{Path(err.filename or '').name or 'a file'} is missing"
            except OSError as err:
                if attempt < READ_ATTEMPTS and err.errno not in _LASTING:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise UserError(
                    f"Cannot read data cache entry {entry}: {err.strerror or err} (tried "
                    f"{attempt} time(s)); it was kept. Check the filesystem, or point "
                    "output.data_cache at another folder."
                ) from err
            except (DamagedEntry, ValueError, KeyError) as err:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            except Exception as err:  # pyarrow raises its own types for corrupt files
                if type(err).__module__.split(".")[0] not in ("pyarrow", "datasets"):
                    raise
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            break
        if not repair:
            return None
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
        stats = {}
        for name, recorded in manifest["files"].items():
            path = entry / name
            if not path.is_file() or path.stat().st_size != recorded["size"]:
                raise DamagedEntry(f"{name} is missing or has the wrong size")
            stat = path.stat()
            stats[name] = [stat.st_size, stat.st_mtime_ns]
        if _read_verified(entry) == stats:  # checksummed before, unchanged since
            return manifest["info"]
        for name, recorded in manifest["files"].items():
            if file_checksum(entry / name) != recorded["blake2b"]:
                raise DamagedEntry(f"{name} does not match its checksum")
        _write_verified(entry, stats)
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
            stats = {name: _stat(staging / name) for name in files}
            (staging / VERIFIED).write_text(json.dumps(stats))  # just checksummed
            os.replace(staging, entry)  # an entry appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# Errors that a retry cannot fix: reported at once.
_LASTING = {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _read_verified(entry: Path) -> dict | None:
    try:
        return json.loads((entry / VERIFIED).read_text())
    except (OSError, ValueError):
        return None


def _write_verified(entry: Path, stats: dict) -> None:
    """Record a passed checksum (best effort: a read-only cache checksums every time)."""
    tmp = entry / f".{VERIFIED}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, entry / VERIFIED)
    except OSError:
        tmp.unlink(missing_ok=True)
