"""Signal names as a spec writes them (`SIGTERM`, `TERM`, `usr1`), checked on this platform."""

from __future__ import annotations

import signal

# Signals a run cannot stop on cleanly: SIGKILL/SIGSTOP cannot be caught, SIGINT is Ctrl-C's.
RESERVED = ("SIGKILL", "SIGSTOP", "SIGINT")


def signal_number(name: str) -> signal.Signals:
    """`SIGTERM`, `TERM` or `term` -> signal.SIGTERM; ValueError naming the signal otherwise."""
    upper = name.strip().upper()
    full = upper if upper.startswith("SIG") else f"SIG{upper}"
    number = getattr(signal.Signals, full, None)
    if number is None or full in RESERVED:
        raise ValueError(f"'{name}' is not a signal a run can stop on")
    return number
