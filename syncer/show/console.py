"""What every command's output shares: the console, times and ages, the JSON document.

Every ``--json`` document is one line on stdout with ``command``, ``outcome``, ``exit_code``,
``errors``, ``warnings`` and ``elapsed_s`` (docs/operations.md, "JSON output").
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from syncer.errors import EXIT_USAGE

if TYPE_CHECKING:
    from syncer.http.client import RequestStats


def console() -> Any:
    """A console that never cuts names when the output is piped (rich assumes 80 columns)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)


def when(value: datetime | None) -> str:
    """A moment in UTC to the second, or "-"."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def age_text(seconds: float | None, missing: str) -> str:
    """An age as "5m ago", or ``missing`` when there is no such moment."""
    from syncer.durations import format_age

    return missing if seconds is None else f"{format_age(seconds)} ago"


def print_json(document: dict[str, Any] | list[Any]) -> None:
    """The document as one line on stdout."""
    sys.stdout.write(orjson.dumps(document).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def requests_json(http: RequestStats) -> dict[str, Any]:
    """The HTTP counts of a run, as its document carries them."""
    return {
        "requests": http.requests,
        "retries": http.retries,
        "rate_limited": http.rate_limited,
        "waited_s": round(http.waited_s, 3),
    }


def error_json(command: str, code: int, message: str, elapsed_s: float) -> dict[str, Any]:
    """The document of a command that stopped before its run (usage, configuration, database)."""
    return {
        "command": command,
        "outcome": "usage_error" if code == EXIT_USAGE else "failed",
        "exit_code": code,
        "errors": [message],
        "warnings": [],
        "elapsed_s": round(elapsed_s, 3),
    }
