"""What runs report: the one outcome enum, a sync's results per stream, a load's result, and
what a stream's reader is given.

Every run (sync, sweep, backfill, load, a daemon's job) ends in one :class:`Outcome`, which is
also what ``syncer.runs.outcome`` holds. ``Outcome`` is a ``str`` enum: it compares equal to
its value, so JSON documents and the database carry the plain word.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from syncer.http.client import RequestStats

if TYPE_CHECKING:
    from syncer.http.client import ApiClient
    from syncer.store.types import Pool

__all__ = [
    "BackfillProgress",
    "BackfillResult",
    "LoadOutcome",
    "LoadResult",
    "Outcome",
    "Report",
    "SingleReport",
    "StreamResult",
    "StreamSweep",
    "StreamVerify",
    "StreamsReport",
    "SweepResult",
    "SyncContext",
    "SyncResult",
    "VerifyResult",
    "Window",
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


@dataclass
class LoadResult(SingleReport):
    """What one run of the generic load (``syncer.runners.load``) did, updated as it goes."""

    destination: str
    dry_run: bool
    run_id: int | None = None
    outcome: str = "running"
    error: str | None = None
    body_sizes: list[int] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)  # per model
    dead_letters: Counter[str] = field(default_factory=Counter)  # per rule
    rejected_batches: int = 0
    possibly_duplicated: int = 0  # sends of rows an earlier unanswered send may have delivered
    held: int = 0  # rows held after an unanswered send
    truncated: Counter[str] = field(default_factory=Counter)  # "model.attribute" -> rows
    lowered_limits: dict[str, int] = field(default_factory=dict)  # after 429s: unit -> limit
    truncations: list[dict[str, str]] = field(default_factory=list)  # dry run: each cut
    rate_limited: int = 0
    server_errors: int = 0
    splits: int = 0
    waited_s: float = 0.0
    elapsed_s: float = 0.0
    models: tuple[str, ...] = ()  # the destination's models, in its order
    vendor: str = ""  # whom the destination sends to, for messages ("MoEngage")
    once: tuple[str, ...] = ()  # the models whose rows a second send may duplicate

    def to_json(self) -> dict[str, Any]:
        sizes = self.body_sizes
        return {
            "batches": len(sizes),
            "bytes": sum(sizes),
            "max_body_bytes": max(sizes, default=0),
            "mean_body_bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
            "sent": dict(self.sent),
            "dead_letters": dict(self.dead_letters),
            "rejected_batches": self.rejected_batches,
            "possibly_duplicated_events": self.possibly_duplicated,
            "held_events": self.held,
            "truncated": dict(self.truncated),
            "lowered_limits": dict(self.lowered_limits),
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "splits": self.splits,
        }


@dataclass
class StreamVerify:
    """One stream's completeness report while it is made."""

    stream: str
    outcome: str = "running"
    error: str | None = None
    error_kind: str | None = None
    warning: str | None = None
    method: str = "counts"  # counts, whole, parents, none
    verdict: str = "verified"  # verified, repaired, differs, not_verified
    source_count: int | None = None
    warehouse_count: int | None = None
    missing: int = 0  # records the source holds and the warehouse lacked
    extra: int = 0  # rows the warehouse held that the source no longer has
    repaired: int = 0  # of those, stored or marked deleted
    planned: int = 0  # the requests it was planned to cost, before it began
    http: RequestStats = field(default_factory=RequestStats)
    committed_requests: int = 0

    @property
    def unrepaired(self) -> int:
        return self.missing + self.extra - self.repaired

    # What the progress display and the daemon's metrics count per stream.
    @property
    def pages(self) -> int:
        return self.http.requests

    @property
    def records(self) -> int:
        return self.source_count or 0

    @property
    def upserted(self) -> int:
        return self.repaired

    @property
    def rejected(self) -> int:
        return 0

    left: int | None = None


@dataclass
class VerifyResult(StreamsReport):
    run_id: int
    source: str
    streams: list[StreamVerify]
    elapsed_s: float
    http: RequestStats
    planned: int  # requests the plan stated before it began (without repairs)
    repair: bool

    @property
    def unrepaired(self) -> list[StreamVerify]:
        """Streams whose differences were found and not all repaired."""
        return [s for s in self.streams if s.verdict == "differs"]

    @property
    def outcome(self) -> Outcome:
        """Failed, too, when differences are left (``--no-repair``, the deletion guard)."""
        outcome = super().outcome
        return Outcome.FAILED if outcome == Outcome.SUCCEEDED and self.unrepaired else outcome

    @property
    def errors(self) -> list[str]:
        left = [
            f"{s.stream} ({s.missing} missing, {s.extra} extra)"
            for s in self.unrepaired
            if s.outcome == Outcome.SUCCEEDED
        ]
        found = (
            [
                f"differences left unrepaired in {', '.join(left)}; "
                + ("run verify without --no-repair" if not self.repair else "see the warnings")
            ]
            if left
            else []
        )
        return super().errors + found


# --- sweeps and backfills --------------------------------------------------------------------


@dataclass
class StreamSweep:
    stream: str
    outcome: str = "running"
    error: str | None = None
    error_kind: str | None = None  # the error's class: streams failing alike are reported once
    checked: int = 0  # ids asked about (live and deleted rows)
    present: int = 0  # of those, listed by the source
    deleted: int = 0  # rows marked deleted
    restored: int = 0  # rows marked deleted that the source lists again
    withheld: int = 0  # missing ids the guard kept from being marked
    total: int | None = None  # ids to check, once counted
    warning: str | None = None
    http: RequestStats = field(default_factory=RequestStats)
    committed_requests: int = 0  # none counted before the stream's end (``finish_stream``)

    # What the daemon's metrics count per stream (observability.record_sync): records read,
    # rows written, records rejected.
    @property
    def records(self) -> int:
        return self.present

    @property
    def upserted(self) -> int:
        return self.restored

    @property
    def rejected(self) -> int:
        return 0


@dataclass
class SweepResult(StreamsReport):
    run_id: int
    source: str
    streams: list[StreamSweep]
    elapsed_s: float
    http: RequestStats


Window = tuple[datetime, datetime]  # a backfill's window: [start, end) of updated_at


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill stands; passed to the progress callback after every page."""

    source: str
    stream: str
    windows_total: int  # windows in the plan
    windows_skipped: int  # done before this backfill began
    windows_done: int  # finished by this backfill
    window: Window | None  # the window being read, if any
    pages: int  # pages stored by this backfill
    records: int
    upserted: int
    requests: int
    elapsed_s: float

    @property
    def windows_finished(self) -> int:
        """Windows that need no more reading: skipped plus done (the progress bar's value)."""
        return self.windows_skipped + self.windows_done

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class BackfillResult(SingleReport):
    backfill_id: int
    source: str
    stream: str
    range_start: datetime
    range_end: datetime
    windows_total: int = 0
    windows_skipped: int = 0  # already done when this backfill began
    windows_done: int = 0  # finished by this backfill
    pages: int = 0
    records: int = 0
    upserted: int = 0  # rows inserted or changed
    rejected: int = 0
    elapsed_s: float = 0.0
    outcome: str = "running"  # succeeded, failed, interrupted
    error: str | None = None
    http: RequestStats = field(default_factory=RequestStats)

    @property
    def requests(self) -> int:
        return self.http.requests
