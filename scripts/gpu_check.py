#!/usr/bin/env python3
"""`make gpu-check`: the CUDA path proven in one run of at most ten minutes, with one report.

Parts, in order, each in its own process group with its own timeout (a hang costs that part's
budget, never the whole run's; the timeouts add up to TOTAL_BUDGET_S, and time a part leaves
unused passes on to the next):

1. setup      installs what a fresh GPU machine lacks (a CUDA build of torch, bitsandbytes,
              this package with its dev extra) and checks that torch sees the GPU;
2. gpu-tests  the `-m gpu` test tier (pytest, JUnit XML with each test's measured numbers);
3. bench      `advfusion bench` at DeepSeek-Coder-1.3B's shape, 4-bit base, with generation;
4. demo       `advfusion demo` on CUDA.

A part that fails leaves the others running (each reports on its own). The report
(report.md + report.json: device, versions, each part, each GPU test, the bench's goals) goes
under a folder printed at the start and the end. Without a GPU (nvidia-smi lists none) or
with --dry-run, the script prints what it would run and exits 0, running nothing.

Offline (`--wheels DIR`, `make gpu-check WHEELS=DIR`): a CUDA machine for such checks often
has no network, only a CUDA PyTorch image. `make wheelhouse` (`--download-wheels DIR`), on a
machine with network, fills DIR with the wheels the check needs beyond such an image
(IMAGE_PACKAGES), for the target's Python version and platform; the setup part then installs
from DIR alone (pip --no-index --no-build-isolation) and says in one line what is missing.
Every part runs with the Hugging Face hub and datasets offline: nothing calls the network.

Only the standard library is used here: the script must start before torch is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOTAL_BUDGET_S = 560  # the parts' timeouts together; with the probes (<= 40 s) ten minutes
KILL_GRACE_S = 5  # after SIGTERM, before SIGKILL
LOG_TAIL_LINES = 30

# The bench command docs/performance.md lists for the GPU (DeepSeek-Coder-1.3B's shape).
BENCH_ARGS = [
    "--device", "cuda", "--hidden", "2048", "--intermediate", "5504", "--layers", "24",
    "--heads", "16", "--vocab", "32256", "--batch", "8", "--seq", "512",
    "--quantization", "4bit", "--dtype", "bfloat16", "--n-adapters", "3,6,12",
    "--query-rank", "256", "--rounds", "3", "--steps", "5", "--warmup", "2",
    "--gen-prompts", "16", "--gen-new-tokens", "64",
]  # fmt: skip

TORCH_REQUIREMENT = "torch>=2.4,<3"  # pyproject.toml's; PyPI's Linux wheels are CUDA builds
BITSANDBYTES_REQUIREMENT = "bitsandbytes>=0.45,<1"

# What a CUDA PyTorch image typically brings (with everything these depend on): the wheel
# folder holds the rest of what the check needs. Names as pip normalises them.
IMAGE_PACKAGES = (
    "torch", "triton", "numpy", "transformers", "accelerate", "peft", "safetensors",
    "tokenizers", "huggingface-hub", "rich", "typer", "sacrebleu", "pyarrow", "pandas",
    "matplotlib", "tensorboard", "setuptools", "wheel", "pip", "packaging", "filelock",
    "fsspec", "pyyaml", "requests", "tqdm", "regex", "typing-extensions", "click", "pygments",
)  # fmt: skip
# Published as source only (pure Python): `make wheelhouse` builds their wheels.
SOURCE_ONLY = ("rouge-score",)
WHEELHOUSE_LIMIT_MB = 64  # the repository plus the wheel folder must stay under this
# Every part runs with these: the hub and datasets never reach the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# Run by the interpreter under test: what it has, as one JSON line (argv: distributions
# whose installed versions to report).
PROBE_CODE = r"""
import importlib, importlib.metadata, json, sys
found = {"python": sys.version.split()[0]}
if sys.argv[1:]:
    found["distributions"] = {}
    for name in sys.argv[1:]:
        try:
            found["distributions"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found["distributions"][name] = None
for name in ("torch", "bitsandbytes", "transformers", "accelerate", "peft", "pytest"):
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "installed")
    except Exception as exc:
        found[name] = None
        found[name + "_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:  # installed as a distribution, with its dependencies (not only importable from here)
    found["advfusion"] = importlib.metadata.version("advfusion")
except importlib.metadata.PackageNotFoundError:
    found["advfusion"] = None
if found["torch"]:
    import torch
    found["torch_cuda"] = torch.version.cuda
    found["cuda_available"] = torch.cuda.is_available()
    if found["cuda_available"]:
        found["device_name"] = torch.cuda.get_device_name(0)
        found["bf16_supported"] = torch.cuda.is_bf16_supported()
        free, total = torch.cuda.mem_get_info(0)
        found["device_memory_gib"] = round(total / 2**30, 1)
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Part:
    """One step of the check: a command with its own timeout."""

    name: str
    description: str
    command: list[str]
    timeout_s: int
    requires: tuple[str, ...] = ()  # parts that must have passed first


@dataclass
class PartResult:
    name: str
    status: str  # passed | failed | timed-out | skipped
    command: str
    timeout_s: int
    seconds: float = 0.0
    returncode: int | None = None
    log: str | None = None  # relative to the report folder
    reason: str | None = None
    log_tail: list[str] = field(default_factory=list)


# ---- the plan ---------------------------------------------------------------------------------


def plan(python: str, out: Path, wheels: Path | None = None) -> list[Part]:
    """The parts, their commands and timeouts; `out` is the report folder; `wheels`: install
    from that folder only (no network)."""
    advfusion = [python, "-m", "advfusion_cli"]
    setup = [python, str(REPO / "scripts" / "gpu_check.py"), "--install-missing"]
    if wheels is not None:
        setup += ["--wheels", str(wheels)]
    source = f"from {wheels}, offline" if wheels is not None else "with pip"
    return [
        Part(
            "setup",
            f"install what is missing ({source}: CUDA torch, bitsandbytes, advfusion[dev]); "
            "torch sees the GPU",
            setup,
            timeout_s=120,
        ),
        Part(
            "gpu-tests",
            "the -m gpu test tier against fp32 CPU references",
            [
                python,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "-v",
                "-p",
                "no:cacheprovider",
                "-o",
                "junit_family=xunit1",
                f"--junitxml={out / 'gpu-tests.xml'}",
            ],  # fmt: skip
            timeout_s=150,
        ),
        Part(
            "bench",
            "advfusion bench at DeepSeek-Coder-1.3B's shape, 4-bit NF4 base, with generation",
            [*advfusion, "bench", *BENCH_ARGS, "--json", str(out / "bench-gpu.json")],
            timeout_s=180,
        ),
        Part(
            "demo",
            "advfusion demo on CUDA (tiny model, testbed, every method, pass@1)",
            [*advfusion, "demo", "--workdir", str(out / "demo")],
            timeout_s=110,
        ),
    ]


def render_plan(parts: list[Part]) -> str:
    lines = []
    for number, part in enumerate(parts, 1):
        lines.append(f"{number}. {part.name} (timeout {part.timeout_s} s): {part.description}")
        lines.append(f"   $ {shlex.join(part.command)}")
    total = sum(p.timeout_s for p in parts)
    lines.append(f"Timeouts add up to {total} s ({total / 60:.1f} min).")
    return "\n".join(lines)


# ---- running one part -------------------------------------------------------------------------


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM to the part's whole process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(part: Part, out: Path, passed: set[str], spare_s: float = 0.0) -> PartResult:
    """Run one part with its timeout (+ `spare_s` that earlier parts left unused), its output
    in logs/<name>.log under `out`."""
    timeout_s = int(part.timeout_s + spare_s)
    result = PartResult(part.name, "skipped", shlex.join(part.command), timeout_s)
    missing = [name for name in part.requires if name not in passed]
    if missing:
        result.reason = f"needs {', '.join(missing)}, which did not pass"
        return result
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{part.name}.log"
    result.log = str(log_path.relative_to(out))
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                part.command,
                cwd=REPO,
                env={**os.environ, **OFFLINE_ENV},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except OSError as exc:
            result.status, result.reason = "failed", f"could not start: {exc}"
            return result
        try:
            result.returncode = process.wait(timeout=timeout_s)
            result.status = "passed" if result.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(process)
            result.status = "timed-out"
            result.reason = f"stopped after its {timeout_s} s timeout"
        except BaseException:  # Ctrl-C: take the part's processes down with us
            _kill_group(process)
            raise
    result.seconds = round(time.monotonic() - started, 1)
    result.log_tail = log_tail(log_path)
    if result.status == "failed" and result.reason is None:
        result.reason = f"exit code {result.returncode}"
    return result


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    text = path.read_text(errors="replace") if path.exists() else ""
    # progress bars redraw with \r: keep each line's last state
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines()[-lines:]]


