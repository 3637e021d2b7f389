"""Regenerate the testbed: `python -m advfusion_cli.testbed [--seed N] [--out DIR]`.

Without `--out` it fills the cache that `ensure_testbed` reads; prints counts and time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import MANIFEST, TestbedConfig, default_cache_dir, generate_testbed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m advfusion_cli.testbed", description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train",
        type=int,
        default=TestbedConfig.train_per_language,
        help="train records per language",
    )
    parser.add_argument("--validation", type=int, default=TestbedConfig.validation_per_language)
    parser.add_argument("--test", type=int, default=TestbedConfig.test_per_language)
    parser.add_argument(
        "--target", default=TestbedConfig.target_language, help="low-resource language"
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: the cache folder for this config)"
    )
    args = parser.parse_args(argv)
    config = TestbedConfig(
        seed=args.seed,
        target_language=args.target,
        train_per_language=args.train,
        validation_per_language=args.validation,
        test_per_language=args.test,
    )
    out = args.out or default_cache_dir() / config.cache_key()
    if (out / MANIFEST).exists():
        print(f"{out} already holds this testbed ({MANIFEST} present); remove it to regenerate.")
        return
    start = time.perf_counter()
    manifest = generate_testbed(config, out)
    seconds = time.perf_counter() - start
    print(f"wrote {out} in {seconds:.1f} s")
    for task in ("commit-message", "code-generation", "code-translation"):
        total = sum(manifest[task].values())
        print(f"  {task}: {total} records")


if __name__ == "__main__":
    main()
