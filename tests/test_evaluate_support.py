"""Shared helpers for the evaluate, compare and demo tests: a tiny model that takes 512
positions, a character-level tokenizer, and small datasets in the real layouts (xCodeEval
rows for code generation, CodeTransOcean files for translation). Imported by the other
test modules; its own test checks the tokenizer round trip the others rely on."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import torch

LANGS = {"python": "Python", "ruby": "Ruby", "java": "Java"}
XCODEEVAL_LANG = {
    "python": ("Python 3", "Python"),
    "ruby": ("Ruby 3", "Ruby"),
    "java": ("Java 17", "Java"),
}


def make_tokenizer(folder: Path) -> None:
    """A character-level tokenizer (ids < 128, the tiny model's vocabulary)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {token: i for i, token in enumerate(specials + chars)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.decoder = decoders.Fuse()  # characters join back without spaces
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    ).save_pretrained(folder)


def make_model(folder: Path, seed: int = 0, positions: int = 512, hidden: int = 32) -> Path:
    """A random 2-layer Llama (vocab 128) with `positions` positions, and its tokenizer.

    Compacter needs hidden >= 128 (bottleneck hidden / 32 divisible by its PHM n = 4)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def _function(language: str, name: str, params: list[str], body: str) -> str:
    if language == "python":
        return f"def {name}({', '.join(params)}):\n    return {body}\n"
    if language == "ruby":
        return f"def {name}({', '.join(params)})\n  {body}\nend\n"
    typed = ", ".join(f"int {p}" for p in params)
    return f"public class Main {{\n    static int {name}({typed}) {{\n        return {body};\n    }}\n}}\n"


def _styled(language: str, name: str) -> str:
    """snake_case, or camelCase in Java."""
    if language != "java":
        return name
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def write_translation(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """CodeTransOcean MultilingualTrans files: java/python -> ruby, ruby -> python, python -> java."""
    per_split = per_split or {"train": 12, "valid": 6, "test": 8}
    rnd = random.Random(0)
    folder = root / "MultilingualTrans"
    folder.mkdir(parents=True)
    ident = 0
    for split, count in per_split.items():
        rows = []
        for _ in range(count):
            directions = (
                ("java", "ruby"),
                ("python", "ruby"),
                ("ruby", "python"),
                ("python", "java"),
            )
            for source, target in directions:
                name = rnd.choice(["add_up", "scale", "shift"]) + f"_{ident}"
                params = rnd.sample(["a", "b", "c", "n"], 2)
                body = f"{params[0]} + {params[1]}"
                rows.append(
                    {
                        "id": ident,
                        "name": name,
                        LANGS[source]: _function(source, _styled(source, name), params, body),
                        LANGS[target]: _function(target, _styled(target, name), params, body),
                    }
                )
                ident += 1
        with open(folder / f"multilingual_{split}.json", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return root


def write_generation(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """xCodeEval program-synthesis rows (materialised) with stdin/stdout tests."""
    per_split = per_split or {"train": 10, "validation": 4, "test": 6}
    root.mkdir(parents=True)
    programs = {
        "python": "n = int(input())\nprint(n + {k})\n",
        "ruby": "n = gets.to_i\nputs n + {k}\n",
        "java": "public class Main {{ public static void main(String[] a) {{ "
        "System.out.println(new java.util.Scanner(System.in).nextInt() + {k}); }} }}\n",
    }
    uid = 0
    for split, count in per_split.items():
        with open(root / f"{split}.jsonl", "w") as handle:
            for i in range(count):
                k = i % 5 + 1
                for language, (lang, cluster) in XCODEEVAL_LANG.items():
                    tests = [{"input": f"{x}\n", "output": [str(x + k)]} for x in (1, 7)]
                    row = {
                        "prob_desc_input_from": "standard input",
                        "lang": lang,
                        "src_uid": f"uid{uid:04d}",
                        "difficulty": 800,
                        "prob_desc_sample_inputs": json.dumps(["1"]),
                        "prob_desc_time_limit": "1 second",
                        "tags": ["math"],
                        "prob_desc_output_spec": "Print n plus k.",
                        "prob_desc_input_spec": "One integer n.",
                        "lang_cluster": cluster,
                        "source_code": programs[language].format(k=k),
                        "prob_desc_notes": "",
                        "prob_desc_memory_limit": "256 megabytes",
                        "file_name": f"f{uid}",
                        "code_uid": f"c{uid}",
                        "prob_desc_description": f"Add {k} to n.",
                        "prob_desc_output_to": "standard output",
                        "prob_desc_created_at": "0",
                        "exec_outcome": "PASSED",
                        "prob_desc_sample_outputs": json.dumps([str(1 + k)]),
                        "hidden_unit_tests": json.dumps(tests),
                    }
                    handle.write(json.dumps(row) + "\n")
                    uid += 1
    return root


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


def training_args(model: Path, data: Path, task: str, workdir: Path) -> list[str]:
    args = ["--model", str(model), "--data", str(data), "--task", task, "--workdir", str(workdir)]
    for key, value in TRAIN_SETS.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_tokenizer_round_trips_code(tmp_path):
    from transformers import AutoTokenizer

    make_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    text = "def add(a, b):\n    return a + b\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < 128
    assert tokenizer.decode(ids) == text
