"""Step timing (wall and CPU clocks, median and min) and peak memory (RSS on CPU, CUDA allocator).

On a shared CPU, wall-clock time includes waiting for other processes; the CPU clock of this
process does not, so both are kept and ratios are reported on each. Peak CPU memory is the
resident-set high-water mark from /proc, reset before each measured step; glibc is asked to
return freed blocks to the system so the mark follows the live tensors (see `CpuMemoryProbe`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class StepTimes:
    """Seconds per step on the wall clock and on this process's CPU clock."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def extend(self, other: StepTimes) -> None:
        self.wall += other.wall
        self.cpu += other.cpu

    def summary(self, tokens_per_step: int) -> dict[str, float]:
        median = statistics.median(self.wall)
        return {
            "steps": len(self.wall),
            "median_s": median,
            "min_s": min(self.wall),
            "cpu_median_s": statistics.median(self.cpu),
            "cpu_min_s": min(self.cpu),
            "tokens_per_s": tokens_per_step / median,
            # spread of the wall times: (max - min) / median, a quick noise indicator
            "spread": (max(self.wall) - min(self.wall)) / median,
        }


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What to call before reading a clock so queued GPU work is counted."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_calls(fn: Callable[[], object], count: int, sync: Callable[[], None]) -> StepTimes:
    """Run `fn` `count` times, timing each call on both clocks."""
    times = StepTimes()
    for _ in range(count):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.wall.append(time.perf_counter() - wall)
        times.cpu.append(time.process_time() - cpu)
    return times


class CudaMemoryProbe:
    """Bytes allocated by torch on one CUDA device (tensors only, not the allocator's cache)."""

    kind = "cuda max_memory_allocated"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def strict(self) -> None:
        pass  # the CUDA allocator reports live tensor bytes directly

    def relax(self) -> None:
        pass

    def settle(self) -> None:
        gc.collect()
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()

    def current(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)


class CpuMemoryProbe:
    """Resident set size of this process, from /proc/self/status (Linux).

    glibc keeps freed blocks below its (adaptive) mmap threshold in its heap for reuse, so
    RSS would count every block a step ever touched rather than the live peak. `strict()`
    fixes the threshold low, so every tensor buffer is its own mapping, unmapped when freed.
    That only holds while the heap has no large free blocks yet, so memory is measured first,
    in a fresh process, and `relax()` then gives glibc its usual steady state for timing
    (mapping each buffer costs page faults a trained process does not pay).
    """

    kind = "cpu resident set (VmHWM)"

    def __init__(self) -> None:
        self._libc = _glibc()

    @staticmethod
    def available() -> bool:
        return _PROC_STATUS.is_file() and _PROC_CLEAR_REFS.exists()

    def strict(self) -> None:
        if self._libc is not None:
            self._libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
            self._libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)

    def relax(self) -> None:
        if self._libc is not None:
            self._libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's adaptive maximum
            self._libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)

    def settle(self) -> None:
        gc.collect()
        if self._libc is not None:
            self._libc.malloc_trim(0)

    def current(self) -> int:
        return _status_kib("VmRSS") * 1024

    def reset_peak(self) -> None:
        _PROC_CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS

    def peak(self) -> int:
        return _status_kib("VmHWM") * 1024


def memory_probe(device: torch.device) -> CudaMemoryProbe | CpuMemoryProbe | None:
    """The probe for `device`, or None where peak memory cannot be read (non-Linux CPU)."""
    if device.type == "cuda":
        return CudaMemoryProbe(device)
    if device.type == "cpu" and CpuMemoryProbe.available():
        return CpuMemoryProbe()
    return None


def _status_kib(key: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # "VmRSS:   123456 kB"
    raise RuntimeError(f"{key} not found in {_PROC_STATUS}")


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - musl and others lack these; then RSS is read as it is
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc
