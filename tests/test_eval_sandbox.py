"""Sandbox: per executable language a correct and a wrong program; the limits, hostile Python
programs in detail (escaping writes, /proc secrets, signals, orphans, the fallbacks without
namespaces or root), test bookkeeping and output normalisation. The hostile-program matrix
over every executable language is tests/test_reliability_sandbox.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.sandbox import process_runner, programs, toolchains
from advfusion_cli.sandbox.programs import Limits, outputs_match, run_program, run_tests

EXECUTABLE = programs.executable_languages()
INFO = programs.sandbox_info()

# Sum the integers on stdin; WRONG adds one; LOOP never ends.
SUM_PROGRAMS = {
    "python": "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()){delta})\n",
    "javascript": (
        "const t = require('fs').readFileSync(0, 'utf8').split(/\\s+/).filter(Boolean)"
        ".reduce((a, b) => a + Number(b), 0);\nconsole.log(t{delta});\n"
    ),
    "java": (
        "import java.util.*;\n// public class Decoy in a comment must not name the file\n"
        "public class Solution {\n  public static void main(String[] args) {\n"
        "    Scanner in = new Scanner(System.in); long t = 0;\n"
        "    while (in.hasNextLong()) t += in.nextLong();\n"
        "    System.out.println(t{delta});\n  }\n}\n"
    ),
    "c": (
        "#include <stdio.h>\nint main(void) { long a, t = 0;\n"
        '  while (scanf("%ld", &a) == 1) t += a;\n  printf("%ld\\n", t{delta}); return 0; }\n'
    ),
    "cpp": (
        "#include <iostream>\nint main() { long a, t = 0;\n"
        "  while (std::cin >> a) t += a;\n  std::cout << t{delta} << std::endl; }\n"
    ),
    "go": (
        'package main\nimport "fmt"\nfunc main() {\n  var a, t int64\n'
        "  for { if _, err := fmt.Scan(&a); err != nil { break }; t += a }\n"
        "  fmt.Println(t{delta})\n}\n"
    ),
    "ruby": "puts STDIN.read.split.map(&:to_i).sum{delta}\n",
    "rust": (
        "use std::io::Read;\nfn main() { let mut s = String::new();\n"
        "  std::io::stdin().read_to_string(&mut s).unwrap();\n"
        "  let t: i64 = s.split_whitespace().map(|x| x.parse::<i64>().unwrap()).sum();\n"
        '  println!("{{}}", t{delta}); }}\n'
    ),
    "php": (
        "<?php\n$t = 0;\nforeach (preg_split('/\\s+/', trim(stream_get_contents(STDIN))) as $x)"
        ' { $t += (int)$x; }\necho $t{delta}, "\\n";\n'
    ),
}
PYTHON_LOOP = "while True:\n    pass\n"
PYTHON_MEMORY_BOMB = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n"
PYTHON_FLOOD = "while True:\n    print('x' * 1000)\n"
TESTS = [("1 2 3\n", ["6"]), ("40\n2\n", ["42\n"]), ("-5 5", ["0"])]


def _program(language: str, delta: str) -> str:
    template = SUM_PROGRAMS[language]
    if language == "rust":
        return template.replace("{delta}", delta).replace("{{", "{").replace("}}", "}")
    return template.replace("{delta}", delta)


def _needs(language: str):
    return pytest.mark.skipif(not EXECUTABLE[language], reason=f"no {language} toolchain here")


PER_LANGUAGE = [pytest.param(lang, marks=_needs(lang)) for lang in toolchains.LANGUAGES]


def test_every_canonical_language_has_programs_and_a_table_row():
    assert set(SUM_PROGRAMS) == set(toolchains.LANGUAGES)
    assert toolchains.LANGUAGES == (
        "python", "javascript", "java", "c", "cpp", "go", "ruby", "rust", "php",
    )  # fmt: skip
    assert EXECUTABLE["python"] is True


@pytest.mark.parametrize("language", PER_LANGUAGE)
def test_correct_program_passes(language):
    result = run_tests(language, _program(language, ""), TESTS)
    assert result.status == "passed", result
    assert (result.passed, result.n_passed, result.n_run, result.n_tests) == (True, 3, 3, 3)


@pytest.mark.parametrize("language", PER_LANGUAGE)
def test_wrong_program_fails(language):
    result = run_tests(language, _program(language, " + 1"), TESTS)
    assert not result.passed
    assert result.status == "wrong_answer"
    assert (result.n_passed, result.n_run) == (0, 1)  # stops at the first failure
    assert result.first_failure.index == 0
    assert result.first_failure.stdout.strip() == "7"
    assert result.first_failure.expected == ("6",)


def test_cpu_limit_ends_a_busy_program_before_the_wall_clock():
    limits = Limits(cpu_seconds=1, wall_seconds=8)
    result = run_program("python", PYTHON_LOOP, "", limits)
    assert (result.status, result.returncode) == ("timeout", -signal.SIGXCPU)
    assert result.wall_time < 6.0


@pytest.mark.slow
def test_a_program_catching_sigxcpu_is_killed_a_cpu_second_later():
    source = (
        "import signal\nsignal.signal(signal.SIGXCPU, lambda *_: None)\nwhile True:\n    pass\n"
    )
    result = run_program("python", source, "", Limits(cpu_seconds=1, wall_seconds=8))
    assert (result.status, result.returncode) == ("timeout", -signal.SIGKILL)


def test_programs_keep_normal_signal_semantics():
    # Inside the pid namespace the program is not pid 1, so default actions still apply.
    result = run_program("python", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert (result.status, result.returncode) == ("runtime_error", -signal.SIGTERM)


def test_compile_error_and_unsupported():
    if EXECUTABLE["c"]:
        broken = run_tests("c", "int main( { return 0; }", TESTS)
        assert broken.status == "compile_error"
        assert broken.compile_result.status == "compile_error"
        assert "error" in broken.compile_result.stderr
        assert broken.n_run == 0
    unknown = run_program("kotlin", "fun main() {}")
    assert unknown.status == "unsupported" and "kotlin" in unknown.stderr


def test_missing_toolchain_is_unsupported(monkeypatch):
    monkeypatch.setattr(programs, "find_toolchain", lambda language: None)
    result = run_program("ruby", "puts 1")
    assert result.status == "unsupported"
    assert "needs: ruby" in result.stderr


def test_python_syntax_and_runtime_errors():
    assert run_program("python", "def f(:\n").status == "runtime_error"
    crashed = run_program("python", "raise SystemExit(3)")
    assert (crashed.status, crashed.returncode) == ("runtime_error", 3)


def test_run_all_tests_without_stopping():
    source = "x = int(input())\nprint(x * 2)\n"
    tests = [("1", ["2"]), ("2", ["5"]), ("3", ["6"]), ("oops", ["?"])]
    result = run_tests("python", source, tests, stop_on_first_failure=False)
    assert (result.n_passed, result.n_run, result.n_tests) == (2, 4, 4)
    assert result.status == "wrong_answer"
    assert result.first_failure.index == 1


def test_stdin_larger_than_a_pipe_buffer_is_fed_completely():
    numbers = " ".join(["1"] * 300_000)  # ~600 kB, far more than a 64 kB pipe
    result = run_program("python", _program("python", ""), numbers)
    assert (result.status, result.stdout.strip()) == ("ok", "300000")


def test_exit_is_detected_without_pidfds(monkeypatch):
    def unavailable(pid):
        raise OSError("pidfd_open unavailable")

    monkeypatch.setattr(os, "pidfd_open", unavailable)
    # In this process, not the launcher (a separate interpreter the patch would not reach).
    monkeypatch.setattr(programs, "run_in_launcher", process_runner.run_isolated)
    assert run_tests("python", _program("python", ""), TESTS).passed
    assert run_program("python", "while True: pass", "", Limits(wall_seconds=1)).status == "timeout"


def test_program_that_ignores_stdin():
    result = run_program("python", "print('hi')", "x" * 500_000)
    assert (result.status, result.stdout) == ("ok", "hi\n")


@pytest.mark.parametrize(
    ("actual", "accepted", "expected"),
    [
        ("6\n", ["6"], True),
        ("6   \n\n\n", ["6"], True),
        ("1 2 \r\n3\r\n", ["1 2\n3"], True),
        ("  6", ["6"], False),  # leading whitespace counts
        ("1\n\n2", ["1\n2"], False),  # inner blank lines count
        ("YES", ["yes", "YES"], True),  # any accepted output
        ("", [""], True),
    ],
)
def test_output_normalisation(actual, accepted, expected):
    assert outputs_match(actual, accepted) is expected


def test_java_main_class_detection():
    assert toolchains.java_main_class("public class Foo { }") == ("Foo", "Foo")
    assert toolchains.java_main_class(
        "package a.b;\n/* public class Nope {} */\npublic final class Bar {}"
    ) == ("a.b.Bar", "Bar")
    assert toolchains.java_main_class(
        "class Helper {}\nclass Runner { public static void main(String[] a) {} }"
    ) == ("Runner", "Main")
    assert toolchains.java_main_class("int x;") == ("Main", "Main")


def test_language_aliases():
    assert toolchains.canonical_language("Python3") == "python"
    assert toolchains.canonical_language("C++") == "cpp"
    assert toolchains.canonical_language("node.js") == "javascript"
    assert toolchains.canonical_language("cobol") is None
    with pytest.raises(UserError, match="Unknown language 'pyhton'. Did you mean 'python'"):
        toolchains.resolve_language("pyhton")


def test_bad_limits_are_user_errors():
    with pytest.raises(UserError, match="'memory_mb' must be positive"):
        Limits(memory_mb=0)


def test_sandbox_info_reports_each_layer():
    for key in (
        "network_isolated",
        "filesystem_read_only",
        "pid_namespace",
        "process_limit",
        "memory_limit",
        "executable_languages",
    ):
        assert key in INFO
    assert INFO["executable_languages"] == EXECUTABLE


def _kernel_gives_root_namespaces() -> bool:
    """Probed without the sandbox's code: can a root child unshare mount, network and pid
    namespaces here? (CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID through libc.)"""
    if os.geteuid() != 0:
        return False
    flags = 0x00020000 | 0x40000000 | 0x20000000
    probe = f"import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare({flags}) != 0)"
    return subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


@pytest.mark.skipif(not _kernel_gives_root_namespaces(), reason="not root, or no namespaces here")
def test_as_root_with_namespaces_every_layer_is_on():
    """Where the kernel offers the namespaces, a sandbox that stops using them (or a probe that
    stops seeing them) is a failure here: the isolation tests above would only skip."""
    assert INFO["running_as_root"] and INFO["namespaces"]
    assert INFO["network_isolated"], "a run can reach the network"
    assert INFO["filesystem_read_only"], "a run can write outside its directory"
    assert INFO["pid_namespace"], "a run can see and signal other processes"
    assert INFO["capabilities_dropped"]


# ---- hostile Python programs in detail ------------------------------------------------


def test_single_huge_allocation_is_refused():
    result = run_program("python", "x = bytearray(8 * 10**9)\n", "", Limits(memory_mb=128))
    assert result.status == "memory_limit"


def test_stderr_flood_is_capped():
    source = "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)\n"
    result = run_program("python", source, "", Limits(max_output_bytes=50_000))
    assert result.status == "output_limit"
    assert len(result.stderr) <= 50_000


def test_big_file_hits_the_file_size_limit():
    source = "with open('big', 'wb') as f:\n    f.write(b'0' * (8 * 1024 * 1024))\nprint('done')\n"
    result = run_program("python", source, "", Limits(file_size_mb=1))
    assert result.status != "ok"
    assert "done" not in result.stdout


def test_writes_outside_the_run_directory_do_not_land(tmp_path, monkeypatch):
    caller_cwd = tmp_path / "caller"
    caller_cwd.mkdir()
    monkeypatch.chdir(caller_cwd)
    marker = f"escaped-{uuid.uuid4().hex}"
    home = os.path.expanduser("~")
    targets = [str(caller_cwd / marker), os.path.join(home, marker), f"/tmp/{marker}"]
    source = textwrap.dedent(
        f"""
        import os
        print(os.getcwd())
        for path in {targets!r} + [os.path.expanduser("~/{marker}"), "../{marker}"]:
            try:
                with open(path, "w") as handle:
                    handle.write("x")
                print("wrote", os.path.abspath(path))
            except OSError as error:
                print("blocked", path, error.errno)
        """
    )
    try:
        result = run_program("python", source)
        assert result.status == "ok", result
        for path in targets:
            assert not os.path.exists(path), f"sandbox wrote {path}"
        run_dir = result.stdout.splitlines()[0]
        assert not os.path.exists(run_dir)  # the run directory is removed afterwards
        if INFO["filesystem_read_only"]:
            # Only the run directory itself (~ is inside it) is writable.
            wrote = [line for line in result.stdout.splitlines() if line.startswith("wrote")]
            assert wrote == [f"wrote {run_dir}/{marker}"]
    finally:
        for path in targets:
            if os.path.exists(path):
                os.remove(path)


def test_environment_secrets_are_not_visible(monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("ADVFUSION_FAKE_API_KEY", secret)
    source = textwrap.dedent(
        """
        import os
        print(sorted(os.environ.items()))
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    print(open(f"/proc/{entry}/environ", "rb").read())
                except OSError:
                    pass
        """
    )
    result = run_program("python", source)
    assert result.status == "ok"
    assert "HOME" in result.stdout
    assert secret not in result.stdout and secret not in result.stderr
    assert "ADVFUSION_FAKE_API_KEY" not in result.stdout


@pytest.mark.skipif(INFO["cgroup"] is None, reason="needs per-run cgroups")
def test_the_program_and_its_children_are_in_the_runs_own_cgroups():
    """The child joins through `tasks` (its only thread, "0"): the program, and what it
    forks, must be in a fresh pids and memory cgroup of this run, not the caller's."""
    source = textwrap.dedent(
        """
        import os
        def groups():
            lines = open("/proc/self/cgroup").read().splitlines()
            return {c: path for _, cs, path in (l.split(":", 2) for l in lines) for c in cs.split(",")}
        mine = groups()
        read, write = os.pipe()
        if os.fork() == 0:
            os.write(write, repr(groups()).encode())
            os._exit(0)
        os.wait()
        child = eval(os.read(read, 65536).decode())
        print(mine["pids"], mine["memory"], child == mine)
        """
    )
    with open("/proc/self/cgroup") as handle:
        callers = handle.read()
    result = run_program("python", source)
    assert result.status == "ok", result
    pids, memory, same = result.stdout.split()
    assert same == "True"
    assert os.path.basename(pids).startswith("advfusion-sandbox-")
    assert os.path.basename(memory) == os.path.basename(pids)  # one pair per run
    assert pids not in callers and memory not in callers


