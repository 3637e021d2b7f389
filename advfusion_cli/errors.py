"""User-facing errors.

Anything the user can fix (a bad flag, spec key, path, model or data record) raises
`UserError` with a one-line message that names the key, file or value. The CLI prints it
as `error: <message>` and exits with code 2; no traceback unless `--debug` is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Exit codes of the training commands (docs/workflows.md, "Exit codes"); a launcher or a
# scheduler script decides from them whether to run the same command again.
EXIT_USER_ERROR = 2  # bad input: nothing was changed
EXIT_INTERRUPTED = 130  # Ctrl-C: a checkpoint is saved; run the same command to resume
EXIT_REQUEUE = 75  # EX_TEMPFAIL: stopped by a stop signal after a checkpoint; requeue me


class UserError(Exception):
    """An error caused by user input; printed as one line, exit code 2."""

    exit_code = EXIT_USER_ERROR


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_error(kind: str, value: str, choices: Iterable[str]) -> UserError:
    """`Unknown <kind> 'x'. Did you mean 'y'? Available: a, b, c.`"""
    choices = sorted(choices)
    return UserError(
        f"Unknown {kind} '{value}'.{did_you_mean(value, choices)} Available: {', '.join(choices)}."
    )
