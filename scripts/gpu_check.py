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

A part whose prerequisite failed is skipped. The report (report.md + report.json: device,
versions, each part, each GPU test, the bench's goals) goes under a folder printed at the
start and the end. Without a GPU (nvidia-smi lists none) or with --dry-run, the script prints
what it would run and exits 0, running nothing.

Only the standard library is used here: the script must start before torch is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
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

# Run by the interpreter under test: what it has, as one JSON line.
PROBE_CODE = r"""
import importlib, importlib.metadata, json, sys
found = {"python": sys.version.split()[0]}
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


def plan(python: str, out: Path) -> list[Part]:
    """The parts, their commands and timeouts; `out` is the report folder."""
    advfusion = [python, "-m", "advfusion_cli"]
    return [
        Part(
            "setup",
            "install what is missing (CUDA torch, bitsandbytes, advfusion[dev]); torch sees the GPU",
            [python, str(REPO / "scripts" / "gpu_check.py"), "--install-missing"],
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
            requires=("setup",),
        ),
        Part(
            "bench",
            "advfusion bench at DeepSeek-Coder-1.3B's shape, 4-bit NF4 base, with generation",
            [*advfusion, "bench", *BENCH_ARGS, "--json", str(out / "bench-gpu.json")],
            timeout_s=180,
            requires=("setup",),
        ),
        Part(
            "demo",
            "advfusion demo on CUDA (tiny model, testbed, every method, pass@1)",
            [*advfusion, "demo", "--workdir", str(out / "demo")],
            timeout_s=110,
            requires=("setup",),
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


def probe(python: str, timeout_s: int = 120) -> dict:
    """What `python` can import, with versions, and whether torch sees CUDA."""
    try:
        found = subprocess.run(
            [python, "-c", PROBE_CODE],
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


def install_missing(python: str) -> int:
    """The setup part: install what is missing, then insist that torch sees the GPU."""
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
    parser.add_argument("--install-missing", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_missing:
        return install_missing(args.python)
    out = (args.out or default_out()).resolve()
    parts = plan(args.python, out)
    gpus = gpu_names()
    if args.dry_run or not gpus:
        why = "--dry-run" if args.dry_run else "no CUDA device (nvidia-smi lists no GPU)"
        print(f"gpu-check: {why}: dry run, nothing is run. On a GPU machine it would run:")
        print(render_plan(parts))
        print(f"and write report.md and report.json under {out}")
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
