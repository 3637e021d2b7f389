"""Every generated solution passes its own hidden tests when executed, in every language.

Programs run through one batch runner per language (a single interpreter/JVM/binary that
feeds each program its stdin and captures its stdout, so thousands of runs stay fast), and
a few run as real processes reading real stdin. Languages whose toolchain is missing are
skipped with the reason. The default tier runs a sample; `-m slow` runs every program of the
default-size testbed.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advfusion_cli.testbed import TestbedConfig, generate_testbed
from advfusion_cli.testbed.naming import LANGUAGES

PY_RUNNER = r"""
import io, json, sys
cases = json.load(open(sys.argv[1]))
real = sys.stdout
results = []
for case in cases:
    code = compile(case["source"], "<program>", "exec")
    outs = []
    for text in case["inputs"]:
        sys.stdin, sys.stdout = io.StringIO(text), io.StringIO()
        try:
            exec(code, {"__name__": "__main__"})
            outs.append(sys.stdout.getvalue())
        except BaseException as error:
            outs.append("!!ERROR " + repr(error))
        finally:
            sys.stdin, sys.stdout = sys.__stdin__, real
    results.append(outs)
json.dump(results, real)
"""

JS_RUNNER = r"""
const fs = require("fs");
const vm = require("vm");
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const results = cases.map((item) => item.inputs.map((input) => {
  const out = [];
  const sandbox = {
    require: (name) => {
      if (name !== "fs") throw new Error("unexpected require " + name);
      return { readFileSync: (fd, encoding) => input };
    },
    console: { log: (...args) => out.push(args.map(String).join(" ")) },
    module: { exports: {} },
  };
  try {
    vm.runInNewContext(item.source, sandbox, { timeout: 5000 });
    return out.map((line) => line + "\n").join("");
  } catch (error) {
    return "!!ERROR " + error;
  }
}));
process.stdout.write(JSON.stringify(results));
"""

RUBY_RUNNER = r"""
require "json"
require "stringio"
cases = JSON.parse(File.read(ARGV.shift))  # ARGV must be empty: `gets` reads ARGF
results = cases.map do |item|
  item["inputs"].map do |input|
    out = StringIO.new
    $stdin = StringIO.new(input)
    $stdout = out
    begin
      Object.new.instance_eval(item["source"])
    rescue Exception => e
      out.write("!!ERROR #{e.class}: #{e.message}")
    ensure
      $stdout = STDOUT
      $stdin = STDIN
    end
    out.string
  end
end
STDOUT.write(JSON.generate(results))
"""

JAVA_RUNNER = r"""
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;

public class Runner {
    public static void main(String[] args) throws Exception {
        PrintStream real = System.out;
        List<String> lines = Files.readAllLines(Paths.get(args[0]));
        Base64.Decoder decoder = Base64.getDecoder();
        Base64.Encoder encoder = Base64.getEncoder();
        for (String line : lines) {
            String[] parts = line.split("\t", -1);
            byte[] input = decoder.decode(parts[1]);
            ByteArrayOutputStream buffer = new ByteArrayOutputStream();
            System.setIn(new ByteArrayInputStream(input));
            System.setOut(new PrintStream(buffer, true, "UTF-8"));
            try {
                Class.forName(parts[0] + ".Main").getMethod("main", String[].class).invoke(null, (Object) new String[0]);
            } catch (Throwable error) {
                Throwable cause = error.getCause() != null ? error.getCause() : error;
                buffer.write(("!!ERROR " + cause).getBytes(StandardCharsets.UTF_8));
            }
            System.setOut(real);
            real.println(encoder.encodeToString(buffer.toByteArray()));
        }
    }
}
"""

GO_DISPATCH = r"""
package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strings"
%(imports)s
)

var programs = map[string]func(){
%(entries)s
}

func capture(run func(), input string) (result string) {
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	go func() { inW.WriteString(input); inW.Close() }()
	done := make(chan string)
	go func() { data, _ := io.ReadAll(outR); done <- string(data) }()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = inR, outW
	defer func() {
		if err := recover(); err != nil {
			fmt.Fprint(outW, "!!ERROR ", err)
		}
		os.Stdin, os.Stdout = oldIn, oldOut
		outW.Close()
		inR.Close()
		result = <-done
	}()
	run()
	return ""
}

