"""Sandbox escapes in every executable language, not only Python (tests/test_eval_sandbox.py
covers the Python escapes and the memory/output bombs per language): one program per
language prints its whole environment, writes outside its run directory and connects to a
port on the host's loopback; none of that may reach the host. Sleeping past the timeout is
cut off in each language too."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from advfusion_cli.evaluation import sandbox
from advfusion_cli.evaluation.sandbox import Limits, run_program

EXECUTABLE = sandbox.executable_languages()
INFO = sandbox.sandbox_info()

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
    "c": C_ESCAPE,
    "cpp": C_ESCAPE,
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
}
SLEEPERS = {
    "c": "#include <unistd.h>\nint main(void) { sleep(60); return 0; }\n",
    "javascript": "setTimeout(() => {}, 60000);\n",
    "ruby": "sleep 60\n",
}


def per_language(table: dict[str, str]) -> list:
    return [
        pytest.param(
            language,
            marks=pytest.mark.skipif(not EXECUTABLE[language], reason=f"no {language} toolchain"),
        )
        for language in table
    ]


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
    source = ESCAPES[language].format(
        paths=", ".join(json.dumps(t) for t in targets), port=server.getsockname()[1]
    )
    try:
        result = run_program(language, source, "", Limits(wall_seconds=20, cpu_seconds=10))
    finally:
        server.close()
        leaked = [t for t in targets if os.path.exists(t)]
        for path in leaked:
            os.remove(path)
    assert result.status == "ok", result
    assert "HOME=" in result.stdout or "PATH=" in result.stdout  # the environment was printed
    assert secret not in result.stdout + result.stderr
    assert "ADVFUSION_FAKE_TOKEN" not in result.stdout
    assert "connected" not in result.stdout.splitlines()
    assert leaked == [], f"{language} program wrote {leaked} on the host"


@pytest.mark.parametrize("language", per_language(SLEEPERS))
def test_sleeping_past_the_timeout_in_each_language(language):
    result = run_program(language, SLEEPERS[language], "", Limits(wall_seconds=1))
    assert result.status == "timeout", result
    assert result.wall_time < 4.0
