"""pass@k plumbing: candidates run in the sandbox (a process pool), identical programs run
once, empty candidates fail without running, and per-item (n, c) gives the pass@k that the
estimator defines (values worked out by hand below)."""

from __future__ import annotations

import pytest

from advfusion_cli.evaluate.execution import EMPTY, ExecutionCache, execute_candidates
from advfusion_cli.evaluate.workflow import EvalRequest, _pass_at_k
from advfusion_cli.inference.generation import Completion, DecodingSettings
from advfusion_cli.sandbox.programs import executable_languages

pytestmark = pytest.mark.skipif(
    not executable_languages()["python"], reason="the sandbox cannot run python here"
)

TESTS = (("1\n", ("2",)), ("7\n", ("8",)))
RIGHT = "print(int(input()) + 1)\n"
WRONG = "print(int(input()) + 2)\n"
CRASH = "raise SystemExit(3)\n"


def test_statuses_cache_and_empty_candidates():
    cache = ExecutionCache()
    seen: list[tuple[int, int]] = []
    results = execute_candidates(
        "python",
        [TESTS, TESTS, ()],
        [[RIGHT, WRONG, RIGHT, ""], [CRASH, RIGHT], ["print(1)"]],
        cache=cache,
        workers=2,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    first, second, untested = results
    assert first.statuses == ["passed", "wrong_answer", "passed", EMPTY]
    assert (first.n, first.passed) == (4, 2)
    assert second.statuses == ["runtime_error", "passed"] and second.passed == 1
    assert untested is None
    assert cache.runs == 3  # RIGHT, WRONG, CRASH once each: duplicates and "" never run
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    again = execute_candidates("python", [TESTS], [[RIGHT, WRONG]], cache=cache, workers=1)
    assert again[0].passed == 1 and cache.runs == 3 and cache.hits >= 2


def test_pass_at_k_from_executed_samples():
    from advfusion_cli.evaluate.overlap import SandboxFeed
    from advfusion_cli.evaluate.workflow import _add_pass_at_k, _execution_plan

    class Item:
        def __init__(self, tests):
            self.tests = tests

    # 2 problems with n = 5 samples: c = 2 and c = 0, plus one problem without tests.
    items = [Item(TESTS), Item(TESTS), Item(())]
    completions = [
        Completion([RIGHT, RIGHT, WRONG, WRONG, CRASH]),
        Completion([WRONG] * 5),
        Completion(["x"] * 5),
    ]
    request = EvalRequest(decoding=DecodingSettings(n=5), workers=1)
    scores: dict = {}
    per_item: dict = {}
    plan, with_tests = _execution_plan("python", items, request)
    assert with_tests == [0, 1] and "reason" not in plan
    executed = []
    feed = SandboxFeed(
        "python", {i: items[i].tests for i in with_tests}, workers=1, on_executed=executed.append
    )
    for index, completion in enumerate(completions):  # as batches finish, in any order
        feed.submit(index, completion.texts)
    results = feed.results()
    assert sorted(results) == [0, 1] and sum(executed) == 3  # RIGHT, WRONG, CRASH once each
    ks = _add_pass_at_k(items, with_tests, results, scores, per_item)
    summary = _pass_at_k(plan, with_tests, results, request, ks)
    # pass@1 = c/n: (2/5 + 0) / 2 = 0.2; pass@5 = 1 - C(3,5)/C(5,5) = 1 for c = 2, 0 for c = 0.
    assert scores["pass@1"] == pytest.approx(0.2)
    assert scores["pass@5"] == pytest.approx(0.5)
    assert "pass@10" not in scores  # k > n is left out
    assert per_item["pass@1"] == [pytest.approx(0.4), 0.0, None]
    assert summary["ran"] and summary["ks"] == [1, 5] and summary["items_with_tests"] == 2
    assert summary["statuses"] == {"passed": 2, "wrong_answer": 7, "runtime_error": 1}


def test_the_feed_gives_what_execute_candidates_gives():
    """Overlapped execution (a feed) and execution after generation agree item by item."""
    from advfusion_cli.evaluate.overlap import SandboxFeed

    candidates = [[RIGHT, WRONG, ""], [CRASH, RIGHT, RIGHT]]
    after = execute_candidates("python", [TESTS, TESTS], candidates, workers=2)
    cache = ExecutionCache(results={})
    feed = SandboxFeed("python", {0: TESTS, 1: TESTS}, workers=2, cache=cache)
    feed.submit(1, candidates[1])
    feed.submit(0, candidates[0])
    overlapped = feed.results()
    assert [overlapped[0].to_dict(), overlapped[1].to_dict()] == [r.to_dict() for r in after]
    assert cache.runs == 3 and cache.hits == 0
    again = SandboxFeed("python", {0: TESTS}, workers=2, cache=cache)
    again.submit(0, [RIGHT, WRONG])
    assert again.results()[0].passed == 1 and cache.runs == 3 and cache.hits == 2  # no new run


def test_not_executable_language_is_reported_not_scored(monkeypatch):
    from advfusion_cli.evaluate.workflow import _execution_plan

    summary, with_tests = _execution_plan("cobol", [], EvalRequest())
    assert summary["ran"] is False and "not executable" in summary["reason"]
    assert with_tests == []
    # A missing toolchain the sandbox knows: the reason (the demo's note) names the command.
    from advfusion_cli.sandbox import programs, toolchain_setup

    monkeypatch.setattr(programs, "executable_languages", lambda: {"ruby": False})
    monkeypatch.setattr(toolchain_setup, "_which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(toolchain_setup, "_is_root", lambda: False)
    summary, _ = _execution_plan("ruby", [], EvalRequest())
    assert summary["reason"] == (
        "ruby is not executable on this machine (toolchain missing; install it with: "
        "sudo apt-get install -y ruby, then run again)"
    )


def test_an_evaluation_is_reused_unless_it_skipped_wanted_execution(monkeypatch):
    from advfusion_cli.evaluate.workflow import FORMAT_VERSION, _reusable
    from advfusion_cli.sandbox import programs

    record = {"format_version": FORMAT_VERSION, "task": "code-generation"}
    skipped = {**record, "execution": {"ran": False, "reason": "--no-execute"}}
    missing = {**record, "execution": {"ran": False, "reason": "ruby is not executable here"}}
    assert not _reusable(skipped, EvalRequest())
    assert _reusable(skipped, EvalRequest(execute=False))
    assert _reusable(missing, EvalRequest())  # would come out the same again
    # Made before ruby was installed (the demo rerun after `apt-get install ruby`): redone.
    before = {"ran": False, "language": "ruby", "executable_languages": {"ruby": False}}
    monkeypatch.setattr(programs, "executable_languages", lambda: {"ruby": True})
    assert not _reusable({**record, "execution": before}, EvalRequest())
    monkeypatch.setattr(programs, "executable_languages", lambda: {"ruby": False})
    assert _reusable({**record, "execution": before}, EvalRequest())
    assert not _reusable({**missing, "format_version": FORMAT_VERSION + 1}, EvalRequest())
    assert not _reusable(None, EvalRequest())


def test_the_multipl_e_feed_runs_each_distinct_program_once_and_skips_known_ones():
    from advfusion_cli.evaluate.multiple_execution import _run_one, program_key
    from advfusion_cli.evaluate.overlap import ProgramFeed

    tests = "\nassert f() == 1\n"
    programs = {0: ["def f():\n    return 1\n", "def f():\n    return 2\n"], 1: ["x = (\n"]}
    known_program = "def f():\n    return 1\n" + tests
    known = {program_key("py", known_program): {"status": "OK", "exit_code": 0, "known": True}}
    ran = []
    feed = ProgramFeed(
        "py",
        lambda index, candidates: [c + tests for c in candidates],
        known=known,
        workers=2,
        on_executed=ran.append,
    )
    feed.submit(0, programs[0])
    feed.submit(1, programs[1] * 2)  # the same program twice: one run
    results = feed.results()
    assert sum(ran) == 2 and sorted(results) == [0, 1]  # the known program did not run again
    wrong = programs[0][1] + tests
    (key, verdict), alone = *results[0].items(), _run_one("py", wrong)
    assert key == program_key("py", wrong)  # only the program not known before
    assert (verdict["status"], verdict["exit_code"]) == (alone["status"], alone["exit_code"])
    (syntax,) = results[1].values()
    assert syntax["status"] != "OK"
