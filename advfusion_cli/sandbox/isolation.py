"""Isolation for running model-written programs: namespaces, cgroups, rlimits, dropped privileges.

Layers, each probed once on this machine and reported by `isolation_info()`:
1. Always: a new session (so the whole process group can be killed), setrlimit limits (CPU,
   address space, file size, processes where the kernel enforces it), no core dumps.
2. Namespaces (as root, or through an unprivileged user namespace): a network namespace with
   only a downed loopback; a mount namespace where every mount is read-only except the run
   directory, with a minimal /dev (null, zero, full, random, urandom, a private /dev/shm); and a
   pid namespace with a fresh read-only /proc, so the program can neither see nor signal any
   process outside its own tree, and all of it dies with the program. The program runs as
   pid 2 under a minimal init, keeping normal signal semantics (pid 1 has none).
3. cgroup v1 pids + memory (as root where the hierarchies are writable): exact limits on
   processes/threads and resident memory, OOM detection, and a kill of every member.
4. As root: the capability bounding set is emptied and no_new_privs is set before exec, so the
   program cannot undo the mounts. RLIMIT_NPROC is never enforced for root, hence layer 3.

`ChildSetup` is the subprocess `preexec_fn`: it runs between fork and exec and only makes
syscalls (via os and ctypes; the extra fork is libc's, bypassing Python's fork hooks). Python
documents preexec_fn as unsafe when other threads run; runs are started by the single-threaded
helper of launcher.py, which is also what keeps the fork cheap whatever the caller imported.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass

from advfusion_cli.sandbox.cgroups import RunCgroup, cgroup_v1_bases

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 1024, 2048, 4096, 8192, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
# Per-mount options that a read-only bind remount must repeat (they are locked in user namespaces).
_MOUNT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
_DEVICES = (b"null", b"zero", b"full", b"random", b"urandom")
_SHM_SIZE = b"size=16m"
_MB = 1024 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data=None):
    _check(_libc.mount(source, target, fstype, flags, data), f"mount {target!r}")


def _unescape(path: str) -> bytes:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    raw = path.encode()
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def read_mounts() -> list[tuple[bytes, int]]:
    """(mount point, per-mount flags) of every mount this process sees, outermost first."""
    mounts = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            flags = sum(_MOUNT_FLAGS.get(opt, 0) for opt in fields[5].split(","))
            mounts.append((_unescape(fields[4]), flags))
    return mounts


def _under(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(b"/") + b"/")


def _write(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class ChildSetup:
    """What the child applies to itself before exec; built in the parent, run as preexec_fn."""

    workdir: bytes
    cpu_seconds: float
    address_space_bytes: int | None
    file_size_bytes: int
    nproc: int | None
    cgroup_tasks: tuple[bytes, ...] = ()  # each cgroup's `tasks` file
    namespaces: bool = False
    user_namespace: bool = False
    mounts: tuple[tuple[bytes, int], ...] = ()
    drop_capabilities: bool = False

    def __call__(self) -> None:
        # The forked child has a single thread, so moving that thread ("0": the caller, into
        # `tasks`) moves the whole process, and everything it forks is born inside. Unlike a
        # pid written to cgroup.procs, this skips the global threadgroup lock, whose write side
        # waits for an RCU grace period (3-14 ms) whenever no other migration ran just before.
        for tasks in self.cgroup_tasks:
            _write(tasks, b"0")
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.namespaces:
            self._enter_namespaces()
        if self.drop_capabilities:
            for cap in range(_last_capability() + 1):
                _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        self._set_limits()

    def _enter_namespaces(self) -> None:
        uid, gid = os.getuid(), os.getgid()
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
        _check(_libc.unshare(flags | (CLONE_NEWUSER if self.user_namespace else 0)), "unshare")
        if self.user_namespace:
            _write(b"/proc/self/setgroups", b"deny")
            _write(b"/proc/self/uid_map", f"{uid} {uid} 1".encode())
            _write(b"/proc/self/gid_map", f"{gid} {gid} 1".encode())
        _mount(None, b"/", None, MS_REC | MS_PRIVATE)
        _mount(self.workdir, self.workdir, None, MS_BIND)
        os.chdir(self.workdir)  # the old cwd still points below the new (writable) bind mount
        for path, mount_flags in self.mounts:
            if _under(path, b"/dev") or _under(path, b"/proc"):
                continue  # both are replaced below
            result = _libc.mount(
                None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | mount_flags, None
            )
            if result != 0 and path == b"/":
                _check(result, "read-only /")
            # Other mounts are best effort (some are locked or unreachable); the probe
            # measures whether the filesystem really is read-only.
        self._minimal_dev()
        # The first child after unshare(CLONE_NEWPID) is pid 1 of the new namespace. This
        # process stays outside, waits for it and exits the way the program did.
        status_read, status_write = os.pipe()
        init = _fork()
        if init > 0:
            _relay_exit_status(init, status_read)
        _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # pid 1 gets no default signal actions (SIGXCPU, SIGPIPE would be ignored), so the
        # program runs as pid 2 under a minimal init that reports its exit status.
        program = _fork()
        if program > 0:
            _run_init(program, status_write)
        os.close(status_read)
        os.close(status_write)

    def _minimal_dev(self) -> None:
        """Cover /dev with a small tmpfs holding only the harmless devices and a private shm.

        The devices are bind-mounted from descriptors opened before /dev is covered, so no
        staging folder is needed (creating and removing one in the run directory cost a few
        ms per run, mostly the rmdir after the move).
        """
        sources = [os.open(b"/dev/" + name, os.O_PATH) for name in _DEVICES]
        try:
            _mount(
                b"tmpfs", b"/dev", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=64k,mode=755"
            )
            for name, source in zip(_DEVICES, sources, strict=True):
                node = b"/dev/" + name
                os.close(os.open(node, os.O_CREAT | os.O_WRONLY, 0o666))
                _mount(f"/proc/self/fd/{source}".encode(), node, None, MS_BIND)
        finally:
            for source in sources:
                os.close(source)
        for name, target in (
            (b"fd", b""),
            (b"stdin", b"/0"),
            (b"stdout", b"/1"),
            (b"stderr", b"/2"),
        ):
            os.symlink(b"/proc/self/fd" + target, b"/dev/" + name)
        os.mkdir(b"/dev/shm", 0o1777)
        _mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, _SHM_SIZE)
        _mount(
            None, b"/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        )

    def _set_limits(self) -> None:
        # Soft limit: SIGXCPU; a program that catches it gets SIGKILL one second later.
        cpu = max(1, math.ceil(self.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_bytes, self.file_size_bytes))
        # RLIMIT_STACK stays as inherited: glibc sizes every thread's stack by it, so raising
        # it multiplies a threaded runtime's (node, JVM) address space under RLIMIT_AS.
        if self.nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.nproc, self.nproc))
        if self.address_space_bytes is not None:
            # Last: after this even the forked interpreter's own allocations are limited.
            limit = self.address_space_bytes
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _fork() -> int:
    """libc fork: Python's os.fork would run at-fork hooks and take the import lock."""
    pid = _libc.fork()
    if pid < 0:
        _check(-1, "fork")
    return pid


