"""scripts/gpu_check.py (`make gpu-check`) on a CPU machine: the dry run, the per-part timeouts
that kill a hung part's whole process group, prerequisites, what it installs, and the report
it writes. The GPU parts themselves run only where there is a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()
Part = gpu_check.Part


def python_part(name: str, code: str, timeout_s: int = 30, requires=()) -> Part:
    return Part(name, f"test part {name}", [sys.executable, "-c", code], timeout_s, requires)


def test_without_a_gpu_make_gpu_check_prints_the_plan_and_exits_0(tmp_path):
    if gpu_check.gpu_names():
        pytest.skip("this machine has a GPU: make gpu-check would run for real")
    out = tmp_path / "report"
    result = subprocess.run(
        ["make", "--no-print-directory", "gpu-check", f"GPU_CHECK_ARGS=--out {out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout and "dry run, nothing is run" in result.stdout
    for part in ("setup", "gpu-tests", "bench", "demo"):
        assert f". {part} (timeout " in result.stdout
    assert "-m pytest -m gpu" in result.stdout
    assert (
        "bench --device cuda --hidden 2048" in result.stdout
        and "--quantization 4bit" in result.stdout
    )
    assert not out.exists()  # nothing ran, nothing written


def test_dry_run_flag_runs_nothing_even_with_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_names", lambda: ["GPU 0: pretend"])
    monkeypatch.setattr(gpu_check, "run_all", lambda *a: pytest.fail("ran a part"))
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "r")]) == 0
    assert "--dry-run: dry run" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()


def test_the_parts_fit_ten_minutes_and_each_has_its_own_timeout(tmp_path):
    parts = gpu_check.plan(sys.executable, tmp_path)
    assert [p.name for p in parts] == ["setup", "gpu-tests", "bench", "demo"]
    assert all(0 < p.timeout_s <= 300 for p in parts)
    assert sum(p.timeout_s for p in parts) <= gpu_check.TOTAL_BUDGET_S <= 600 - 20
    assert all(p.requires == () for p in parts)  # a failing part leaves the others running
    # the bench part is the command docs/performance.md gives for the GPU
    docs = (REPO / "docs" / "performance.md").read_text()
    bench = parts[2].command
    for flag, value in zip(bench, bench[1:], strict=False):
        if flag in ("--hidden", "--layers", "--vocab", "--quantization", "--gen-new-tokens"):
            assert f"{flag} {value}" in docs


def test_a_hung_part_is_killed_with_its_children_at_its_timeout(tmp_path):
    # the part starts a child that would outlive it, prints the child's pid, then hangs
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    result = gpu_check.run_part(python_part("hang", code, timeout_s=1), tmp_path, set())
    assert result.status == "timed-out" and "1 s timeout" in result.reason
    assert time.monotonic() - started < 1 + gpu_check.KILL_GRACE_S + 5
    child = int((tmp_path / "logs" / "hang.log").read_text().split()[0])
    time.sleep(0.5)
    assert not alive(child)  # the grandchild went down with the group


def alive(pid: int) -> bool:
    """Running or sleeping; a killed process waiting for its (new) parent to reap it is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_failing_part_is_reported_and_its_dependents_skipped(tmp_path):
    setup = gpu_check.run_part(
        python_part("setup", "print('no cuda'); raise SystemExit(3)"), tmp_path, set()
    )
    assert (setup.status, setup.returncode, setup.reason) == ("failed", 3, "exit code 3")
    assert setup.log_tail == ["no cuda"]
    after = gpu_check.run_part(
        python_part("bench", "print('ran')", requires=("setup",)), tmp_path, set()
    )
    assert after.status == "skipped" and after.reason == "needs setup, which did not pass"
    assert not (tmp_path / "logs" / "bench.log").exists()
    ran = gpu_check.run_part(
        python_part("bench", "print('ran')", requires=("setup",)), tmp_path, {"setup"}
    )
    assert ran.status == "passed" and ran.log_tail == ["ran"]