@pytest.mark.skipif(not INFO["namespaces"], reason="no mount namespace here")
def test_dev_is_minimal_read_only_and_leaves_nothing_in_the_run_directory():
    """/dev holds only the harmless devices, a writable private /dev/shm and the fd links;
    nothing can be created in it, and building it leaves nothing in the run directory."""
    source = textwrap.dedent(
        """
        import os
        print(sorted(os.listdir("/dev")))
        print(sorted(os.listdir(".")))
        with open("/dev/null", "w") as handle:
            handle.write("discarded")
        print(len(open("/dev/urandom", "rb").read(16)), open("/dev/zero", "rb").read(2))
        with open("/dev/shm/scratch", "w") as handle:
            handle.write("x")
        print(os.listdir("/dev/shm"))
        try:
            open("/dev/sda", "w")
            print("created a file in /dev")
        except OSError as error:
            print("blocked", error.errno)
        """
    )
    result = run_program("python", source)
    assert result.status == "ok", result
    lines = result.stdout.splitlines()
    assert lines[0] == str(
        ["fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"]
    )
    assert lines[1] == str(["main.py"])
    assert lines[2:5] == ["16 b'\\x00\\x00'", "['scratch']", "blocked 30"]  # EROFS


@pytest.mark.skipif(not INFO["pid_namespace"], reason="signals could reach outside processes")
def test_signals_cannot_reach_outside_processes(tmp_path):
    # A harmless signal (SIGWINCH) so that an escape could not hurt the machine either.
    flag = tmp_path / "signalled"
    watcher_source = textwrap.dedent(
        f"""
        import signal, sys, time
        signal.signal(signal.SIGWINCH, lambda *_: open({str(flag)!r}, "w").close())
        print("ready", flush=True)
        time.sleep(30)
        """
    )
    watcher = subprocess.Popen([sys.executable, "-c", watcher_source], stdout=subprocess.PIPE)
    try:
        assert watcher.stdout.readline().strip() == b"ready"
        source = textwrap.dedent(
            f"""
            import os, signal
            for pid in ({watcher.pid}, -1, {os.getpid()}):
                try:
                    os.kill(pid, signal.SIGWINCH)
                    print("sent", pid)
                except OSError as error:
                    print("failed", pid, error.errno)
            """
        )
        result = run_program("python", source)
        time.sleep(0.3)
        assert result.status == "ok", result
        assert not flag.exists()
        assert watcher.poll() is None
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()


