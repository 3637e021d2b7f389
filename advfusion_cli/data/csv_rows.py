"""Rows of a CSV file (header line first), each with the line its record starts on.

Values stay strings (CSV has no types). A broken quote stops the read with a one-line
UserError naming file, line and column: the rest of the file cannot be trusted to split into
the same records. A row with more or fewer values than the header is a malformed record.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from advfusion_cli.data.records import Diagnostics, RecordError
from advfusion_cli.data.sources import RawRow
from advfusion_cli.errors import UserError

_EXTRA = "\0extra"  # DictReader's key for values beyond the header (never a real column)


def iter_csv_rows(path: Path, diagnostics: Diagnostics) -> Iterator[RawRow]:
    try:
        handle = path.open(encoding="utf-8", newline="")
        with handle:
            reader = csv.DictReader(handle, restkey=_EXTRA, strict=True)
            start = 1
            try:
                header = reader.fieldnames
                if not header:
                    return
                start = reader.line_num + 1
                for data in reader:
                    where = f"{path}:{start}"
                    line, start = start, reader.line_num + 1
                    if _EXTRA in data or None in data.values():
                        count = (
                            len(header)
                            + len(data.get(_EXTRA, ()))
                            - sum(v is None for v in data.values())
                        )
                        diagnostics.malformed(
                            RecordError(
                                "mixed shape: CSV row with a different number of values",
                                f"{count} values, the header has {len(header)}",
                            ),
                            where,
                        )
                        continue
                    yield RawRow(dict(data), path, line)
            except csv.Error as err:
                column = _open_quote_column(path, start, reader.fieldnames or [])
                raise UserError(
                    f"{path}:{start}: broken CSV quoting{column} ({err}); close the quote, "
                    'or write a quote inside a quoted value as ""'
                ) from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _open_quote_column(path: Path, line: int, header: list[str]) -> str:
    """`in column 'x'`: the column whose quoted value the broken record opened last."""
    text = path.read_text(encoding="utf-8")
    record = "".join(text.splitlines(keepends=True)[line - 1 :])
    column, culprit, quoted, at_start, index = 0, None, False, True, 0
    while index < len(record):
        char = record[index]
        index += 1
        if quoted:
            if char == '"' and record[index : index + 1] == '"':
                index += 1  # a doubled quote inside the value
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            culprit = column
            if not at_start:
                break  # a quote inside an unquoted value
            quoted = True
        elif char == ",":
            column += 1
        elif char == "\n":
            break
        at_start = char == ","
    if culprit is None:
        return ""
    name = header[culprit] if culprit < len(header) else f"#{culprit + 1}"
    return f" in column '{name}'"