func main() {
	file, _ := os.Open(os.Args[1])
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		parts := strings.Split(scanner.Text(), "\t")
		input, _ := base64.StdEncoding.DecodeString(parts[1])
		output := capture(programs[parts[0]], string(input))
		fmt.Println(base64.StdEncoding.EncodeToString([]byte(output)))
	}
}
"""


def _json_run(command: list[str], tmp: Path, cases: list[dict], timeout: float) -> list[list[str]]:
    path = tmp / "cases.json"
    path.write_text(json.dumps(cases))
    done = subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=timeout, cwd=tmp
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout)


def run_python(cases, tmp: Path, timeout=600):
    runner = tmp / "runner.py"
    runner.write_text(PY_RUNNER)
    return _json_run([sys.executable, str(runner)], tmp, cases, timeout)


def run_javascript(cases, tmp: Path, timeout=600):
    runner = tmp / "runner.js"
    runner.write_text(JS_RUNNER)
    return _json_run(["node", str(runner)], tmp, cases, timeout)


def run_ruby(cases, tmp: Path, timeout=600):
    runner = tmp / "runner.rb"
    runner.write_text(RUBY_RUNNER)
    return _json_run(["ruby", str(runner)], tmp, cases, timeout)


def _tab_lines(cases) -> tuple[str, list[tuple[int, int]]]:
    lines, index = [], []
    for k, case in enumerate(cases):
        for j, text in enumerate(case["inputs"]):
            lines.append(f"p{k}\t{base64.b64encode(text.encode()).decode()}")
            index.append((k, j))
    return "\n".join(lines) + "\n", index


def _collect(cases, index, stdout: str) -> list[list[str]]:
    results = [[""] * len(c["inputs"]) for c in cases]
    for (k, j), line in zip(index, stdout.splitlines(), strict=True):
        results[k][j] = base64.b64decode(line).decode()
    return results


def run_java(cases, tmp: Path, timeout=600):
    sources = []
    for k, case in enumerate(cases):
        folder = tmp / f"p{k}"
        folder.mkdir()
        (folder / "Main.java").write_text(f"package p{k};\n" + case["source"])
        sources.append(str(folder / "Main.java"))
    (tmp / "Runner.java").write_text(JAVA_RUNNER)
    (tmp / "sources.txt").write_text("\n".join([*sources, str(tmp / "Runner.java")]))
    compiled = subprocess.run(
        ["javac", "-nowarn", "-d", str(tmp / "out"), "@" + str(tmp / "sources.txt")],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if compiled.returncode != 0:
        raise RuntimeError(compiled.stderr[-5000:])
    text, index = _tab_lines(cases)
    (tmp / "cases.tsv").write_text(text)
    done = subprocess.run(
        ["java", "-cp", str(tmp / "out"), "Runner", str(tmp / "cases.tsv")],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return _collect(cases, index, done.stdout)


def go_env(tmp: Path) -> dict[str, str]:
    """`go build` needs a cache folder; CI shells may lack HOME, so give it one."""
    env = dict(os.environ)
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"], env["GOPATH"] = str(tmp / "gocache"), str(tmp / "gopath")
    return env


def run_go(cases, tmp: Path, timeout=600):
    imports, entries = [], []
    for k, case in enumerate(cases):
        folder = tmp / f"p{k}"
        folder.mkdir()
        source = case["source"].replace("package main\n", f"package p{k}\n", 1)
        source = re.sub(r"^func main\(\) \{", "func Main() {", source, flags=re.M)
        (folder / "main.go").write_text(source)
        imports.append(f'\tp{k} "runner/p{k}"')
        entries.append(f'\t"p{k}": p{k}.Main,')
    (tmp / "go.mod").write_text("module runner\n\ngo 1.19\n")
    (tmp / "main.go").write_text(
        GO_DISPATCH % {"imports": "\n".join(imports), "entries": "\n".join(entries)}
    )
    built = subprocess.run(
        ["go", "build", "-o", "dispatch", "."],
        env=go_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp,
    )
    if built.returncode != 0:
        raise RuntimeError(built.stderr[-5000:])
    text, index = _tab_lines(cases)
    (tmp / "cases.tsv").write_text(text)
    done = subprocess.run(
        [str(tmp / "dispatch"), str(tmp / "cases.tsv")],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return _collect(cases, index, done.stdout)


RUNNERS = {
    "python": run_python,
    "javascript": run_javascript,
    "java": run_java,
    "go": run_go,
    "ruby": run_ruby,
}
TOOLS = {"python": None, "javascript": "node", "java": "javac", "go": "go", "ruby": "ruby"}


def require_toolchain(language: str) -> None:
    tool = TOOLS[language]
    if tool is not None and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed here, so {language} programs cannot be executed")


CLUSTER = {
    "python": "Python",
    "javascript": "Javascript",
    "java": "Java",
    "go": "Go",
    "ruby": "Ruby",
}
SMALL = TestbedConfig(
    seed=5, train_per_language=40, validation_per_language=10, test_per_language=10
)
SAMPLE_PER_LANGUAGE = 30


def code_generation_rows(root: Path, language: str) -> list[dict]:
    rows = []
    for split in ("train", "validation", "test"):
        for line in (root / "xcodeeval" / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["lang_cluster"] == CLUSTER[language]:
                rows.append(row)
    return rows


def failures(rows: list[dict], language: str, tmp: Path) -> list[str]:
    """Run every row's program on its hidden tests; describe each mismatch."""
    tests = [json.loads(row["hidden_unit_tests"]) for row in rows]
    cases = [
        {"source": row["source_code"], "inputs": [t["input"] for t in ts]}
        for row, ts in zip(rows, tests, strict=True)
    ]
    outputs = RUNNERS[language](cases, tmp)
    problems = []
    for row, row_tests, row_outputs in zip(rows, tests, outputs, strict=True):
        for test, output in zip(row_tests, row_outputs, strict=True):
            if output.rstrip("\n") not in test["output"]:
                problems.append(
                    f"{row['src_uid']} input {test['input']!r}: expected {test['output']}, got {output[:200]!r}"
                )
    return problems


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exec") / "testbed"
    generate_testbed(SMALL, root)
    return root


