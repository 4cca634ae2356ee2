"""Stopping cleanly: a process-wide request that page and batch loops honour between units.

The daemon (or a command) calls :func:`request` on SIGTERM/SIGINT. Work checks
:func:`check` before starting its next page or batch: what is in flight finishes and commits,
nothing new starts, and the stream is recorded as interrupted. The next start resumes from the
last committed page (MOCO walks) or redoes the scan (MOCA) or sends what is still pending
(MoEngage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Coroutine
from typing import Any

from syncer.errors import EXIT_FAILED, EXIT_OK, SyncerError

log = logging.getLogger("syncer")

# Exit codes of a one-off command stopped by a signal: 128 + the signal's number, as shells do.
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

_requested = False
_stopped_by: list[signal.Signals] = []  # the signal that asked this process to stop


class Interrupted(SyncerError):
    """Stopped by a signal; the work committed so far is kept and the next run resumes."""


def request() -> None:
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def reset() -> None:
    """For tests and for a daemon that starts anew in the same process."""
    global _requested
    _requested = False


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested (call it between units of work)."""
    if _requested:
        raise Interrupted()


# --- a process's signals ----------------------------------------------------------------------


def stopped_by() -> str | None:
    """The name of the signal that asked this process to stop, if one did."""
    return _stopped_by[0].name if _stopped_by else None


async def stopping_on_signal(work: Coroutine[Any, Any, int]) -> int:
    """Run a one-off command; SIGTERM or SIGINT asks it to stop as the daemon's jobs stop: the
    page or body in flight finishes and commits, nothing new starts, and the run is recorded
    as interrupted. A second signal exits at once (every page is its own transaction)."""
    reset()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if _stopped_by:
            print(f"error: second {sig.name}: exiting at once", file=sys.stderr, flush=True)
            os._exit(128 + sig)
        _stopped_by.append(sig)
        log.info("%s received: finishing the page in flight, starting nothing new", sig.name)
        request()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await work
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def exit_code(outcome: str) -> int:
    """0 succeeded; 143 (SIGTERM) or 130 (SIGINT) interrupted by a signal; else 1."""
    if outcome == "succeeded":
        return EXIT_OK
    if outcome == "interrupted" and requested():
        return 128 + (_stopped_by[0] if _stopped_by else signal.SIGINT)
    return EXIT_FAILED


async def until_signalled(work: Awaitable[Any]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
