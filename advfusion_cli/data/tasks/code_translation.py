"""Code translation on CodeTransOcean: code in one language in, the same program in another out.

Prompt from the authors' `ct_processor` (Amirresm/advfusion-cllm,
src/dataset/custom_processors.py): `### Code written in {src}:\\n{code}\\n### Code written in
{tgt}:\\n`. Rows have no source/target fields: language names are keys and key order gives
the direction (CodeTransOcean's run_preprocess.py): MultilingualTrans/NicheTrans take the
3rd key as source and the 4th as target, LLMTrans the 4th as source and the 3rd as target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.data.languages import canonical_language, display_name, normalize_language
from advfusion_cli.data.records import Diagnostics, RecordError, TaskExample
from advfusion_cli.data.sources import RawRow, files_in, iter_rows
from advfusion_cli.data.splits import split_of_name
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec
from advfusion_cli.errors import UserError, unknown_name_error

NAME = "code-translation"
# subset -> (file-name prefix, index of the source key, index of the target key)
SUBSETS: dict[str, tuple[str, int, int]] = {
    "MultilingualTrans": ("multilingual", 2, 3),
    "NicheTrans": ("niche", 2, 3),
    "LLMTrans": ("LLMTrans", 3, 2),
}
_SPLIT_FILE = {"train": "train", "validation": "valid", "test": "test"}
_HUB_FOLDER = "CodeTrans Datasets"


@dataclass(frozen=True)
class CodeTranslationOptions:
    subsets: tuple[str, ...] = ("MultilingualTrans", "NicheTrans", "LLMTrans")
    # keep only these source languages (any spelling); None keeps all
    source_languages: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        subsets = (self.subsets,) if isinstance(self.subsets, str) else tuple(self.subsets)
        for subset in subsets:
            if subset not in SUBSETS:
                raise unknown_name_error("CodeTransOcean subset", subset, SUBSETS)
        object.__setattr__(self, "subsets", subsets)
        if self.source_languages is not None:
            names = self.source_languages
            names = (names,) if isinstance(names, str) else names
            object.__setattr__(
                self, "source_languages", tuple(canonical_language(n) for n in names)
            )


def render_prompt(
    source_language: str, code: str, target_language: str
) -> tuple[str, tuple[int, int]]:
    """The authors' translation prompt, and the source code's character span."""
    head = f"### Code written in {display_name(source_language)}:\n"
    tail = f"\n### Code written in {display_name(target_language)}:\n"
    return head + code + tail, (len(head), len(head) + len(code))


def hub_patterns(request: LoadRequest, options: CodeTranslationOptions) -> list[str]:
    patterns = []
    for subset in options.subsets:
        prefix = SUBSETS[subset][0]
        if subset == "LLMTrans":
            if "test" in request.splits:
                patterns.append(f"*{subset}/{prefix}.json")
            continue
        patterns += [f"*{subset}/{prefix}_{_SPLIT_FILE[s]}.json" for s in request.splits]
    return patterns


def _subset_of_file(path: Path) -> str:
    name = path.stem.lower()
    for subset, (prefix, _, _) in SUBSETS.items():
        if name.startswith(prefix.lower()):
            return subset
    return "MultilingualTrans"  # a file of unknown origin: the common 3rd -> 4th key order


def _split_of_file(path: Path, subset: str) -> str | None:
    return "test" if subset == "LLMTrans" else split_of_name(path.stem)


def _files(root: Path, options: CodeTranslationOptions) -> list[tuple[str, Path]]:
    """(subset, file) pairs to read, for a single file or the (hub or bare) folder layout."""
    if root.is_file():
        return [(_subset_of_file(root), root)]
    base = root / _HUB_FOLDER if (root / _HUB_FOLDER).is_dir() else root
    found = []
    for subset in options.subsets:
        prefix = SUBSETS[subset][0].lower()
        folder = base / subset
        if not folder.is_dir():
            folder = base  # a subset's own folder given directly (.../MultilingualTrans)
        for path in files_in(folder):
            if path.stem.lower().startswith(prefix):
                found.append((subset, path))
    return found


def _parse(row: RawRow, subset: str) -> tuple[str, str, str, str]:
    """(source language, source code, target language, target code) from key order."""
    keys = list(row.data)
    _, source_at, target_at = SUBSETS[subset]
    if len(keys) < 4:
        raise RecordError("fewer than 4 keys (no language pair)")
    pair = []
    for at in (source_at, target_at):
        key = keys[at]
        language = normalize_language(key)
        if language is None:
            raise RecordError(f"unknown language '{key}'")
        code = row.data[key]
        if not isinstance(code, str):
            raise RecordError(f"wrong type for field '{key}'", f"{type(code).__name__}, not str")
        pair += [language, code]
    if not pair[1].strip():
        raise RecordError("empty source")
    if not pair[3].strip():
        raise RecordError("empty target")
    return pair[0], pair[1], pair[2], pair[3]


def read(
    root: Path,
    request: LoadRequest,
    options: CodeTranslationOptions,
    diagnostics: Diagnostics,
    stats: DataStats,
) -> list[TaskExample]:
    examples: list[TaskExample] = []
    for subset, path in _files(root, options):
        if path.suffix == ".parquet":
            raise UserError(
                f"{path}: CodeTransOcean must be read from its JSON files: the direction is the "
                "key order of each row, which a parquet table does not keep."
            )
        split = _split_of_file(path, subset) or "train"
        if split not in request.splits:
            continue
        for row in iter_rows(path, diagnostics):
            try:
                source, code, target, reference = _parse(row, subset)
            except RecordError as err:
                diagnostics.malformed(err, row.where)
                continue
            if not request.wants(target):
                continue
            if options.source_languages is not None and source not in options.source_languages:
                continue
            prompt, span = render_prompt(source, code, target)
            output = row.data.get("output")
            examples.append(
                TaskExample(
                    id=f"{subset}:{split}:{row.data.get('id', row.line)}",
                    task=NAME,
                    language=target,
                    source_language=source,
                    prompt=prompt,
                    target=reference,
                    # LLMTrans rows carry the program's expected stdout (empty stdin)
                    tests=(("", (output,)),) if isinstance(output, str) else (),
                    meta={
                        "split": split,
                        "inner_span": span,
                        "subset": subset,
                        "name": row.data.get("name", ""),
                        "file": str(row.file),
                        "line": row.line,
                    },
                )
            )
    for language in {e.language for e in examples}:
        stats.split_method[language] = "dataset"
    return examples


SPEC = TaskSpec(
    name=NAME,
    summary="CodeTransOcean: code in one language -> the same program in another",
    hub_id="WeixiangYan/CodeTransOcean",
    options=CodeTranslationOptions,
    hub_patterns=hub_patterns,
    read=read,
)
