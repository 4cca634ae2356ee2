"""Stopping cleanly: a process-wide request that page and batch loops honour between units.

The daemon (or a command) calls :func:`request` on SIGTERM/SIGINT. Work checks
:func:`check` before starting its next page or batch: what is in flight finishes and commits,
nothing new starts, and the stream is recorded as interrupted. The next start resumes from the
last committed page (MOCO walks) or redoes the scan (MOCA) or sends what is still pending
(MoEngage).
"""

from __future__ import annotations

from syncer.errors import SyncerError

_requested = False


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
