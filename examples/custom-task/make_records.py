"""Write the custom-task example's records: problem statement -> program, in five languages.

The problems come from the testbed's generator (advfusion_cli.testbed): one shared program
rendered as a complete stdin/stdout program in python, javascript, java, go and ruby, with
interpreter-computed tests. Ruby is the low-resource language: it gets one train record for
every `--ruby-every` problems, the others one each; validation and test have every language.

    python examples/custom-task/make_records.py examples/custom-task/records
    python examples/custom-task/make_records.py OUT --train 8 --validation 3 --test 3  # CI size

Each record: {"id", "problem", "language", "statement", "code", "tests"}; `tests` is
xCodeEval's form, [{"input": stdin, "output": [accepted stdout, ...]}], for pass@k.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from advfusion_cli.testbed.generator import problem_stream
from advfusion_cli.testbed.problems import Problem
from advfusion_cli.testbed.render import render_program

LANGUAGES = ("python", "javascript", "java", "go", "ruby")
LOW_RESOURCE = "ruby"


def statement(problem: Problem) -> str:
    """The description, input and output, and the first sample: what the docstring says."""
    sample = problem.samples[0]
    return (
        f"{problem.description}\nInput: {problem.input_spec}\nOutput: {problem.output_spec}\n"
        f"Example: input {sample.input.strip()!r} -> output {sample.output!r}"
    )


def records(problem: Problem, languages: tuple[str, ...]) -> list[dict]:
    tests = [{"input": test.input, "output": [test.output]} for test in problem.tests]
    return [
        {
            "id": f"{problem.uid}-{language}",
            "problem": problem.uid,
            "language": language,
            "statement": statement(problem),
            "code": render_program(problem.program, language),
            "tests": tests,
        }
        for language in languages
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write train/validation/test.jsonl to")
    parser.add_argument("--train", type=int, default=160, help="train problems")
    parser.add_argument("--validation", type=int, default=20, help="validation problems")
    parser.add_argument("--test", type=int, default=20, help="test problems")
    parser.add_argument("--ruby-every", type=int, default=8, help="ruby train: 1 in N problems")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    problems = problem_stream(args.seed, "custom-task")
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = []
        for index in range(getattr(args, split)):
            problem = next(problems)
            languages = LANGUAGES
            if split == "train" and index % args.ruby_every:
                languages = tuple(lang for lang in LANGUAGES if lang != LOW_RESOURCE)
            rows += records(problem, languages)
        path = args.out / f"{split}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        print(f"{path}: {len(rows)} records")


if __name__ == "__main__":
    main()