# ---- what the machine has ---------------------------------------------------------------------


def gpu_names() -> list[str]:
    """GPUs nvidia-smi lists; [] when there is no nvidia-smi or no GPU."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.startswith("GPU ")]


def nvidia_smi_facts() -> dict:
    query = "name,driver_version,memory.total"
    try:
        found = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rows = [line.split(", ") for line in found.stdout.strip().splitlines() if line.strip()]
    return {"gpus": [dict(zip(query.split(","), row, strict=False)) for row in rows]}


def probe(python: str, timeout_s: int = 120, distributions: tuple[str, ...] = ()) -> dict:
    """What `python` can import, with versions, and whether torch sees CUDA; the installed
    versions of `distributions` (None: not installed) under "distributions"."""
    try:
        found = subprocess.run(
            [python, "-c", PROBE_CODE, *distributions],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"probe_error": str(exc)}
    try:
        return json.loads(found.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"probe_error": (found.stderr or found.stdout)[-500:]}


def install_commands(found: dict, python: str) -> list[list[str]]:
    """pip commands that give `python` what the check needs, from a `probe` result."""
    pip = [python, "-m", "pip", "install", "--quiet"]
    commands: list[list[str]] = []
    torch_version = found.get("torch")
    if not torch_version:
        commands.append([*pip, TORCH_REQUIREMENT])
    elif not found.get("torch_cuda"):
        # A CPU build (e.g. 2.13.0+cpu): PyPI's wheel of the same version is the CUDA one.
        # One forced reinstall, not uninstall + install: pip downloads everything before it
        # removes anything, so a failed download leaves the CPU build in place.
        release = torch_version.split("+")[0]
        commands.append([*pip, "--force-reinstall", f"torch=={release}"])
    if not found.get("bitsandbytes"):
        commands.append([*pip, BITSANDBYTES_REQUIREMENT])
    if not (found.get("advfusion") and found.get("pytest")):
        commands.append([*pip, "-e", f"{REPO}[dev]"])
    return commands


def install_missing(python: str, wheels: Path | None = None) -> int:
    """The setup part: install what is missing (from `wheels` alone when given), then insist
    that torch sees the GPU."""
    if wheels is not None:
        code = install_offline(python, wheels)
        if code != 0:
            return code
    else:
        found = probe(python)
        print("found:", json.dumps(found), flush=True)
        for command in install_commands(found, python):
            print("$", shlex.join(command), flush=True)
            code = subprocess.run(command, cwd=REPO, check=False).returncode
            if code != 0:
                print(f"setup: '{shlex.join(command)}' failed (exit code {code})", flush=True)
                return 1
    found = probe(python)
    print("now:", json.dumps(found), flush=True)
    if not found.get("cuda_available"):
        print("setup: torch does not see a CUDA device", flush=True)
        return 1
    if not found.get("bitsandbytes"):
        print("setup: bitsandbytes does not import:", found.get("bitsandbytes_error"), flush=True)
        return 1
    return 0


# ---- offline: the wheel folder ----------------------------------------------------------------


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if found is None:
        raise ValueError(f"not a requirement: {spec!r}")
    return normalize(found.group(1))


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """pyproject.toml's runtime dependencies and the dev extra's pytest (the check runs the
    gpu test tier; the dev extra's other tools are not needed there)."""
    text = pyproject.read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the two lists, read by hand
        runtime, dev = (
            re.findall(r'"([^"]+)"', block)
            for block in (
                re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1),
                re.search(r"^dev = \[(.*?)\]", text, re.S | re.M).group(1),
            )
        )
    else:
        project = tomllib.loads(text)["project"]
        runtime, dev = project["dependencies"], project["optional-dependencies"]["dev"]
    return [*runtime, *(spec for spec in dev if requirement_name(spec) == "pytest")]


