"""One process of a torchrun launch for tests/test_evaluate_processes.py.

    python -m torch.distributed.run --standalone --nproc_per_node 2 eval_processes_worker.py \
        MODE COMMANDS.json

runs each `advfusion` command line of COMMANDS.json in turn (a JSON list of argument lists),
through the real entry point, in this process. Every batch a process journals is also
logged to `generated-rank<r>.jsonl` beside COMMANDS.json (which process generated what).
MODE `kill`: process 1 kills itself (SIGKILL, nothing cleaned up) right after the first
batch of its share reached its journal.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def _log_batches(log: Path, die: bool) -> None:
    from advfusion_cli.evaluate.journal import GenerationJournal

    real_append = GenerationJournal.append

    def append_and_log(self, finished):
        real_append(self, finished)
        entry = {"folder": str(self.path.parent), "ids": [self.item_ids[i] for i, _ in finished]}
        with log.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        if die:
            os.kill(os.getpid(), signal.SIGKILL)

    GenerationJournal.append = append_and_log


def main() -> None:
    from advfusion_cli.cli.app import main as advfusion

    mode, script = sys.argv[1], Path(sys.argv[2])
    commands = json.loads(script.read_text())
    rank = os.environ.get("RANK", "0")
    _log_batches(script.parent / f"generated-rank{rank}.jsonl", mode == "kill" and rank == "1")
    for args in commands:
        try:
            advfusion(args)
        except SystemExit as done:
            if done.code not in (0, None):
                raise


if __name__ == "__main__":
    main()