def _close_all_but(keep: int) -> None:
    """Hold no pipe open (subprocess's error pipe, the program's stdio) except `keep`."""
    os.closerange(0, keep)
    os.closerange(keep + 1, 1 << 16)


def _run_init(program: int, status_write: int) -> None:
    """pid 1: reap orphans until the program exits, report its status, exit. Never returns."""
    _close_all_but(status_write)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == program:
            os.write(status_write, str(status).encode())
            os._exit(0)  # pid 1 exiting kills everything left in the namespace


def _relay_exit_status(init: int, status_read: int) -> None:
    """Outside the pid namespace: wait for its init and exit as the program did. Never returns."""
    _close_all_but(status_read)
    _, init_status = os.waitpid(init, 0)
    reported = os.read(status_read, 32)
    status = int(reported) if reported else init_status  # init itself killed: use its status
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # re-raising SIGXCPU/SIGSEGV must not dump core
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL cannot be handled anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


@functools.cache
def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return 40


def user_task_count(uid: int) -> int:
    """Threads owned by `uid` on the machine: what RLIMIT_NPROC counts outside namespaces."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return count


@dataclass(frozen=True)
class IsolationInfo:
    running_as_root: bool
    namespaces: bool  # mount + network + pid namespaces are set up for every run
    user_namespace: bool  # ... through an unprivileged user namespace
    network_isolated: bool  # only a downed loopback interface is visible
    filesystem_read_only: bool  # writes outside the run directory fail (probed)
    pid_namespace: bool  # the program sees and can signal only its own process tree
    cgroup: str | None  # "v1" when per-run pids/memory cgroups are used
    process_limit: str  # how max_processes is enforced
    memory_limit: str  # how memory_mb is enforced
    capabilities_dropped: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_PROBE_SCRIPT = (
    'echo probe > "$1" 2>/dev/null; '
    "n=0; while read -r line; do n=$((n+1)); done < /proc/net/dev; echo interfaces=$((n-2)); "
    "p=0; for d in /proc/[0-9]*; do p=$((p+1)); done; echo pids=$p"
)


def _probe_namespaces(user_namespace: bool) -> dict[str, bool] | None:
    """Run a shell with the namespace setup; None when the setup itself fails."""
    shell = shutil.which("sh") or "/bin/sh"
    workdir = tempfile.mkdtemp(prefix="advfusion-probe-")
    outside = tempfile.mkdtemp(prefix="advfusion-probe-outside-")
    target = os.path.join(outside, "escaped")
    setup = ChildSetup(
        workdir=os.fsencode(workdir),
        cpu_seconds=5,
        address_space_bytes=None,
        file_size_bytes=_MB,
        nproc=None,
        namespaces=True,
        user_namespace=user_namespace,
        mounts=tuple(read_mounts()),
        drop_capabilities=os.geteuid() == 0,
    )
    try:
        result = subprocess.run(
            [shell, "-c", _PROBE_SCRIPT, "probe", target],
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=setup,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        escaped = os.path.exists(target)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)
    if result.returncode != 0:
        return None
    values = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
    return {
        "network_isolated": values.get("interfaces") == "1",
        "filesystem_read_only": not escaped,
        "pid_namespace": values.get("pids", "99").isdigit() and int(values["pids"]) <= 3,
    }


def _probe_cgroup(bases: dict[str, str]) -> bool:
    try:
        cgroup = RunCgroup(bases, max_pids=8, memory_bytes=64 * _MB)
    except OSError:
        return False
    try:
        setup = ChildSetup(
            workdir=b"/",
            cpu_seconds=5,
            address_space_bytes=None,
            file_size_bytes=_MB,
            nproc=None,
            cgroup_tasks=cgroup.task_files,
        )
        result = subprocess.run(["/bin/sh", "-c", "exit 0"], preexec_fn=setup, timeout=20)
        return result.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        cgroup.remove()


@functools.cache
def isolation_plan() -> tuple[IsolationInfo, dict[str, str] | None]:
    """Probe this machine once: what isolation every run gets, and the cgroup bases if any."""
    root = os.geteuid() == 0
    bases = cgroup_v1_bases()
    if bases is not None and not _probe_cgroup(bases):
        bases = None
    probed = _probe_namespaces(user_namespace=not root)
    if bases is not None:
        process_limit = "cgroup v1 pids.max (threads included)"
    elif probed is not None and not root:
        process_limit = "RLIMIT_NPROC inside a user namespace (exact)"
    elif not root:
        process_limit = "RLIMIT_NPROC above the user's current task count (approximate)"
    else:
        process_limit = "none: root without a pids cgroup; only the wall timeout bounds a fork bomb"
    info = IsolationInfo(
        running_as_root=root,
        namespaces=probed is not None,
        user_namespace=probed is not None and not root,
        network_isolated=bool(probed and probed["network_isolated"]),
        filesystem_read_only=bool(probed and probed["filesystem_read_only"]),
        pid_namespace=bool(probed and probed["pid_namespace"]),
        cgroup="v1" if bases is not None else None,
        process_limit=process_limit,
        memory_limit="cgroup v1 memory + RLIMIT_AS" if bases is not None else "RLIMIT_AS",
        capabilities_dropped=root,
    )
    return info, bases


def isolation_info() -> IsolationInfo:
    return isolation_plan()[0]
