"""The workdir a person can read: adapters by base/task/kind/language, runs by id, provenance.

Layout (root = `--workdir`, default ./advfusion-runs):

    adapters/<base>/<task>/<kind>/<language>/   trained adapter (engine format) + provenance.json
    runs/<method>-<label>-<hash8>/              one training run
        job.yaml  env.json  status.json  metrics.jsonl  summary.json  .lock
        checkpoints/<phase>/step-NNNNNN/        resumable state (weights, optimizer, RNG, data position)
        best/<phase>/                           trainable weights at the best eval loss
        final/                                  the exported result (adapter, fusion or LoRA folder)

The run id's hash covers the resolved job spec minus output-only keys (and the identity of
the adapters a fusion uses), so re-running the same command finds the same run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.workflows import atomic

DEFAULT_WORKDIR = Path("advfusion-runs")

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_slug(model: str) -> str:
    """A folder name for a base model: `Qwen/Qwen2.5-Coder-1.5B` -> `Qwen--Qwen2.5-Coder-1.5B`.

    Local paths use their last component (plus a short hash of the full path, so two local
    models that share a folder name never share adapters).
    """
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:6]
        name = f"{path.resolve().name or 'model'}-{digest}"
    else:
        name = model.replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def identity_hash(identity: object) -> str:
    """First 8 hex digits of the SHA-256 of a canonical JSON encoding."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def make_run_id(method: str, label: str, identity: object) -> str:
    """`<method>-<target-or-langs>-<hash8>`, e.g. `advfusion-ruby-1f3a9c02`."""
    safe_label = re.sub(r"[^A-Za-z0-9._+-]+", "_", label)
    return f"{method}-{safe_label}-{identity_hash(identity)}"


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.runs / run_id)

    def adapter_dir(
        self, base: str, task: str, kind: str, language: str, quantization: str = "none"
    ) -> Path:
        """adapters/<base>/<task>/<kind>/<language>; a quantized base gets its own folder
        (`<base>-4bit`), since adapters trained on it are not the full-precision ones."""
        slug = model_slug(base) + ("" if quantization == "none" else f"-{quantization}")
        return self.adapters / slug / task / kind / language

    def ensure_writable(self) -> None:
        """Create the workdir (and runs/) or fail with one line naming it."""
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or str(err)
            raise UserError(f"Workdir '{self.root}' is not writable: {reason}.") from None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def job_yaml(self) -> Path:
        """The resolved job spec."""
        return self.path / "job.yaml"

    @property
    def env_json(self) -> Path:
        """Versions, device, git revision."""
        return self.path / "env.json"

    @property
    def status_json(self) -> Path:
        """running / finished / failed / interrupted."""
        return self.path / "status.json"

    @property
    def metrics_jsonl(self) -> Path:
        """One JSON record per step and per evaluation."""
        return self.path / "metrics.jsonl"

    @property
    def summary_json(self) -> Path:
        """Parameters, timings, peak memory, best eval loss."""
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        """checkpoints/<phase>/step-NNNNNN and checkpoints/<phase>/end."""
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        """best/<phase>/: trainable weights at the lowest eval loss."""
        return self.path / "best"

    @property
    def final(self) -> Path:
        """The exported result (adapter, fusion or LoRA folder)."""
        return self.path / "final"

    @property
    def lock_file(self) -> Path:
        """Held (flock) by the process writing the run."""
        return self.path / ".lock"

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_json.read_text())
        except (OSError, ValueError):
            return None

    def is_finished(self) -> bool:
        status = self.status()
        return bool(status and status.get("status") == FINISHED and self.final.exists())

    def write_status(self, state: str, **extra: object) -> None:
        record = {"status": state, "pid": os.getpid(), "updated": now_iso(), **extra}
        atomic.write_json(self.status_json, record)

    def log(self, record: dict) -> None:
        atomic.append_line(self.metrics_jsonl, json.dumps(record, sort_keys=False))

    def read_metrics(self) -> list[dict]:
        """All complete metric records (a torn last line from a crash is skipped)."""
        if not self.metrics_jsonl.exists():
            return []
        records = []
        for line in self.metrics_jsonl.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def rewind_metrics(self, keep: Callable[[dict], bool]) -> None:
        """Keep only the records `keep(record)` accepts (those up to the resumed checkpoint)."""
        kept = [json.dumps(r) for r in self.read_metrics() if keep(r)]
        atomic.write_text(self.metrics_jsonl, "".join(line + "\n" for line in kept))


class RunLock:
    """An exclusive `fcntl.flock` on runs/<id>/.lock; a second writer fails with one line.

    The kernel drops the lock when the process dies, so a crashed run never stays locked.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.run.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"Run '{self.run.id}' is locked by another process (pid {holder}); "
                    "wait for it to finish or stop it."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The project's git commit (with `-dirty` when the tree has changes), if it is a checkout."""
    project = Path(__file__).resolve().parents[2]
    if not (project / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def environment_info(num_processes: int = 1) -> dict:
    """Versions, device and git revision: what is needed to reproduce a run."""
    import torch

    if torch.cuda.is_available():
        device = {
            "type": "cuda",
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
        }
    else:
        device = {"type": "cpu", "threads": torch.get_num_threads()}
    return {
        "created": now_iso(),
        "argv": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": {
            name: _version(name)
            for name in (
                "advfusion",
                "torch",
                "transformers",
                "peft",
                "accelerate",
                "bitsandbytes",
                "datasets",
                "tokenizers",
                "safetensors",
            )
        },
        "device": device,
        "num_processes": num_processes,
        "git": git_revision(),
    }