def test_install_commands_fix_exactly_what_is_missing():
    py = "/venv/bin/python"
    ready = {"torch": "2.6.0", "torch_cuda": "12.4", "bitsandbytes": "0.45.0"}
    ready |= {"advfusion": "0.1.0", "pytest": "8.3"}
    assert gpu_check.install_commands(ready, py) == []
    cpu_build = ready | {"torch": "2.13.0+cpu", "torch_cuda": None}
    commands = [" ".join(c) for c in gpu_check.install_commands(cpu_build, py)]
    assert commands == [f"{py} -m pip install --quiet --force-reinstall torch==2.13.0"]
    bare = {"torch": None, "bitsandbytes": None, "advfusion": None, "pytest": None}
    commands = [" ".join(c) for c in gpu_check.install_commands(bare, py)]
    assert commands == [
        f"{py} -m pip install --quiet torch>=2.4,<3",
        f"{py} -m pip install --quiet bitsandbytes>=0.45,<1",
        f"{py} -m pip install --quiet -e {REPO}[dev]",
    ]


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_gpu_fusion" name="test_fusion[advfusion]" time="1.5">
<properties><property name="logits_rel_err" value="0.0031" /></properties></testcase>
<testcase classname="tests.test_gpu_memory" name="test_peak" time="9.0">
<failure message="peak 9.1 GiB over the 8.0 GiB bound&#10;more">trace</failure></testcase>
<testcase classname="tests.test_gpu_memory" name="test_skip" time="0.0">
<skipped message="needs a CUDA device">x</skipped></testcase>
</testsuite></testsuites>"""

BENCH = {
    "environment": {"device_name": "NVIDIA H200"},
    "training": [
        {"name": "frozen-base", "median_s": 0.2, "ratio": 1.0, "ratio_min": 1.0, "peak_mb": 3000.0},
        {"name": "advfusion-6", "error": "CUDA out of memory"},
    ],
    "generation": {"batched_speedup": {"base": 9.5}},
    "goals": [
        {"goal": "fusion N=6 step-time ratio", "target": ">= 0.6", "measured": None, "met": False}
    ],
}


def test_run_all_writes_one_markdown_and_json_report(tmp_path, monkeypatch):
    (tmp_path / "gpu-tests.xml").write_text(JUNIT)
    (tmp_path / "bench-gpu.json").write_text(json.dumps(BENCH))
    monkeypatch.setattr(gpu_check, "nvidia_smi_facts", lambda: {"gpus": [{"name": "H200"}]})
    found = {"python": "3.11.7", "torch": "2.6.0", "torch_cuda": "12.4"}
    monkeypatch.setattr(gpu_check, "probe", lambda python, timeout_s: found)
    parts = [
        python_part("setup", "print('ok')", timeout_s=2),
        python_part("gpu-tests", "raise SystemExit(1)", timeout_s=2, requires=("setup",)),
        python_part("demo", "import time; time.sleep(30)", timeout_s=1, requires=("setup",)),
    ]
    report, results = gpu_check.run_all(parts, tmp_path, sys.executable)
    json_path, md_path = gpu_check.write_report(report, tmp_path)

    loaded = json.loads(json_path.read_text())
    assert loaded["passed"] is False
    assert [(p["name"], p["status"]) for p in loaded["parts"]] == [
        ("setup", "passed"),
        ("gpu-tests", "failed"),
        ("demo", "timed-out"),
    ]
    assert loaded["versions"] == found
    tests = {t["test"]: t for t in loaded["gpu_tests"]}
    fusion = tests["tests.test_gpu_fusion::test_fusion[advfusion]"]
    assert fusion["outcome"] == "passed" and fusion["properties"] == {"logits_rel_err": "0.0031"}
    peak = tests["tests.test_gpu_memory::test_peak"]
    assert peak["outcome"] == "failed" and peak["message"] == "peak 9.1 GiB over the 8.0 GiB bound"
    assert tests["tests.test_gpu_memory::test_skip"]["outcome"] == "skipped"
    assert loaded["bench"]["device"] == "NVIDIA H200"

    md = md_path.read_text()
    assert "Overall: **FAILED**" in md and "Device: H200" in md
    assert "| torch | 2.6.0 |" in md and "| torch_cuda | 12.4 |" in md
    assert "| gpu-tests | failed |" in md and "| demo | timed-out |" in md
    assert "logits_rel_err=0.0031" in md
    assert "| advfusion-6 | failed: CUDA out of memory |" in md
    assert "| fusion N=6 step-time ratio | >= 0.6 | – | no |" in md


def test_main_with_a_gpu_runs_the_parts_and_exits_1_on_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_names", lambda: ["GPU 0: pretend"])
    monkeypatch.setattr(gpu_check, "nvidia_smi_facts", lambda: {})
    monkeypatch.setattr(gpu_check, "probe", lambda python, timeout_s: {})
    monkeypatch.setattr(
        gpu_check, "plan", lambda python, out, wheels: [python_part("setup", "raise SystemExit(2)")]
    )
    out = tmp_path / "r"
    assert gpu_check.main(["--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"report under {out}" in printed and str(out / "report.md") in printed
    assert json.loads((out / "report.json").read_text())["parts"][0]["status"] == "failed"
    # a second run into the same folder is refused, the first report kept
    assert gpu_check.main(["--out", str(out)]) == 2
    assert json.loads((out / "report.json").read_text())["parts"][0]["status"] == "failed"


def test_a_missing_or_broken_bench_json_is_reported_not_fatal(tmp_path):
    assert gpu_check.bench_summary(tmp_path / "absent.json") is None
    (tmp_path / "bench-gpu.json").write_text('{"training": [')
    summary = gpu_check.bench_summary(tmp_path / "bench-gpu.json")
    assert "not valid JSON" in summary["error"]
    assert gpu_check.junit_results(tmp_path / "absent.xml") == []


def test_probe_reads_the_interpreters_json_line_and_reports_garbage(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(
        '#!/bin/sh\necho "warming up"\necho \'{"torch": "2.6.0", "cuda_available": true}\'\n'
    )
    fake.chmod(0o755)
    assert gpu_check.probe(str(fake)) == {"torch": "2.6.0", "cuda_available": True}
    fake.write_text("#!/bin/sh\necho 'Traceback: no module' >&2\nexit 1\n")
    assert "Traceback: no module" in gpu_check.probe(str(fake))["probe_error"]
    assert "probe_error" in gpu_check.probe(str(tmp_path / "missing"))


def test_time_a_part_leaves_unused_passes_on_to_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "nvidia_smi_facts", lambda: {})
    monkeypatch.setattr(gpu_check, "probe", lambda python, timeout_s: {})
    took = {"setup": 10.0, "gpu-tests": 150.0, "bench": 0.0, "demo": 30.0}  # gpu-tests hangs
    status = {"gpu-tests": "timed-out"}
    given = {}

    def fake_run_part(part, out, passed, spare_s=0.0):
        given[part.name] = spare_s
        result = gpu_check.PartResult(part.name, status.get(part.name, "passed"), "", 0)
        result.seconds = took[part.name] + (spare_s if part.name == "gpu-tests" else 0.0)
        return result

    monkeypatch.setattr(gpu_check, "run_part", fake_run_part)
    parts = gpu_check.plan(sys.executable, tmp_path)  # 120, 150, 180, 110 s
    gpu_check.run_all(parts, tmp_path, sys.executable)
    # setup left 110 s to the tier; the tier hung and used them up; bench still gets its own
    assert given == {"setup": 0.0, "gpu-tests": 110.0, "bench": 0.0, "demo": 180.0}
    # and run_part runs a part under its own timeout plus the spare
    monkeypatch.undo()
    result = gpu_check.run_part(python_part("bench", "print(1)", timeout_s=1), tmp_path, set(), 2.5)
    assert result.status == "passed" and result.timeout_s == 3


# ---- offline: the wheel folder ----------------------------------------------------------------


NETWORK_GUARD = """
import os, socket
_connect = socket.socket.connect
def _refuse(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        with open(os.environ["NETWORK_LOG"], "a") as log:
            log.write(repr(address) + "\\n")
        raise OSError("network call refused by the test")
    return _connect(self, address, *args)
socket.socket.connect = _refuse
"""


def test_make_gpu_check_with_an_empty_wheel_folder_says_what_is_missing_offline(tmp_path):
    """On CPU with WHEELS=<empty folder> and an interpreter that has nothing installed (a bare
    venv): the plan (setup installing from the folder, offline), then one line naming what
    neither the interpreter nor the folder has; no process opens a network connection."""
    if gpu_check.gpu_names():
        pytest.skip("this machine has a GPU: make gpu-check would run for real")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    log = tmp_path / "network.log"
    env = {**os.environ, "PYTHONPATH": str(guard), "NETWORK_LOG": str(log)}
    result = subprocess.run(
        [
            "make", "--no-print-directory", "gpu-check", f"WHEELS={wheels}",
            f"GPU_CHECK_ARGS=--out {tmp_path / 'report'} --python {bare / 'bin' / 'python'}",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dry run, nothing is run" in result.stdout
    assert f"--install-missing --wheels {wheels}" in result.stdout
    assert f"from {wheels}, offline" in result.stdout
    missing = [line for line in result.stdout.splitlines() if line.startswith("gpu-check: missing")]
    assert len(missing) == 1, result.stdout
    line = missing[0]
    assert line.startswith(f"gpu-check: missing (not installed, not in {wheels}): torch (a CUDA")
    for name in ("bitsandbytes", "datasets", "pydantic", "rouge-score", "cydifflib", "pytest"):
        assert name in line
    assert "make wheelhouse" in line
    assert not log.exists(), log.read_text()  # no network call from any Python process
    assert not (tmp_path / "report").exists()


def test_the_guard_would_have_seen_a_network_call(tmp_path):
    """The guard used above records and refuses a connection (so its silence means none)."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    log = tmp_path / "network.log"
    env = {**os.environ, "PYTHONPATH": str(guard), "NETWORK_LOG": str(log)}
    code = "import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), 1)\nexcept OSError:\n pass"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert "192.0.2.1" in log.read_text()


def test_the_folder_holds_what_the_project_needs_beyond_a_cuda_pytorch_image():
    needed = {gpu_check.requirement_name(s) for s in gpu_check.needed_beyond_image()}
    assert needed == {"bitsandbytes", "datasets", "pydantic", "rouge-score", "cydifflib", "pytest"}


def test_the_closure_stops_at_the_image_and_follows_markers():
    report = {
        "install": [
            {"metadata": {"name": "Datasets", "version": "5.0", "requires_dist": [
                "dill<0.5", "pandas", "tomli; python_version < '3.11'",
                "pytest; extra == 'tests'"]}},
            {"metadata": {"name": "dill", "version": "0.4.1", "requires_dist": []}},
            {"metadata": {"name": "pandas", "version": "2.3", "requires_dist": ["pytz"]}},
            {"metadata": {"name": "pytz", "version": "2025.1"}},
            {"metadata": {"name": "tomli", "version": "2.0"}},
            {"metadata": {"name": "pytest", "version": "9.0"}},
        ]
    }  # fmt: skip
    env311 = gpu_check.marker_environment("3.11", "manylinux_2_28_x86_64")
    closure = gpu_check.closure_beyond_image(report, ["datasets>=4"], env311)
    assert closure == {"datasets": "5.0", "dill": "0.4.1"}  # pandas (image) not descended
    env310 = gpu_check.marker_environment("3.10", "manylinux_2_28_x86_64")
    closure = gpu_check.closure_beyond_image(report, ["datasets>=4"], env310)
    assert closure == {"datasets": "5.0", "dill": "0.4.1", "tomli": "2.0"}


def test_a_manylinux_tag_takes_every_older_one():
    tags = gpu_check.expand_platform("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_24_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and "manylinux_2_29_x86_64" not in tags
    assert gpu_check.expand_platform("macosx_11_0_arm64") == ["macosx_11_0_arm64"]


def test_offline_setup_installs_from_the_folder_with_no_index(tmp_path, monkeypatch, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl",
                 "rouge_score-0.1.2-py3-none-any.whl"):  # fmt: skip
        (wheels / name).write_bytes(b"")
    installed = {"datasets": "5.2", "pydantic": "2.14", "cydifflib": "1.2", "pytest": "9.2"}
    found = {"torch": "2.6.0", "torch_cuda": "12.4", "distributions": installed}
    monkeypatch.setattr(gpu_check, "probe", lambda python, timeout_s=120, distributions=(): found)
    ran = []

    def fake_run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    assert gpu_check.install_offline("/py", wheels) == 0
    assert ran[0][:6] == ["/py", "-m", "pip", "install", "--no-index", "--no-build-isolation"]
    assert ran[0][6:8] == ["--find-links", str(wheels)]
    assert {gpu_check.requirement_name(spec) for spec in ran[0][8:]} == {
        "bitsandbytes", "rouge-score"
    }  # fmt: skip
    assert ran[1][-3:] == ["--no-deps", "-e", str(REPO)]  # advfusion itself, deps checked

    # a folder that lacks one: one line naming it, nothing installed
    (wheels / "rouge_score-0.1.2-py3-none-any.whl").unlink()
    ran.clear()
    assert gpu_check.install_offline("/py", wheels) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "missing" in line]
    assert lines[-1].endswith(
        "rouge-score; run `make wheelhouse WHEELS=DIR PY_VERSION=X.Y` where there is network "
        "and copy DIR"
    )
    assert ran == []


def test_every_part_runs_with_the_hub_offline(tmp_path):
    code = "import os; print(os.environ['HF_HUB_OFFLINE'], os.environ['HF_DATASETS_OFFLINE'])"
    result = gpu_check.run_part(python_part("env", code), tmp_path, set())
    assert result.status == "passed" and result.log_tail == ["1 1"]


def test_only_pytest_is_taken_from_the_dev_extra(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["torch>=2.4", "datasets>=4"]\n'
        '[project.optional-dependencies]\ndev = ["pytest>=8", "ruff==0.1", "submitit>=1.5"]\n'
    )
    assert gpu_check.project_requirements(pyproject) == ["torch>=2.4", "datasets>=4", "pytest>=8"]