def needed_beyond_image(requirements: list[str] | None = None) -> list[str]:
    """The requirements a CUDA PyTorch image does not bring (IMAGE_PACKAGES)."""
    requirements = project_requirements() if requirements is None else requirements
    image = {normalize(name) for name in IMAGE_PACKAGES}
    return [spec for spec in requirements if requirement_name(spec) not in image]


def folder_distributions(folder: Path) -> set[str]:
    """Distribution names of the wheels (and source archives) in `folder`."""
    names = set()
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name.endswith(".whl"):
            names.add(normalize(path.name.split("-")[0]))
        elif path.name.endswith((".tar.gz", ".zip")):
            names.add(normalize(path.name.rsplit("-", 1)[0]))
    return names


def offline_missing(found: dict, wheels: Path, needed: list[str]) -> list[str]:
    """What neither the interpreter (a `probe` with distributions) nor the folder has."""
    missing = []
    if not found.get("torch_cuda"):
        missing.append("torch (a CUDA build: start from a CUDA PyTorch image)")
    installed = found.get("distributions") or {}
    in_folder = folder_distributions(wheels)
    for spec in needed:
        name = requirement_name(spec)
        if not installed.get(name) and name not in in_folder:
            missing.append(name)
    return missing


def missing_line(missing: list[str], wheels: Path) -> str:
    return (
        f"gpu-check: missing (not installed, not in {wheels}): {', '.join(missing)}; "
        "run `make wheelhouse WHEELS=DIR PY_VERSION=X.Y` where there is network and copy DIR"
    )


