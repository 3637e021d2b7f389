"""Generations written as they are made, so a killed evaluation resumes where it stopped.

`generations.partial.jsonl` in the evaluation folder: a header line naming what is being
generated (the items, decoding, stop rule, model), then one line per finished item. Each
batch is appended with a single write and fsync'd before generation moves on, so after a
kill the file holds whole batches, plus at most one torn line that reading cuts off.
A resumed evaluation with the same header skips the items already there; a different
header (other items, decoding or model) starts the journal over. When the evaluation is
finished, predictions.jsonl and metrics.json are written and the journal is removed.

On several processes each one appends to its own file (`journal_name(rank)`: the main
process to `generations.partial.jsonl`, process r to `generations.partial.rank<r>.jsonl`);
a resume, with any number of processes, reads them all (`read_journals`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from advfusion_cli.inference.generation import Completion
from advfusion_cli.workflows import atomic

JOURNAL_FILE = "generations.partial.jsonl"
JOURNAL_GLOB = "generations.partial*.jsonl"
JOURNAL_VERSION = 1


def journal_name(rank: int) -> str:
    """The journal file process `rank` appends to (the main process's is JOURNAL_FILE)."""
    return JOURNAL_FILE if rank == 0 else f"generations.partial.rank{rank}.jsonl"


def journal_key(identity: dict) -> str:
    """A digest of everything that makes two generations the same."""
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _completion_row(index: int, item_id: str, completion: Completion) -> dict:
    return {
        "index": index,
        "id": item_id,
        "texts": completion.texts,
        "prompt_tokens": completion.prompt_tokens,
        "new_tokens": completion.new_tokens,
        "truncated_prompt": completion.truncated_prompt,
        "dropped": completion.dropped,
    }


def _completion_of(row: dict) -> Completion:
    return Completion(
        texts=list(row["texts"]),
        prompt_tokens=int(row["prompt_tokens"]),
        new_tokens=[int(n) for n in row["new_tokens"]],
        truncated_prompt=bool(row["truncated_prompt"]),
        dropped=row["dropped"],
    )


class GenerationJournal:
    """Appends finished items; `done` maps item index -> Completion read back on open."""

    def __init__(self, path: Path, key: str, item_ids: Sequence[str]) -> None:
        self.path = path
        self.key = key
        self.item_ids = list(item_ids)
        self.done: dict[int, Completion] = {}

    @classmethod
    def open(
        cls, folder: Path, key: str, item_ids: Sequence[str], name: str = JOURNAL_FILE
    ) -> GenerationJournal:
        """Read back a journal with this key (cutting a torn tail), or start a new one."""
        journal = cls(folder / name, key, item_ids)
        if not journal._resume():
            folder.mkdir(parents=True, exist_ok=True)
            header = {"journal": JOURNAL_VERSION, "key": key, "items": len(journal.item_ids)}
            atomic.write_text(journal.path, json.dumps(header) + "\n")
        return journal

    def _resume(self) -> bool:
        try:
            data = self.path.read_bytes()
        except OSError:
            return False
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
        except ValueError:
            return False
        if header != {"journal": JOURNAL_VERSION, "key": self.key, "items": len(self.item_ids)}:
            return False
        good_end = len(lines[0]) + 1
        # lines[-1] follows the last newline: b"" or the torn line of a kill mid-write.
        for raw in lines[1:-1]:
            try:
                row = json.loads(raw)
                index = int(row["index"])
                if not 0 <= index < len(self.item_ids) or row["id"] != self.item_ids[index]:
                    break
                self.done[index] = _completion_of(row)
            except (ValueError, KeyError, TypeError):
                break
            good_end += len(raw) + 1
        if good_end < len(data):
            with self.path.open("r+b") as handle:  # appends continue after the last whole line
                handle.truncate(good_end)
                os.fsync(handle.fileno())
        return True

    def append(self, finished: list[tuple[int, Completion]]) -> None:
        """One batch: a single write, flushed to disk before generation continues."""
        text = "".join(
            json.dumps(_completion_row(i, self.item_ids[i], c), ensure_ascii=False) + "\n"
            for i, c in finished
        )
        with self.path.open("ab") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def read_journals(folder: Path, key: str, item_ids: Sequence[str]) -> dict[int, Completion]:
    """Every item journaled under `key` by any process of any earlier attempt; journals of
    other settings are removed (they would be started over anyway)."""
    done: dict[int, Completion] = {}
    for path in sorted(Path(folder).glob(JOURNAL_GLOB)):
        journal = GenerationJournal(path, key, item_ids)
        if journal._resume():
            done.update(journal.done)
        else:
            path.unlink(missing_ok=True)
    return done


def remove_journals(folder: Path) -> None:
    for path in Path(folder).glob(JOURNAL_GLOB):
        path.unlink(missing_ok=True)
