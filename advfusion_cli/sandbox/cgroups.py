"""Per-run cgroup v1 directories (pids + memory): exact process and memory limits, OOM
detection, and a kill that reaches every member, however it detached itself.

Used as root where the v1 hierarchies are writable; cgroup v2 delegation is not attempted
(moving the caller into a leaf cgroup would change the caller's own accounting).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid


class RunCgroup:
    """A fresh cgroup v1 pair (pids, memory) for one run, removed by `remove()`."""

    def __init__(self, bases: dict[str, str], max_pids: int, memory_bytes: int):
        name = f"advfusion-sandbox-{uuid.uuid4().hex[:16]}"
        self.dirs = {controller: os.path.join(base, name) for controller, base in bases.items()}
        try:
            for directory in self.dirs.values():
                os.mkdir(directory)
            self._set("pids", "pids.max", str(max_pids))
            self._set("memory", "memory.limit_in_bytes", str(memory_bytes))
            if os.path.exists(os.path.join(self.dirs["memory"], "memory.memsw.limit_in_bytes")):
                self._set("memory", "memory.memsw.limit_in_bytes", str(memory_bytes))
        except OSError:
            self.remove()
            raise

    def _set(self, controller: str, key: str, value: str) -> None:
        with open(os.path.join(self.dirs[controller], key), "w") as handle:
            handle.write(value)

    @property
    def task_files(self) -> tuple[bytes, ...]:
        """Where a single-threaded process moves itself in by writing "0" (see ChildSetup)."""
        return tuple(os.path.join(d, "tasks").encode() for d in self.dirs.values())

    def _members(self) -> set[int]:
        members: set[int] = set()
        for directory in self.dirs.values():
            try:
                with open(os.path.join(directory, "cgroup.procs")) as handle:
                    members.update(int(line) for line in handle if line.strip())
            except OSError:
                continue
        return members

    def oom_killed(self, killed_by_sigkill: bool) -> bool:
        """Did the memory limit end the run? An OOM kill, or SIGKILL after the limit was hit.

        failcnt alone is not enough: it also counts page-cache reclaims at the limit.
        """
        memory_dir = self.dirs["memory"]
        try:
            with open(os.path.join(memory_dir, "memory.oom_control")) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
            with open(os.path.join(memory_dir, "memory.failcnt")) as handle:
                return killed_by_sigkill and int(handle.read()) > 0
        except (OSError, ValueError):
            return False

    def kill_all(self) -> None:
        for _ in range(200):
            members = self._members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        for directory in self.dirs.values():
            for _ in range(200):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill_all()  # members still exiting
                    time.sleep(0.005)


def cgroup_v1_bases() -> dict[str, str] | None:
    """This process's own pids and memory cgroup v1 directories, when writable."""
    if os.geteuid() != 0:
        return None
    own: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as handle:
            for line in handle:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(","):
                    own[controller] = path
        mount_points: dict[str, str] = {}
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                pre, _, post = line.partition(" - ")
                fstype, _, options = post.split()[:3]
                if fstype == "cgroup" and pre.split()[3] == "/":
                    for controller in ("pids", "memory"):
                        if controller in options.split(","):
                            mount_points[controller] = pre.split()[4]
    except OSError:
        return None
    bases = {}
    for controller in ("pids", "memory"):
        if controller not in mount_points or controller not in own:
            return None
        base = os.path.join(mount_points[controller], own[controller].lstrip("/"))
        if not os.access(base, os.W_OK):
            return None
        bases[controller] = base
    return bases
