"""`advfusion data show`: output on fixtures, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

from advfusion_cli.data import load_task

FIXTURES = Path(__file__).parent / "fixtures" / "data"
COMMITS = str(FIXTURES / "commitpackft")


def _count_row(stdout: str, language: str) -> list[str]:
    """The cells of a language's row in the counts table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == language:
            return cells
    raise AssertionError(f"no row for {language} in:\n{stdout}")


def test_show_prints_prompts_targets_and_counts(cli):
    result = cli("data", "show", "--source", COMMITS, "--lang", "ruby", "-n", "2", "--plain")
    assert result.exit_code == 0, result.stderr
    train = load_task("commit-message", COMMITS, "ruby", "train").examples
    for example in train[:2]:
        assert (
            f"=== {example.id} · ruby · train\n--- prompt\n{example.prompt}--- target\n"
            f"{example.target}\n" in result.stdout
        )
    assert train[2].prompt not in result.stdout  # only -n of them
    # 5 repository groups (acme/shop and forker/shop share a commit): 3 train, 1 + 1 held out
    assert _count_row(result.stdout, "ruby") == ["ruby", "6", "1", "1", "repository"]
    assert "records dropped" in result.stdout and _count_row(result.stdout, "none") == ["none", "0"]


def test_show_with_panels_and_another_split(cli):
    result = cli(
        "data",
        "show",
        "--task",
        "code-translation",
        "--source",
        str(FIXTURES / "codetransocean"),
        "--lang",
        "Python",
        "--split",
        "test",
        "-n",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    assert "prompt · LLMTrans:test:0 · python · test · from go" in result.stdout
    assert "### Code written in Go:" in result.stdout
    assert _count_row(result.stdout, "python") == ["python", "1", "0", "2", "dataset"]


def test_show_counts_dropped_records_and_strict_names_file_and_line(cli, tmp_path):
    good = json.loads((FIXTURES / "commitpackft/data/ruby/data.jsonl").read_text().splitlines()[0])
    path = tmp_path / "data" / "ruby" / "data.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "subject": ""}) + "\n")
    result = cli("data", "show", "--source", str(tmp_path), "--lang", "ruby", "-n", "0")
    assert result.exit_code == 0, result.stderr
    assert _count_row(result.stdout, "invalid JSON") == ["invalid JSON", "1"]
    assert _count_row(result.stdout, "empty target") == ["empty target", "1"]
    assert _count_row(result.stdout, "ruby") == ["ruby", "1", "0", "0", "commit"]

    strict = cli("data", "show", "--source", str(tmp_path), "--lang", "ruby", "--strict")
    assert strict.exit_code == 2
    assert strict.stderr.startswith(f"error: {path}:2: malformed record: invalid JSON")
    assert strict.stderr.count("\n") == 1 and strict.stdout == ""


def test_show_errors_are_one_line_with_exit_code_2(cli):
    cases = {
        (
            "--task",
            "commit-mesage",
        ): "error: Unknown task 'commit-mesage'. Did you mean 'commit-message'?",
        (
            "--source",
            COMMITS,
            "--lang",
            "rubi",
        ): "error: Unknown language 'rubi'. Did you mean 'ruby'?",
        ("--source", "/no/such/dir"): "error: Data source '/no/such/dir' does not exist",
        ("--source", COMMITS, "--lang", "go"): "error: No commit-message examples in",
        ("--source", COMMITS, "--split", "tst"): "error: Unknown split 'tst'. Did you mean 'test'?",
        (
            "--task",
            "code-generation",
            "--source",
            str(FIXTURES / "xcodeeval"),
            "--lang",
            "ruby",
            "--split",
            "test",
        ): "error: Split 'test' has no code-generation examples",
    }
    for args, start in cases.items():
        result = cli("data", "show", *args)
        assert result.exit_code == 2, (args, result.stdout)
        assert result.stderr.startswith(start), (args, result.stderr)
        assert result.stderr.count("\n") == 1


def test_help_lists_the_show_command(cli):
    result = cli("data", "--help")
    assert result.exit_code == 0 and "show" in result.stdout


def _save_char_tokenizer(folder: Path) -> Path:
    """One token per byte, no BOS; saved so the CLI loads it through AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.save_pretrained(folder)
    return folder


def test_show_with_a_tokenizer_counts_cut_prompts_and_drops(cli, tmp_path):
    tokenizer = _save_char_tokenizer(tmp_path / "tok")
    train = load_task("commit-message", COMMITS, "ruby", "train").examples
    fixed = len("Based on the change given, only write commit message.\n### Diff:\n") + len(
        "\n### Commit Message:\n"
    )
    # one token per character, no BOS: the diff gets what the template and target leave over
    budget = fixed + 30
    room = [budget - fixed - (len(e.target) + 2) for e in train]
    diffs = [len(e.prompt) - fixed for e in train]
    expected_dropped = sum(1 for r in room if r < 0)
    expected_cut = sum(1 for r, d in zip(room, diffs, strict=True) if 0 <= r < d)
    result = cli(
        "data",
        "show",
        "--source",
        COMMITS,
        "--lang",
        "ruby",
        "-n",
        "0",
        "--tokenizer",
        str(tokenizer),
        "--max-total-tokens",
        str(budget),
    )
    assert result.exit_code == 0, result.stderr
    row = _count_row(result.stdout, "ruby")
    assert row == ["ruby", "6", "1", "1", "repository", str(expected_cut)]
    assert expected_cut > 0 and expected_dropped > 0
    assert _count_row(result.stdout, "no room for target") == [
        "no room for target",
        str(expected_dropped),
    ]
    missing = cli("data", "show", "--source", COMMITS, "--tokenizer", str(tmp_path / "none"))
    assert missing.exit_code == 2 and missing.stderr.startswith("error: Could not load tokenizer")


def test_show_on_a_folder_with_only_a_test_split_shows_that_split(cli, tmp_path):
    held_out = tmp_path / "held-out" / "MultilingualTrans"
    held_out.mkdir(parents=True)
    source = FIXTURES / "codetransocean" / "MultilingualTrans" / "multilingual_test.json"
    (held_out / "multilingual_test.json").write_bytes(source.read_bytes())
    args = ["data", "show", "--task", "code-translation", "--source", str(tmp_path / "held-out")]
    result = cli(*args, "-n", "1", "--plain")
    assert result.exit_code == 0, result.stderr
    test = load_task("code-translation", str(FIXTURES / "codetransocean"), None, "test")
    shown = [e for e in test if e.meta["file"].endswith("multilingual_test.json")][0]
    title = f"{shown.id} · {shown.language} · test · from {shown.source_language}"
    assert f"=== {title}\n--- prompt\n{shown.prompt}" in result.stdout
    # asked for by name, a missing split is still a one-line error
    result = cli(*args, "--split", "train")
    assert result.exit_code == 2 and result.stderr.startswith("error: Split 'train' has no")


def test_show_accepts_a_codetransocean_subset_folder_given_directly(cli):
    subset = FIXTURES / "codetransocean" / "MultilingualTrans"
    args = ["data", "show", "--task", "code-translation", "-n", "1", "--plain"]
    direct = cli(*args, "--source", str(subset))
    assert direct.exit_code == 0, direct.stderr
    root = str(FIXTURES / "codetransocean")
    from_root = load_task("code-translation", root, None, "all", subsets=["MultilingualTrans"])
    first = from_root.split("train")[0]
    title = f"{first.id} · {first.language} · train · from {first.source_language}"
    assert f"=== {title}\n--- prompt\n{first.prompt}" in direct.stdout
    assert load_task("code-translation", str(subset), None, "all").examples == from_root.examples
