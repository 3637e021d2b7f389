"""Hostile generated programs in every executable language (issue 7).

One table per attack, one program per language in each: an infinite loop, a fork bomb, a
memory bomb, a flood of output, sleeping past the timeout, and an escape attempt that prints
its environment (secrets), writes outside its run directory and connects to a port on the
host's loopback. Each must be contained and scored as a failure; afterwards the machine is as
it was (no process, run directory or cgroup of the sandbox survives, and new processes still
start). The last test feeds hostile candidates to the evaluation's own execution path and
checks that it scores them as failures and goes on.

The Python-specific details (/proc secrets, signals, orphans, fallbacks) are in
tests/test_eval_sandbox.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from advfusion_cli.sandbox import programs, toolchains
from advfusion_cli.sandbox.cgroups import cgroup_v1_bases
from advfusion_cli.sandbox.programs import Limits, run_program

LANGUAGES = toolchains.LANGUAGES
EXECUTABLE = programs.executable_languages()
INFO = programs.sandbox_info()
FAILURES = {"runtime_error", "timeout", "memory_limit", "output_limit"}

INFINITE_LOOPS = {
    "python": "while True:\n    pass\n",
    "javascript": "for (;;) {}\n",
    "java": "public class Main { public static void main(String[] a) { long i = 0; while (true) i++; } }\n",
    "c": "int main(void) { volatile long i = 0; for (;;) i++; }\n",
    "cpp": "int main() { volatile long i = 0; for (;;) i++; }\n",
    "go": "package main\nfunc main() { i := 0\n  for { i++ } }\n",
    "ruby": "loop { }\n",
    "rust": "fn main() { let mut i: u64 = 0; loop { i = std::hint::black_box(i + 1); } }\n",
    "php": "<?php\nwhile (true) { }\n",
}
# Every process started re-runs the bomb, and failures to start one are ignored.
FORK_BOMBS = {
    "python": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "javascript": (
        "const cp = require('child_process');\nfor (;;) {\n"
        "  try { cp.spawn(process.execPath, [__filename], { stdio: 'ignore' }); } catch (e) {}\n}\n"
    ),
    "java": (
        "public class Main {\n  public static void main(String[] a) {\n"
        '    String java = System.getProperty("java.home") + "/bin/java";\n'
        '    String cp = System.getProperty("java.class.path");\n'
        "    while (true) {\n"
        '      try { new ProcessBuilder(java, "-cp", cp, "Main").start(); } catch (Exception e) {}\n'
        "    }\n  }\n}\n"
    ),
    "c": "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n",
    "cpp": "#include <unistd.h>\nint main() { for (;;) fork(); }\n",
    "go": (
        'package main\nimport (\n\t"os"\n\t"os/exec"\n)\n'
        "func main() {\n\tfor {\n\t\t_ = exec.Command(os.Args[0]).Start()\n\t}\n}\n"
    ),
    "ruby": "loop { begin; fork; rescue StandardError; end }\n",
    "rust": (
        "fn main() {\n    let me = std::env::current_exe().unwrap();\n"
        "    loop { let _ = std::process::Command::new(&me).spawn(); }\n}\n"
    ),
    "php": "<?php\nwhile (true) { @proc_open([PHP_BINARY, __FILE__], [], $pipes); }\n",
}
MEMORY_BOMBS = {
    "python": "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n",
    "javascript": "const a = [];\nfor (;;) a.push(new Array(1e6).fill(1));\n",
    "java": (
        "import java.util.*;\npublic class Main { public static void main(String[] x) {\n"
        "  List<long[]> l = new ArrayList<>(); while (true) l.add(new long[1 << 20]); } }\n"
    ),
    "c": (
        "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) {\n"
        "  char *p = malloc(1 << 20); if (!p) return 3; memset(p, 1, 1 << 20); } }\n"
    ),
    "cpp": (
        "#include <vector>\n#include <cstring>\nint main() { std::vector<char*> v; for (;;) {\n"
        "  char* p = new char[1 << 20]; std::memset(p, 1, 1 << 20); v.push_back(p); } }\n"
    ),
    "go": (
        "package main\nfunc main() { var s [][]byte\n"
        "  for { b := make([]byte, 1<<20); for i := range b { b[i] = 1 }; s = append(s, b) } }\n"
    ),
    "ruby": "a = []\nloop { a << ('x' * 10_000_000) }\n",
    "rust": "fn main() { let mut v: Vec<Vec<u8>> = Vec::new(); loop { v.push(vec![1u8; 1 << 20]); } }\n",
    "php": "<?php\n$a = [];\nwhile (true) { $a[] = str_repeat('x', 10000000); }\n",
}
OUTPUT_FLOODS = {
    "python": "while True:\n    print('x' * 1000)\n",
    # writeSync: process.stdout.write in a busy loop only queues, it never reaches the pipe.
    "javascript": "const fs = require('fs');\nfor (;;) fs.writeSync(1, 'x'.repeat(1000) + '\\n');\n",
    "java": 'public class Main { public static void main(String[] a) { while (true) System.out.println("x".repeat(1000)); } }\n',
    "c": '#include <stdio.h>\nint main(void) { for (;;) puts("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); }\n',
    "cpp": "#include <iostream>\nint main() { for (;;) std::cout << std::string(1000, 'x') << '\\n'; }\n",
    "go": 'package main\nimport "fmt"\nfunc main() { for { fmt.Println("xxxxxxxxxxxxxxxxxxxxxxxx") } }\n',
    "ruby": "loop { puts 'x' * 1000 }\n",
    "rust": 'fn main() { loop { println!("{}", "x".repeat(1000)); } }\n',
    "php": "<?php\nwhile (true) { echo str_repeat('x', 1000), \"\\n\"; }\n",
}
SLEEPERS = {
    "python": "import time\ntime.sleep(60)\n",
    "javascript": "setTimeout(() => {}, 60000);\n",
    "java": "public class Main { public static void main(String[] a) throws Exception { Thread.sleep(60000); } }\n",
    "c": "#include <unistd.h>\nint main(void) { sleep(60); return 0; }\n",
    "cpp": "#include <chrono>\n#include <thread>\nint main() { std::this_thread::sleep_for(std::chrono::seconds(60)); }\n",
    "go": 'package main\nimport "time"\nfunc main() { time.Sleep(60 * time.Second) }\n',
    "ruby": "sleep 60\n",
    "rust": "fn main() { std::thread::sleep(std::time::Duration::from_secs(60)); }\n",
    "php": "<?php\nsleep(60);\n",
}

# {paths}: comma-separated double-quoted strings; {port}: the host port to reach.
C_ESCAPE = """
#include <stdio.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
extern char **environ;
int main(void) {{
  for (char **e = environ; *e; e++) puts(*e);
  const char *paths[] = {{{paths}}};
  for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {{
    FILE *f = fopen(paths[i], "w");
    if (f) {{ fputs("x", f); fclose(f); printf("wrote %s\\n", paths[i]); }}
  }}
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {{0}};
  a.sin_family = AF_INET; a.sin_port = htons({port}); a.sin_addr.s_addr = htonl(0x7f000001);
  if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0) puts("connected");
  return 0;
}}
"""
ESCAPES = {
    "python": """
