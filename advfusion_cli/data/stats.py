"""What a load (and an encoding pass) kept, dropped and cut, per language and split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from advfusion_cli.data.splits import SPLITS


@dataclass
class DataStats:
    task: str
    source: str
    # (language, split) -> examples kept (all splits read, not only the requested one)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> records
    # language -> examples whose prompt was cut to fit the token budget (encoding)
    truncated: Counter[str] = field(default_factory=Counter)
    # language -> how the splits were made: "dataset", "repository" or "commit" (fallback)
    split_method: dict[str, str] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for lang, _ in self.counts})

    def splits_present(self) -> list[str]:
        present = {split for _, split in self.counts}
        return [s for s in SPLITS if s in present]

    def total(self, split: str | None = None, language: str | None = None) -> int:
        return sum(
            n
            for (lang, s), n in self.counts.items()
            if (split is None or s == split) and (language is None or lang == language)
        )

    def to_dict(self) -> dict:
        """Plain JSON-able summary, for run directories and reports."""
        return {
            "task": self.task,
            "source": self.source,
            "counts": {
                lang: {s: self.counts[(lang, s)] for s in SPLITS if (lang, s) in self.counts}
                for lang in self.languages
            },
            "dropped": dict(sorted(self.dropped.items())),
            "truncated": dict(sorted(self.truncated.items())),
            "split_method": dict(sorted(self.split_method.items())),
        }


def stats_tables(stats: DataStats):
    """Rich tables: counts per language x split (with the split method), and drops by reason."""
    from rich.table import Table

    splits = list(SPLITS)
    counts = Table(title=f"{stats.task} examples from {stats.source}")
    counts.add_column("language")
    for split in splits:
        counts.add_column(split, justify="right")
    counts.add_column("split by")
    if stats.truncated:
        counts.add_column("truncated", justify="right")
    for lang in stats.languages:
        row = [lang, *(str(stats.counts.get((lang, s), 0)) for s in splits)]
        row.append(stats.split_method.get(lang, ""))
        if stats.truncated:
            row.append(str(stats.truncated.get(lang, 0)))
        counts.add_row(*row)
    counts.add_row("total", *(str(stats.total(split=s)) for s in splits), "", style="bold")

    dropped = Table(title="records dropped")
    dropped.add_column("reason")
    dropped.add_column("records", justify="right")
    for reason, n in sorted(stats.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
        dropped.add_row(reason, str(n))
    if not stats.dropped:
        dropped.add_row("none", "0")
    return counts, dropped