def install_offline(python: str, wheels: Path) -> int:
    """Install what the check needs from `wheels` alone: pip --no-index --no-build-isolation
    (source-only packages come as wheels built by `make wheelhouse`)."""
    needed = needed_beyond_image()
    names = tuple(requirement_name(spec) for spec in needed) + ("advfusion",)
    found = probe(python, distributions=names)
    print("found:", json.dumps(found), flush=True)
    missing = offline_missing(found, wheels, needed)
    if missing:
        print(missing_line(missing, wheels), flush=True)
        return 1
    installed = found.get("distributions") or {}
    to_install = [spec for spec in needed if not installed.get(requirement_name(spec))]
    pip = [python, "-m", "pip", "install", "--no-index", "--no-build-isolation"]
    commands = []
    if to_install:
        commands.append([*pip, "--find-links", str(wheels), *to_install])
    if not installed.get("advfusion"):
        commands.append([*pip, "--no-deps", "-e", str(REPO)])
    for command in commands:
        print("$", shlex.join(command), flush=True)
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        print(done.stdout + done.stderr, end="", flush=True)
        if done.returncode != 0:
            absent = re.findall(r"No matching distribution found for ([^\s]+)", done.stderr)
            if absent:
                print(missing_line(sorted(set(absent)), wheels), flush=True)
            else:
                print(f"setup: '{shlex.join(command)}' failed", flush=True)
            return 1
    return 0


def marker_environment(python_version: str, platform: str) -> dict[str, str]:
    """The target interpreter's PEP 508 marker values (CPython on Linux)."""
    machine = "aarch64" if "aarch64" in platform else "x86_64"
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": f"{python_version}.0",
        "extra": "",
    }


def closure_beyond_image(report: dict, roots: list[str], environment: dict) -> dict[str, str]:
    """name -> version of what `roots` need from a pip resolution report, not descending
    into IMAGE_PACKAGES (the image brings them and what they need)."""
    try:
        from packaging.requirements import Requirement
    except ModuleNotFoundError:  # pip carries its own copy
        from pip._vendor.packaging.requirements import Requirement

    resolved = {normalize(item["metadata"]["name"]): item["metadata"] for item in report["install"]}
    image = {normalize(name) for name in IMAGE_PACKAGES}
    wanted: dict[str, str] = {}
    queue = [requirement_name(spec) for spec in roots]
    while queue:
        name = queue.pop()
        if name in wanted or name in image or name not in resolved:
            continue
        metadata = resolved[name]
        wanted[name] = metadata["version"]
        for spec in metadata.get("requires_dist") or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                queue.append(normalize(requirement.name))
    return wanted