import os, socket
for key, value in os.environ.items():
    print(f"{{key}}={{value}}")
for path in [{paths}]:
    try:
        with open(path, "w") as handle:
            handle.write("x")
        print("wrote", path)
    except OSError:
        pass
s = socket.socket()
s.settimeout(2)
if s.connect_ex(("127.0.0.1", {port})) == 0:
    print("connected")
""",
    "javascript": """
const fs = require('fs');
const net = require('net');
for (const [k, v] of Object.entries(process.env)) console.log(k + '=' + v);
for (const p of [{paths}]) {{
  try {{ fs.writeFileSync(p, 'x'); console.log('wrote ' + p); }} catch (e) {{}}
}}
const s = net.connect({port}, '127.0.0.1', () => {{ console.log('connected'); s.destroy(); }});
s.on('error', () => {{}});
""",
    "java": """
import java.io.*;
import java.net.*;
import java.util.*;
public class Main {{
  public static void main(String[] args) {{
    for (Map.Entry<String, String> e : System.getenv().entrySet())
      System.out.println(e.getKey() + "=" + e.getValue());
    for (String p : new String[] {{{paths}}}) {{
      try (FileWriter w = new FileWriter(p)) {{ w.write("x"); System.out.println("wrote " + p); }}
      catch (IOException e) {{}}
    }}
    try (Socket s = new Socket()) {{
      s.connect(new InetSocketAddress("127.0.0.1", {port}), 2000);
      System.out.println("connected");
    }} catch (IOException e) {{}}
  }}
}}
""",
    "c": C_ESCAPE,
    "cpp": C_ESCAPE,
    "go": """
package main

import (
\t"fmt"
\t"net"
\t"os"
)

func main() {{
\tfor _, e := range os.Environ() {{
\t\tfmt.Println(e)
\t}}
\tfor _, p := range []string{{{paths}}} {{
\t\tif os.WriteFile(p, []byte("x"), 0o644) == nil {{
\t\t\tfmt.Println("wrote", p)
\t\t}}
\t}}
\tif c, err := net.Dial("tcp", "127.0.0.1:{port}"); err == nil {{
\t\tfmt.Println("connected")
\t\tc.Close()
\t}}
}}
""",
    "ruby": """
require 'socket'
ENV.each {{ |k, v| puts "#{{k}}=#{{v}}" }}
[{paths}].each do |p|
  begin
    File.write(p, 'x')
    puts "wrote #{{p}}"
  rescue StandardError
  end
