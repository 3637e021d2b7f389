"""The prepared-data cache on a shared filesystem: a transient read error keeps the entry
(retried, then reported in one line), damage is removed only under the entry's lock, files
are checksummed once and then checked by size and mtime, and entry digests carry the code
version."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import advfusion_cli
from advfusion_cli.data import cache as cache_module
from advfusion_cli.data.cache import PreparedCache
from advfusion_cli.errors import UserError


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(cache_module, "RETRY_DELAY_S", 0.0)


@pytest.fixture
def checksums(monkeypatch):
    """Names of the files checksummed (blake2b over the whole file)."""
    seen: list[str] = []
    real = cache_module.file_checksum

    def counting(path: Path) -> str:
        seen.append(path.name)
        return real(path)

    monkeypatch.setattr(cache_module, "file_checksum", counting)
    return seen


def build(folder: Path) -> dict:
    (folder / "rows.txt").write_text("one\ntwo\n")
    return {"rows": 2}


def read(entry: Path, info: dict) -> list[str]:
    return (entry / "rows.txt").read_text().splitlines()


def flaky(times: int, code: int = errno.EIO):
    """A loader whose first `times` calls fail as an NFS read may (EIO, ESTALE)."""
    calls = {"n": 0}

    def load(entry: Path, info: dict) -> list[str]:
        calls["n"] += 1
        if calls["n"] <= times:
            raise OSError(code, os.strerror(code), str(entry / "rows.txt"))
        return read(entry, info)

    return load, calls


def test_a_transient_read_error_keeps_the_entry_and_the_retry_loads_it(tmp_path, capsys):
    cache = PreparedCache(tmp_path / "cache")
    assert cache.load_or_build("features", {"k": 1}, build, read) == ["one", "two"]
    entry = cache.entry_dir("features", {"k": 1})
    load, calls = flaky(2)  # fails twice in a row, as a flapping NFS mount may
    capsys.readouterr()
    built: list[Path] = []
    again = cache.load_or_build("features", {"k": 1}, lambda f: built.append(f) or {}, load)
    assert again == ["one", "two"] and calls["n"] == 3  # retried without the lock
    assert built == [] and entry.is_dir()  # kept, not rebuilt
    assert capsys.readouterr().err == ""  # no "damaged" warning


def test_a_lasting_read_error_is_one_line_and_the_entry_is_kept(tmp_path):
    cache = PreparedCache(tmp_path / "cache")
    cache.load_or_build("features", {"k": 1}, build, read)
    entry = cache.entry_dir("features", {"k": 1})
    load, calls = flaky(100, errno.ESTALE)
    with pytest.raises(UserError) as caught:
        cache.load_or_build("features", {"k": 1}, build, load)
    message = str(caught.value)
    assert "\n" not in message and str(entry) in message
    assert f"tried {cache_module.READ_ATTEMPTS} time(s)); it was kept" in message
    assert "output.data_cache" in message
    assert calls["n"] == cache_module.READ_ATTEMPTS  # retried, then reported
    assert read(entry, {}) == ["one", "two"]


def test_damage_seen_outside_the_lock_is_confirmed_under_it_before_deleting(
    tmp_path, monkeypatch, capsys
):
    """A reader that sees a bad entry without the lock (another job may be replacing it)
    leaves it alone; it is removed only after the check under the lock fails too."""
    cache = PreparedCache(tmp_path / "cache")
    cache.load_or_build("features", {"k": 1}, build, read)
    entry = cache.entry_dir("features", {"k": 1})
    (entry / "rows.txt").write_text("one\ntwo\nthree\n")  # wrong size: damaged
    seen: list[tuple[bool, bool]] = []  # (repair allowed, entry still there)
    real = PreparedCache._try_load

    def watching(self, entry_dir, key, load, repair):
        found = real(self, entry_dir, key, load, repair)
        seen.append((repair, entry_dir.is_dir()))
        return found

    monkeypatch.setattr(PreparedCache, "_try_load", watching)
    assert cache.load_or_build("features", {"k": 1}, build, read) == ["one", "two"]
    assert seen[0] == (False, True)  # outside the lock: seen as damaged, not deleted
    assert seen[1] == (True, False)  # under the lock: confirmed, deleted, then rebuilt
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is damaged (rows.txt is missing or has the wrong size)" in err[0]


def test_files_are_checksummed_once_then_checked_by_size_and_mtime(tmp_path, checksums):
    cache = PreparedCache(tmp_path / "cache")
    cache.load_or_build("features", {"k": 1}, build, read)
    assert checksums == ["rows.txt"]  # at build time
    for _ in range(3):
        cache.load_or_build("features", {"k": 1}, build, read)
    assert checksums == ["rows.txt"]  # loads: one stat per file
    entry = cache.entry_dir("features", {"k": 1})
    stat = (entry / "rows.txt").stat()
    os.utime(entry / "rows.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    cache.load_or_build("features", {"k": 1}, build, read)
    assert checksums == ["rows.txt", "rows.txt"]  # changed mtime: checksummed again
    cache.load_or_build("features", {"k": 1}, build, read)
    assert checksums == ["rows.txt", "rows.txt"]  # and recorded as verified


def test_same_size_damage_with_a_new_mtime_is_caught_by_the_checksum(tmp_path, capsys):
    cache = PreparedCache(tmp_path / "cache")
    cache.load_or_build("features", {"k": 1}, build, read)
    entry = cache.entry_dir("features", {"k": 1})
    (entry / "rows.txt").write_text("one\ntwX\n")  # same size, other bytes, new mtime
    capsys.readouterr()
    assert cache.load_or_build("features", {"k": 1}, build, read) == ["one", "two"]
    assert "does not match its checksum" in capsys.readouterr().err


def test_entry_digests_carry_the_code_version(monkeypatch):
    before = cache_module.digest_of({"k": 1})
    assert cache_module.code_version().startswith(f"{advfusion_cli.__version__}+")
    monkeypatch.setattr(cache_module, "code_version", lambda: "9.9.9+changed")
    assert cache_module.digest_of({"k": 1}) != before  # an upgrade misses the old entries