@pytest.mark.parametrize("language", LANGUAGES)
def test_sampled_solutions_pass_their_hidden_tests(language, small_root, tmp_path):
    require_toolchain(language)
    rows = code_generation_rows(small_root, language)
    sample = random.Random(0).sample(rows, min(SAMPLE_PER_LANGUAGE, len(rows)))
    assert len(sample) >= 10
    assert failures(sample, language, tmp_path) == []


def _run_real_process(language: str, source: str, stdin: str, folder: Path) -> str:
    """Run one program as its own process on real stdin, the way a judge would."""
    if language == "python":
        (folder / "main.py").write_text(source)
        command = [sys.executable, "main.py"]
    elif language == "javascript":
        (folder / "main.js").write_text(source)
        command = ["node", "main.js"]
    elif language == "ruby":
        (folder / "main.rb").write_text(source)
        command = ["ruby", "main.rb"]
    elif language == "java":
        (folder / "Main.java").write_text(source)
        subprocess.run(
            ["javac", "Main.java"], cwd=folder, check=True, capture_output=True, timeout=120
        )
        command = ["java", "-cp", ".", "Main"]
    else:
        (folder / "main.go").write_text(source)
        (folder / "go.mod").write_text("module solution\n\ngo 1.19\n")
        subprocess.run(
            ["go", "build", "-o", "solution", "."],
            env=go_env(folder),
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=300,
        )
        command = ["./solution"]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=folder, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("language", LANGUAGES)
def test_solutions_read_real_stdin_as_separate_processes(language, small_root, tmp_path):
    require_toolchain(language)
    rows = code_generation_rows(small_root, language)
    # Cover every input kind with two programs: a list plus an integer, and a string.
    spec = "prob_desc_input_spec"
    picked = [next(r for r in rows if "n integers" in r[spec] and "contains an integer" in r[spec])]
    picked += [next(r for r in rows if "a string" in r[spec])]
    for index, row in enumerate(picked):
        folder = tmp_path / f"program{index}"
        folder.mkdir()
        for test in json.loads(row["hidden_unit_tests"])[:2]:
            assert (
                _run_real_process(language, row["source_code"], test["input"], folder).rstrip("\n")
                in test["output"]
            )


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_default_testbed_solution_passes_its_hidden_tests(language, tmp_path_factory):
    require_toolchain(language)
    root = tmp_path_factory.getbasetemp() / "default-testbed"
    if not (root / "testbed.json").exists():
        generate_testbed(TestbedConfig(), root)
    rows = code_generation_rows(root, language)
    config = TestbedConfig()
    assert (
        len(rows)
        == config.train_size(language) + config.validation_per_language + config.test_per_language
    )
    assert failures(rows, language, tmp_path_factory.mktemp(language)) == []