end
begin
  TCPSocket.new('127.0.0.1', {port}).close
  puts 'connected'
rescue StandardError
end
""",
    "rust": """
use std::io::Write;
fn main() {{
    for (k, v) in std::env::vars() {{ println!("{{}}={{}}", k, v); }}
    for p in [{paths}] {{
        if let Ok(mut f) = std::fs::File::create(p) {{
            let _ = f.write_all(b"x");
            println!("wrote {{}}", p);
        }}
    }}
    if std::net::TcpStream::connect("127.0.0.1:{port}").is_ok() {{ println!("connected"); }}
}}
""",
    "php": """<?php
foreach (getenv() as $k => $v) {{ echo "$k=$v\\n"; }}
foreach ([{paths}] as $p) {{
  if (@file_put_contents($p, 'x') !== false) {{ echo "wrote $p\\n"; }}
}}
$s = @fsockopen('127.0.0.1', {port}, $errno, $errstr, 2);
if ($s) {{ echo "connected\\n"; fclose($s); }}
""",
}
ATTACKS = {
    "infinite loop": INFINITE_LOOPS,
    "fork bomb": FORK_BOMBS,
    "memory bomb": MEMORY_BOMBS,
    "huge output": OUTPUT_FLOODS,
    "sleeping past the timeout": SLEEPERS,
    "secrets, writes and network": ESCAPES,
}


def per_language(table: dict[str, str]) -> list:
    return [
        pytest.param(
            language,
            marks=pytest.mark.skipif(not EXECUTABLE[language], reason=f"no {language} toolchain"),
        )
        for language in table
    ]


# ---- the machine is left as it was -------------------------------------------------------


def sandbox_traces() -> set[str]:
    """What a sandboxed run could leave on the host: run and build directories in the temp
    folder, per-run cgroups, and live processes that are in such a cgroup or work in such a
    directory."""
    traces: set[str] = set()
    temp = tempfile.gettempdir()
    for name in os.listdir(temp):
        if name.startswith(("advfusion-run-", "advfusion-build-")):
            traces.add(f"directory {temp}/{name}")
    for base in (cgroup_v1_bases() or {}).values():
        for name in os.listdir(base):
            if name.startswith("advfusion-sandbox-"):
                traces.add(f"cgroup {base}/{name}")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as handle:
                in_sandbox_cgroup = "advfusion-sandbox-" in handle.read()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:  # it exited meanwhile, or it is not ours to read
            continue
        if in_sandbox_cgroup or "/advfusion-run-" in cwd or "/advfusion-build-" in cwd:
            traces.add(f"process {entry} (cwd {cwd})")
    return traces


@pytest.fixture(autouse=True)
def machine_left_as_it_was():
    before = sandbox_traces()
    yield
    deadline = time.monotonic() + 2.0  # the sandbox waits for its processes; allow stragglers
    while (new := sandbox_traces() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not new, f"the sandbox left traces on the host: {sorted(new)}"
    assert subprocess.run(["true"], timeout=10).returncode == 0  # the host can start processes


def test_the_trace_check_sees_a_leftover_directory_and_process():
    """The check above must be able to fail: a run directory and a process working in it,
    as a broken sandbox would leave them, are both reported."""
    leftover = tempfile.mkdtemp(prefix="advfusion-run-")
    straggler = subprocess.Popen(["sleep", "30"], cwd=leftover)
    try:
        traces = sandbox_traces()
        assert f"directory {leftover}" in traces
        assert f"process {straggler.pid} (cwd {leftover})" in traces
    finally:
        straggler.kill()
        straggler.wait()
        os.rmdir(leftover)


# ---- the matrix ---------------------------------------------------------------------------


def test_every_attack_has_a_program_in_every_executable_language():
    for attack, table in ATTACKS.items():
        assert tuple(table) == LANGUAGES, attack


@pytest.mark.parametrize("language", per_language(INFINITE_LOOPS))
def test_infinite_loop_is_cut_off(language):
    start = time.monotonic()
    result = run_program(language, INFINITE_LOOPS[language], "", Limits(wall_seconds=1.0))
    assert result.status == "timeout", result
    # The compile step is not part of the wall limit; the run itself is cut at 1 s.
    assert result.wall_time < 2.5
    assert time.monotonic() - start < 30


def _process_limit_enforced() -> bool:
    return INFO["cgroup"] is not None or not INFO["running_as_root"]


@pytest.mark.skipif(
    not _process_limit_enforced(), reason="no process limit as root without cgroups"
)
@pytest.mark.parametrize("language", per_language(FORK_BOMBS))
def test_fork_bomb_is_contained(language):
    result = run_program(
        language, FORK_BOMBS[language], "", Limits(max_processes=16, wall_seconds=3)
    )
    # A runtime may give up once it cannot start a thread (the JVM): any failure will do.
    assert result.status in FAILURES, result
    assert result.wall_time < 6
    # The next program runs normally: the limit was the bomb's, not the machine's.
    assert run_program("python", "print(6 * 7)").stdout == "42\n"


@pytest.mark.parametrize("language", per_language(MEMORY_BOMBS))
def test_memory_bomb_is_contained(language):
    result = run_program(language, MEMORY_BOMBS[language], "", Limits(memory_mb=256))
    # Native code that checks malloc's NULL exits on its own: a failure, not a memory_limit.
    allowed = {"memory_limit", "runtime_error"} if language == "c" else {"memory_limit"}
    assert result.status in allowed, result
    assert result.wall_time < 10


@pytest.mark.parametrize("language", per_language(OUTPUT_FLOODS))
def test_huge_output_is_capped(language):
    result = run_program(language, OUTPUT_FLOODS[language], "", Limits(max_output_bytes=200_000))
    assert result.status == "output_limit", result
    assert len(result.stdout.encode()) <= 200_000


@pytest.mark.parametrize("language", per_language(SLEEPERS))
def test_sleeping_past_the_timeout_is_cut_off(language):
    # A sleeping program uses no CPU: only the wall clock can end it.
    result = run_program(language, SLEEPERS[language], "", Limits(wall_seconds=1, cpu_seconds=30))
    assert result.status == "timeout", result
    assert result.wall_time < 4.0


@pytest.mark.skipif(
    not (INFO["network_isolated"] and INFO["filesystem_read_only"]),
    reason="needs the network namespace and the read-only file system view",
)
@pytest.mark.parametrize("language", per_language(ESCAPES))
def test_secrets_writes_and_network_do_not_escape(language, tmp_path, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("ADVFUSION_FAKE_TOKEN", secret)
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    marker = f"escaped-{uuid.uuid4().hex}"
    targets = [
        str(caller / marker),
        f"/tmp/{marker}",
        os.path.join(os.path.expanduser("~"), marker),
    ]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    source = ESCAPES[language].format(
        paths=", ".join(json.dumps(t) for t in targets), port=server.getsockname()[1]
    )
    try:
        result = run_program(language, source, "", Limits(wall_seconds=20, cpu_seconds=10))
        try:
            server.accept()
            accepted = True
        except BlockingIOError:
            accepted = False
    finally:
        server.close()
        leaked = [t for t in targets if os.path.exists(t)]
        for path in leaked:
            os.remove(path)
    assert result.status == "ok", result
    assert "PATH=" in result.stdout  # the environment was printed
    assert secret not in result.stdout + result.stderr
    assert "ADVFUSION_FAKE_TOKEN" not in result.stdout
    assert "connected" not in result.stdout.splitlines() and not accepted
    assert leaked == [], f"{language} program wrote {leaked} on the host"


# ---- the evaluation scores hostile candidates as failures and goes on ---------------------


@pytest.mark.skipif(
    not _process_limit_enforced(), reason="no process limit as root without cgroups"
)
def test_hostile_candidates_fail_and_the_evaluation_goes_on(tmp_path, monkeypatch):
    """The evaluation's own path (`execute_candidates`, a process pool over `run_tests` with
    the default limits) given every Python attack between two correct programs."""
    from advfusion_cli.evaluate.execution import ExecutionCache, execute_candidates

    monkeypatch.setenv("ADVFUSION_FAKE_TOKEN", "never-seen")
    escape = ESCAPES["python"].format(paths=json.dumps(str(tmp_path / "escaped")), port=9)
    hostile = [table["python"] for table in ATTACKS.values() if table is not ESCAPES] + [escape]
    right = "print(int(input()) + 1)\n"
    also_right = "n = int(input())\nprint(n + 1)\n"
    tests = (("1\n", ("2",)), ("41\n", ("42",)))
    start = time.monotonic()
    (item,) = execute_candidates(
        "python", [tests], [[right, *hostile, also_right]], cache=ExecutionCache(), workers=2
    )
    assert item.statuses[0] == item.statuses[-1] == "passed"
    assert (item.n, item.passed) == (len(hostile) + 2, 2)
    by_attack = dict(zip([*ATTACKS], item.statuses[1:-1], strict=True))
    assert by_attack["infinite loop"] == "timeout"
    assert by_attack["memory bomb"] == "memory_limit"
    assert by_attack["huge output"] == "output_limit"
    assert by_attack["sleeping past the timeout"] == "timeout"
    assert by_attack["fork bomb"] in FAILURES
    assert by_attack["secrets, writes and network"] == "wrong_answer"  # it ran, it failed
    assert not (tmp_path / "escaped").exists()
    # The default limits (5 CPU seconds, 10 s wall) bound the whole batch.
    assert time.monotonic() - start < 60
