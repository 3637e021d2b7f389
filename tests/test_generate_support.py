"""Helpers for the generate tests: a tiny random Llama with a character-level tokenizer (one
token per character, so token budgets read as character counts), small datasets of the three
tasks in their real layouts, and finished runs trained through the real CLI."""

from __future__ import annotations

import json
import random
import string
import subprocess
from pathlib import Path

import torch

LANGS = {"python": "Python", "java": "Java", "ruby": "Ruby"}
TRAIN_SETS = {
    "training.max_steps": 2,
    "training.batch_size": 2,
    "training.eval_every_steps": 2,
    "training.save_every_steps": 2,
    "data.max_train_records": 4,
    "data.max_eval_records": 2,
    "data.max_total_tokens": 400,
    "data.max_prompt_tokens": 300,
    "data.max_target_tokens": 100,
}
PROMPT_BUDGET = TRAIN_SETS["data.max_prompt_tokens"]


def make_model(folder: Path, positions: int = 512) -> Path:
    """A random 2-layer Llama (hidden 32, vocab 128) saved with a character-level tokenizer."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    ).save_pretrained(folder)
    return folder


def commit_row(lang: str, i: int) -> dict:
    name = random.Random(i).choice(["count", "total", "size"]) + str(i)
    return {
        "commit": f"{lang}{i:04d}",
        "old_file": f"lib/a{i}.{lang[:2]}",
        "new_file": f"lib/a{i}.{lang[:2]}",
        "old_contents": f"x = {i}\ny = {name}\nz = 1\n",
        "new_contents": f"x = {i + 1}\ny = {name}\nz = 1\n",
        "subject": f"Bump x in {name}",
        "message": f"Bump x in {name}\n",
        "lang": LANGS[lang],
        "license": "mit",
        "repos": f"org/{lang}-repo{i}",
    }


def write_commits(root: Path, per_language: int = 12) -> Path:
    """CommitPackFT layout: data/<config>/data.jsonl with its ten fields."""
    for lang in LANGS:
        folder = root / "data" / lang
        folder.mkdir(parents=True)
        rows = [json.dumps(commit_row(lang, i)) for i in range(per_language)]
        (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    return root


def function_in(language: str, name: str) -> str:
    if language == "python":
        return f"def {name}(a, b):\n    return a + b\n"
    if language == "ruby":
        return f"def {name}(a, b)\n  a + b\nend\n"
    return f"public class Main {{\n    static int {name}(int a, int b) {{\n        return a + b;\n    }}\n}}\n"


def write_translation(root: Path, per_split: int = 6) -> Path:
    """CodeTransOcean MultilingualTrans files: {java, python} -> ruby, ruby -> python,
    python -> java (every language is a target, so each can have an adapter)."""
    folder = root / "MultilingualTrans"
    folder.mkdir(parents=True)
    ident = 0
    for split in ("train", "valid", "test"):
        rows = []
        for _ in range(per_split):
            directions = (
                ("java", "ruby"),
                ("python", "ruby"),
                ("ruby", "python"),
                ("python", "java"),
            )
            for source, target in directions:
                name = f"add_{ident}"
                rows.append(
                    {
                        "id": ident,
                        "name": name,
                        LANGS[source]: function_in(source, name),
                        LANGS[target]: function_in(target, name),
                    }
                )
                ident += 1
        text = "".join(json.dumps(row) + "\n" for row in rows)
        (folder / f"multilingual_{split}.json").write_text(text)
    return root


def write_generation(root: Path, per_split: int = 6) -> Path:
    """xCodeEval program-synthesis rows (the 21 materialised fields), ruby solutions."""
    root.mkdir(parents=True)
    uid = 0
    for split in ("train", "validation", "test"):
        lines = []
        for i in range(per_split):
            k = i % 4 + 1
            row = {
                "prob_desc_input_from": "standard input",
                "lang": "Ruby 3",
                "src_uid": f"uid{uid:04d}",
                "difficulty": 800,
                "prob_desc_sample_inputs": json.dumps(["1"]),
                "prob_desc_time_limit": "1 second",
                "tags": ["math"],
                "prob_desc_output_spec": "Print n plus k.",
                "prob_desc_input_spec": "One integer n.",
                "lang_cluster": "Ruby",
                "source_code": f"n = gets.to_i\nputs n + {k}\n",
                "prob_desc_notes": "",
                "prob_desc_memory_limit": "256 megabytes",
                "file_name": f"f{uid}",
                "code_uid": f"c{uid}",
                "prob_desc_description": f"Add {k} to n.",
                "prob_desc_output_to": "standard output",
                "prob_desc_created_at": "0",
                "exec_outcome": "PASSED",
                "prob_desc_sample_outputs": json.dumps([str(1 + k)]),
                "hidden_unit_tests": json.dumps([{"input": "1\n", "output": [str(1 + k)]}]),
            }
            lines.append(json.dumps(row) + "\n")
            uid += 1
        (root / f"{split}.jsonl").write_text("".join(lines))
    return root


def training_args(model: Path, data: Path, task: str, workdir: Path) -> list[str]:
    args = ["--model", str(model), "--data", str(data), "--task", task, "--workdir", str(workdir)]
    for key, value in TRAIN_SETS.items():
        args += ["--set", f"{key}={value}"]
    return args


def git_diff(repo: Path, files: dict[str, tuple[str | None, str | None]], *extra: str) -> str:
    """`git diff --cached` of a fresh repository where each file goes from old to new text
    (None = absent): the old side is committed first, the new side staged."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        done = subprocess.run([*command, *args], capture_output=True, text=True, check=True)
        return done.stdout

    repo.mkdir(parents=True)
    git("init", "-q")
    for name, (old, _) in files.items():
        if old is not None:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(old)
    git("add", "-A")
    git("commit", "-q", "--allow-empty", "-m", "old")
    for name, (_, new) in files.items():
        if new is None:
            (repo / name).unlink()
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(new)
    git("add", "-A")
    return git("diff", "--cached", "--no-color", *extra)