def expand_platform(tag: str) -> list[str]:
    """A glibc manylinux tag and every older one it can run (pip takes --platform tags
    literally): manylinux_2_28_x86_64 -> manylinux_2_28 ... manylinux_2_5, manylinux2014,
    manylinux2010, manylinux1 (x86_64)."""
    found = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag)
    if found is None:
        return [tag]
    newest, arch = int(found.group(1)), found.group(2)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{arch}" for minor, name in legacy.items() if minor <= newest]


def target_flags(python_version: str, platforms: list[str]) -> list[str]:
    flags = ["--python-version", python_version, "--implementation", "cp"]
    for platform in dict.fromkeys(tag for given in platforms for tag in expand_platform(given)):
        flags += ["--platform", platform]
    return flags


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def repository_mb() -> float:
    """What copying the repository moves: its tracked files (all files without git)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if listed.returncode == 0:
        paths = [REPO / name for name in listed.stdout.decode().split("\0") if name]
        return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20
    return folder_mb(REPO)


def download_wheels(dest: Path, python_version: str, platforms: list[str]) -> int:
    """`make wheelhouse`: the wheels the check needs beyond a CUDA PyTorch image, for the
    target's Python version and platform, into `dest` (needs network)."""
    dest.mkdir(parents=True, exist_ok=True)
    needed = needed_beyond_image()
    pip = [sys.executable, "-m", "pip"]
    for spec in needed:  # source-only, pure Python: built into a wheel here
        if requirement_name(spec) in SOURCE_ONLY:
            _run_or_fail([*pip, "wheel", "--no-deps", "--wheel-dir", str(dest), spec])
    flags = target_flags(python_version, platforms)
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        _run_or_fail(
            [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
             str(report_path), "--only-binary=:all:", *flags, "--target", scratch,
             "--find-links", str(dest), *needed]
        )  # fmt: skip
        report = json.loads(report_path.read_text())
    wanted = closure_beyond_image(report, needed, marker_environment(python_version, platforms[0]))
    pins = [f"{name}=={version}" for name, version in sorted(wanted.items())]
    _run_or_fail(
        [*pip, "download", "--no-deps", "--only-binary=:all:", *flags, "--find-links",
         str(dest), "--dest", str(dest), *pins]
    )  # fmt: skip
    stale = [p for p in dest.iterdir() if normalize(p.name.split("-")[0]) not in wanted]
    for path in stale:  # a previous download's other versions or packages
        path.unlink()
    wheels_mb, repo_mb = folder_mb(dest), repository_mb()
    print(f"wheelhouse: {len(wanted)} packages in {dest}: {', '.join(pins)}")
    total = wheels_mb + repo_mb
    print(
        f"wheelhouse: {wheels_mb:.1f} MiB + repository {repo_mb:.1f} MiB = {total:.1f} MiB "
        f"(limit {WHEELHOUSE_LIMIT_MB} MiB)"
    )
    if total >= WHEELHOUSE_LIMIT_MB:
        print(f"wheelhouse: over {WHEELHOUSE_LIMIT_MB} MiB", file=sys.stderr)
        return 1
    return 0


def _run_or_fail(command: list[str]) -> None:
    print("$", shlex.join(command), flush=True)
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise SystemExit(f"wheelhouse: '{shlex.join(command[:4])} ...' failed (exit code {code})")


# ---- the report -------------------------------------------------------------------------------


def junit_results(path: Path) -> list[dict]:
    """Each test of a JUnit XML file: id, outcome, seconds, message, recorded properties."""
    if not path.is_file():
        return []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return []
    tests = []
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                text = (found.get("message") or "").strip()
                message = text.splitlines()[0][:300] if text else None
                break
        properties = {
            prop.get("name"): prop.get("value")
            for prop in case.iter("property")
            if prop.get("name")
        }
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "message": message,
                "properties": properties,
            }
        )
    return tests


