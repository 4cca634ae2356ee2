"""How a command that did not succeed says so on stderr (and, with ``--json``, on stdout)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from syncer import shutdown
from syncer.errors import EXIT_OK
from syncer.show.console import error_json, print_json


def report(code: int, errors: Sequence[str]) -> int:
    """Say on stderr why the run did not succeed: one line for a signal, else its errors."""
    if code in (shutdown.EXIT_SIGINT, shutdown.EXIT_SIGTERM):
        name = shutdown.stopped_by() or "a signal"
        print(
            f"error: stopped by {name}; the run is recorded as interrupted, what it committed "
            "is kept, and the next run resumes from there",
            file=sys.stderr,
        )
    elif code != EXIT_OK:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
    return code


def error_document(command: str, code: int, message: str, started: float) -> None:
    """A command that stopped before its run still prints one JSON document (``--json``)."""
    print_json(error_json(command, code, message, time.monotonic() - started))