@pytest.mark.skipif(
    not (INFO["pid_namespace"] or INFO["cgroup"]), reason="setsid children escape a group kill"
)
def test_background_children_do_not_outlive_the_run():
    marker = f"orphan-{uuid.uuid4().hex}"
    source = textwrap.dedent(
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # {marker}"],
                         start_new_session=True, stdout=subprocess.DEVNULL)
        print("started")
        """
    )
    result = run_program("python", source)
    assert result.status == "ok"
    time.sleep(0.2)
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker.encode() in handle.read():
                        leftovers.append(entry)
            except OSError:
                continue
    assert leftovers == []


# ---- the fallback without namespaces (machines where they are unavailable) ---------------


@pytest.fixture
def without_namespaces(monkeypatch):
    import dataclasses

    from advfusion_cli.sandbox import isolation

    info, bases = isolation.isolation_plan()
    degraded = dataclasses.replace(
        info,
        namespaces=False,
        user_namespace=False,
        network_isolated=False,
        filesystem_read_only=False,
        pid_namespace=False,
    )
    monkeypatch.setattr(isolation, "isolation_plan", lambda: (degraded, bases))
    return degraded


def test_fallback_still_limits_time_memory_and_output(without_namespaces):
    assert run_tests("python", _program("python", ""), TESTS).passed
    assert run_program("python", "while True: pass", "", Limits(wall_seconds=1)).status == "timeout"
    bomb = run_program("python", PYTHON_MEMORY_BOMB, "", Limits(memory_mb=128))
    assert bomb.status == "memory_limit"
    flood = run_program("python", PYTHON_FLOOD, "", Limits(max_output_bytes=10_000))
    assert flood.status == "output_limit"


def test_fallback_scrubs_the_environment(without_namespaces, monkeypatch):
    monkeypatch.setenv("ADVFUSION_FAKE_API_KEY", "fallback-secret")
    result = run_program("python", "import os\nprint(dict(os.environ))")
    assert result.status == "ok"
    assert "fallback-secret" not in result.stdout


@pytest.mark.skipif(INFO["cgroup"] is None, reason="needs per-run cgroups")
def test_fallback_with_cgroups_contains_fork_bombs_and_stray_children(without_namespaces):
    bomb = run_program(
        "python",
        "import os\nwhile True:\n    os.fork()\n",
        "",
        Limits(max_processes=16, wall_seconds=3),
    )
    assert bomb.status in {"runtime_error", "timeout"}
    marker = f"fallback-orphan-{uuid.uuid4().hex}"
    source = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {marker}'],"
        " start_new_session=True)\n"
    )
    assert run_program("python", source).status == "ok"
    time.sleep(0.2)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    assert marker.encode() not in handle.read()
            except OSError:
                continue


# ---- an unprivileged caller: the user-namespace path --------------------------------------

_SYSTEM_PYTHON = "/usr/bin/python3"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _can_run_as_nobody() -> bool:
    if os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"):
        return False
    probe = subprocess.run(
        ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         _SYSTEM_PYTHON, "-c", f"import sys; sys.path.insert(0, {_REPO_ROOT!r}); "
         "import advfusion_cli.sandbox.programs"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not _can_run_as_nobody(), reason="needs root, setpriv and a system python3")
def test_unprivileged_caller_gets_user_namespace_isolation(tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {_REPO_ROOT!r})
        from advfusion_cli.sandbox import programs as S
        out = {{"info": S.sandbox_info()}}
        ok = S.run_tests("python", "print(sum(map(int, input().split())))", [("1 2", ["3"])])
        out["passed"] = ok.passed
        escape = S.run_program("python", "open('/tmp/{tmp_path.name}-escape', 'w')")
        out["escape"] = escape.status
        bomb = S.run_program("python", "import os\\nwhile True:\\n    os.fork()\\n", "",
                             S.Limits(max_processes=16, wall_seconds=3))
        out["fork_bomb"] = bomb.status
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         _SYSTEM_PYTHON, "-c", script],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    import json

    out = json.loads(result.stdout)
    info = out["info"]
    assert info["running_as_root"] is False
    if not info["user_namespace"]:
        pytest.skip("unprivileged user namespaces are disabled on this machine")
    assert info["network_isolated"] and info["filesystem_read_only"] and info["pid_namespace"]
    assert info["process_limit"].startswith("RLIMIT_NPROC inside a user namespace")
    assert out["passed"] is True
    assert out["escape"] == "runtime_error"
    assert not os.path.exists(f"/tmp/{tmp_path.name}-escape")
    assert out["fork_bomb"] in {"runtime_error", "timeout"}


@pytest.mark.parametrize(
    ("stderr", "status"),
    [
        (
            b'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space\n',
            "memory_limit",
        ),
        (b"java.lang.OutOfMemoryError: Requested array size exceeds VM limit\n", "memory_limit"),
        # The process limit, not memory: a JVM that cannot start one more thread.
        (
            b'Exception in thread "main" java.lang.OutOfMemoryError: unable to create native'
            b" thread: possibly out of memory or process/resource limits reached\n",
            "runtime_error",
        ),
    ],
)
def test_java_out_of_memory_errors_are_told_apart(stderr, status):
    from advfusion_cli.sandbox.process_runner import Outcome

    outcome = Outcome(1, b"", stderr, 0.5, 0.4, False, False, False)
    java = toolchains.LANGUAGE_TABLE["java"]
    assert programs._classify(outcome, java, Limits()) == status
