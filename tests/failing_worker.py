"""`python tests/failing_worker.py <advfusion args>`: the CLI, with process 1 failing while it
writes its part of the first step checkpoint (test_preemption_processes)."""

from __future__ import annotations

import os

from advfusion_cli.workflows import checkpoint


def _failing_write_rng(tmp_dir, rank: int) -> None:
    if rank == 1 and tmp_dir.name.startswith(".step-"):
        raise OSError(28, "disk full (injected)")
    _write_rng(tmp_dir, rank)


_write_rng = checkpoint.write_rng
checkpoint.write_rng = _failing_write_rng

if __name__ == "__main__":
    assert os.environ.get("WORLD_SIZE") == "2"
    from advfusion_cli.cli.app import main

    main()
