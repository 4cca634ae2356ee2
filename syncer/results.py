"""What runs report: the one outcome enum, a sync's results per stream, and what a stream's
reader is given.

Every run (sync, sweep, backfill, load, a daemon's job) ends in one :class:`Outcome`, which is
also what ``syncer.runs.outcome`` holds. ``Outcome`` is a ``str`` enum: it compares equal to
its value, so JSON documents and the database carry the plain word.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from syncer.http.client import RequestStats

if TYPE_CHECKING:
    from syncer.http.client import ApiClient
    from syncer.store.types import Pool

__all__ = [
    "LoadOutcome",
    "Outcome",
    "Report",
    "SingleReport",
    "StreamResult",
    "StreamsReport",
    "SyncContext",
    "SyncResult",
]


class Outcome(enum.StrEnum):
    """How a run ended (``running`` until it does)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # a signal stopped it; what was committed stays


S = TypeVar("S")


class Report(Protocol):
    """What every command's result tells its caller (the CLI, the daemon)."""

    @property
    def outcome(self) -> str: ...  # an Outcome; "running" only if it never ended

    @property
    def errors(self) -> list[str]: ...  # one line per kind of failure


class LoadOutcome(Report, Protocol):
    """What a load run reports, whatever the destination."""

    @property
    def destination(self) -> str: ...

    @property
    def error(self) -> str | None: ...

    @property
    def ok(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class SyncContext(Generic[S]):
    """What a source type's ``sync_stream`` is given for one run of a source."""

    pool: Pool
    client: ApiClient
    source: S
    run_id: int
    full_refresh: bool


@dataclass
class StreamResult:
    stream: str
    outcome: str = "running"
    error: str | None = None
    error_kind: str | None = None  # the error's class: streams failing alike are reported once
    pages: int = 0
    records: int = 0
    upserted: int = 0
    rejected: int = 0
    resumed_after_pages: int | None = None
    watermark: datetime | None = None
    http: RequestStats = field(default_factory=RequestStats)
    committed_requests: int = 0  # requests already counted in stream_runs with their page
    deleted: int = 0  # rows marked deleted (MOCA scans)
    warning: str | None = None  # something the user should know, though the stream succeeded
    left: int | None = None  # records still to read after the last page stored (X-Total)


class SingleReport:
    """A run that ends with one outcome and at most one error (a load, a backfill)."""

    outcome: str
    error: str | None

    @property
    def errors(self) -> list[str]:
        return [self.error] if self.error else []

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.SUCCEEDED


class _PerStream(Protocol):
    stream: str
    outcome: str
    error: str | None
    error_kind: str | None
    warning: str | None


class StreamsReport:
    """A run over a source's streams (a sync, a sweep): it succeeded if every stream did."""

    source: str
    streams: Sequence[_PerStream]

    @property
    def ok(self) -> bool:
        return all(s.outcome == Outcome.SUCCEEDED for s in self.streams)

    @property
    def outcome_interrupted(self) -> bool:
        """A signal stopped it; what was committed stays, and the next run resumes."""
        return any(s.outcome == Outcome.INTERRUPTED for s in self.streams)

    @property
    def outcome(self) -> Outcome:
        if self.ok:
            return Outcome.SUCCEEDED
        return Outcome.INTERRUPTED if self.outcome_interrupted else Outcome.FAILED

    @property
    def errors(self) -> list[str]:
        """One line per kind of failure, in stream order, saying how many streams it hit.

        A dead host or a wrong key fails every stream alike: that is one problem, not eight.
        """
        kinds: dict[str, list[_PerStream]] = {}
        for s in self.streams:
            if s.error:
                kinds.setdefault(s.error_kind or s.error, []).append(s)
        lines = []
        for failed in kinds.values():
            first = failed[0]
            more = f" (and {len(failed) - 1} more streams alike)" if len(failed) > 1 else ""
            lines.append(f"{self.source}.{first.stream}: {first.error}{more}")
        return lines

    @property
    def warnings(self) -> list[str]:
        return [f"{self.source}.{s.stream}: {s.warning}" for s in self.streams if s.warning]


@dataclass
class SyncResult(StreamsReport):
    run_id: int
    source: str
    streams: list[StreamResult]
    elapsed_s: float
    http: RequestStats