def bench_summary(path: Path) -> dict | None:
    """The bench JSON's goals and per-configuration ratios, or None when it was not written."""
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return {"error": f"{path.name} is not valid JSON: {exc}"}
    rows = [
        {
            key: row.get(key)
            for key in ("name", "median_s", "ratio", "ratio_min", "peak_mb", "error")
            if key in row
        }
        for row in results.get("training", [])
    ]
    return {
        "device": (results.get("environment") or {}).get("device_name"),
        "training": rows,
        "generation": results.get("generation"),
        "goals": results.get("goals", []),
    }


def build_report(
    started: str, seconds: float, facts: dict, found: dict, results: list[PartResult], out: Path
) -> dict:
    return {
        "started": started,
        "seconds": round(seconds, 1),
        "budget_s": TOTAL_BUDGET_S,
        "passed": all(r.status == "passed" for r in results),
        "device": facts,
        "versions": found,
        "parts": [asdict(r) for r in results],
        "gpu_tests": junit_results(out / "gpu-tests.xml"),
        "bench": bench_summary(out / "bench-gpu.json"),
    }


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")


def render_markdown(report: dict) -> str:
    gpus = report["device"].get("gpus") or [{}]
    versions = report["versions"]
    lines = [
        "# gpu-check report",
        "",
        f"Started {report['started']}, {report['seconds']:.0f} s in all "
        f"(budget {report['budget_s']} s). Overall: "
        f"**{'passed' if report['passed'] else 'FAILED'}**.",
        "",
        f"Device: {_cell(gpus[0].get('name') or versions.get('device_name'))}, "
        f"driver {_cell(gpus[0].get('driver_version'))}, "
        f"memory {_cell(gpus[0].get('memory.total'))}.",
        "",
        "| package | version |",
        "|---|---|",
    ]
    for name in ("python", "torch", "torch_cuda", "bitsandbytes", "transformers", "accelerate"):
        lines.append(f"| {name} | {_cell(versions.get(name))} |")
    for name in ("peft", "pytest", "advfusion"):
        lines.append(f"| {name} | {_cell(versions.get(name))} |")
    lines += [
        "",
        "## Parts",
        "",
        "| part | status | seconds | timeout s | note |",
        "|---|---|---:|---:|---|",
    ]
    for part in report["parts"]:
        note = part["reason"] or ""
        if part["log"]:
            note = f"{note} (log: {part['log']})".strip()
        lines.append(
            f"| {part['name']} | {part['status']} | {part['seconds']:.1f} | {part['timeout_s']} "
            f"| {_cell(note)} |"
        )
    if report["gpu_tests"]:
        lines += [
            "",
            "## GPU tests",
            "",
            "| test | outcome | seconds | measured |",
            "|---|---|---:|---|",
        ]
        for test in report["gpu_tests"]:
            measured = ", ".join(f"{k}={v}" for k, v in test["properties"].items())
            if test["message"]:
                measured = f"{measured} {test['message']}".strip()
            lines.append(
                f"| {_cell(test['test'])} | {test['outcome']} | {test['seconds']:.1f} "
                f"| {_cell(measured)} |"
            )
    bench = report["bench"]
    if bench:
        lines += ["", "## Bench", ""]
        if bench.get("error"):
            lines.append(bench["error"])
        else:
            lines += ["| configuration | median s | ratio | ratio (min) | peak MiB |"]
            lines += ["|---|---:|---:|---:|---:|"]
            for row in bench["training"]:
                if row.get("error"):
                    lines.append(f"| {_cell(row['name'])} | failed: {_cell(row['error'])} | | | |")
                    continue
                cells = [row.get(k) for k in ("median_s", "ratio", "ratio_min", "peak_mb")]
                lines.append(f"| {_cell(row['name'])} | " + " | ".join(map(_cell, cells)) + " |")
            lines += ["", "| goal | target | measured | met |", "|---|---|---:|---|"]
            for goal in bench["goals"]:
                met = {True: "yes", False: "no", None: "–"}[goal.get("met")]
                lines.append(
                    f"| {_cell(goal.get('goal'))} | {_cell(goal.get('target'))} "
                    f"| {_cell(goal.get('measured'))} | {met} |"
                )
    failing = [
        p for p in report["parts"] if p["status"] in ("failed", "timed-out") and p["log_tail"]
    ]
    for part in failing:
        lines += ["", f"## Last lines of {part['name']}", "", "```", *part["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


# ---- main -------------------------------------------------------------------------------------


def default_out() -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return REPO / "gpu-check-report" / stamp


def run_all(parts: list[Part], out: Path, python: str) -> tuple[dict, list[PartResult]]:
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    clock = time.monotonic()
    facts = nvidia_smi_facts()
    results: list[PartResult] = []
    passed: set[str] = set()
    spare = 0.0  # seconds earlier parts left unused: later parts may use them, so the
    # budget is never exceeded, and a hang still leaves every later part its own timeout
    for part in parts:
        print(
            f"[gpu-check] {part.name}: {part.description} (timeout {part.timeout_s} s"
            + (f" + {spare:.0f} s left over" if spare >= 1 else "")
            + ")",
            flush=True,
        )
        result = run_part(part, out, passed, spare)
        spare = max(0.0, part.timeout_s + spare - result.seconds)
        if result.status == "passed":
            passed.add(part.name)
        print(
            f"[gpu-check] {part.name}: {result.status} in {result.seconds:.0f} s"
            + (f" ({result.reason})" if result.reason else ""),
            flush=True,
        )
        results.append(result)
    found = probe(python, timeout_s=30)
    report = build_report(started, time.monotonic() - clock, facts, found, results, out)
    return report, results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, help="report folder (default gpu-check-report/<UTC time>)"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter to install into and run"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument(
        "--wheels", type=Path, help="install from this wheel folder only (no network)"
    )
    parser.add_argument(
        "--download-wheels",
        type=Path,
        metavar="DIR",
        help="fill DIR with the wheels an offline check needs (make wheelhouse; needs network)",
    )
    parser.add_argument(
        "--python-version",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="--download-wheels: the target's Python version (default this one's)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        help="--download-wheels: the target's platform tag (repeatable; default "
        "manylinux_2_28_x86_64, which also takes older manylinux wheels)",
    )
    parser.add_argument("--install-missing", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.download_wheels is not None:
        platforms = args.platform or ["manylinux_2_28_x86_64"]
        return download_wheels(args.download_wheels.resolve(), args.python_version, platforms)
    wheels = args.wheels.resolve() if args.wheels is not None else None
    if wheels is not None and not wheels.is_dir():
        print(f"gpu-check: WHEELS={args.wheels} is not a folder", file=sys.stderr)
        return 2
    if args.install_missing:
        return install_missing(args.python, wheels)
    out = (args.out or default_out()).resolve()
    parts = plan(args.python, out, wheels)
    gpus = gpu_names()
    if args.dry_run or not gpus:
        why = "--dry-run" if args.dry_run else "no CUDA device (nvidia-smi lists no GPU)"
        print(f"gpu-check: {why}: dry run, nothing is run. On a GPU machine it would run:")
        print(render_plan(parts))
        print(f"and write report.md and report.json under {out}")
        if wheels is not None:  # what setup would find missing, from here (no network)
            needed = needed_beyond_image()
            names = tuple(requirement_name(spec) for spec in needed)
            missing = offline_missing(probe(args.python, 60, names), wheels, needed)
            print(missing_line(missing, wheels) if missing else f"gpu-check: {wheels} suffices")
        return 0
    print(f"gpu-check on {', '.join(gpus)}; report under {out}", flush=True)
    print(render_plan(parts), flush=True)
    if out.exists() and any(out.iterdir()):
        print(f"gpu-check: --out {out} is not empty; give a new folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    report, _ = run_all(parts, out, args.python)
    json_path, md_path = write_report(report, out)
    print(
        f"[gpu-check] {'passed' if report['passed'] else 'FAILED'}; report: {md_path} and {json_path}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
