"""What ``syncer status`` shows: per stream, its position, last run, rows, freshness; per
destination model, what is pending, sent, dead-lettered, unanswered or held, and truncated.

Freshness is judged by the last successful sync alone: a quiet stream whose newest record is
weeks old is fresh if it synced recently, because no change at the source is not a fault. The
newest record's age is shown beside it, for the reader to judge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncer.durations import format_age
from syncer.store.types import Connection
from syncer.store.verify import Verification


@dataclass(frozen=True)
class Freshness:
    """How old a stream's data is, at one moment."""

    newest_record_age_s: float | None  # None: no live rows
    since_success_s: float | None  # None: never synced successfully
    stale: bool
    stale_after_s: float
    expected: bool = True  # False: the source does not sync this stream, so it is never stale


def freshness(
    now: datetime,
    newest_record_at: datetime | None,
    last_success_at: datetime | None,
    stale_after_s: float,
    *,
    expected: bool = True,
) -> Freshness:
    """The ages at ``now``; stale when the last success is older than ``stale_after_s`` or
    there never was one. A stream not ``expected`` to sync (not configured) is never stale.

    Ages are clamped at zero: a record stamped by a vendor clock ahead of ours is new, not
    negative-aged.
    """
    newest = _age(now, newest_record_at)
    since = _age(now, last_success_at)
    stale = expected and (since is None or since > stale_after_s)
    return Freshness(newest, since, stale, stale_after_s, expected)


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


@dataclass(frozen=True)
class StreamStatus:
    source: str
    stream: str
    watermark: datetime | None
    in_progress: bool  # an interrupted walk will resume
    last_success_at: datetime | None
    last_run_outcome: str | None
    last_run_at: datetime | None
    last_error: str | None
    rows: int
    rejected: int
    newest_record_at: datetime | None
    freshness: Freshness
    verifiable: bool = False  # `syncer verify` can compare it with the source
    verification: Verification | None = None  # its latest completeness report
    configured: bool = True  # the configuration syncs it

    @property
    def shown(self) -> bool:
        """Whether the status table lists it: configured, or holding anything (rows, a run)."""
        return self.configured or self.rows > 0 or self.last_run_at is not None

    def to_json(self) -> dict[str, Any]:
        fresh = self.freshness
        check = self.verification
        return {
            "source": self.source,
            "stream": self.stream,
            "configured": self.configured,
            "watermark": _iso(self.watermark),
            "in_progress": self.in_progress,
            "last_success_at": _iso(self.last_success_at),
            "last_run_outcome": self.last_run_outcome,
            "last_run_at": _iso(self.last_run_at),
            "last_error": self.last_error,
            "rows": self.rows,
            "rejected": self.rejected,
            "newest_record_at": _iso(self.newest_record_at),
            "newest_record_age_s": _seconds(fresh.newest_record_age_s),
            "since_success_s": _seconds(fresh.since_success_s),
            "stale": fresh.stale,
            "stale_after_s": fresh.stale_after_s,
            "verifiable": self.verifiable,
            "verified_at": _iso(check.verified_at) if check else None,
            "verified": check.outcome if check else None,
            "verify_source_count": check.source_count if check else None,
            "verify_warehouse_count": check.warehouse_count if check else None,
            "verify_missing": check.missing if check else None,
            "verify_extra": check.extra if check else None,
            "verify_repaired": check.repaired if check else None,
            "verify_unrepaired": check.unrepaired if check else None,
        }

    def unverified(self, now: datetime, max_age_s: float) -> str | None:
        """Why ``--fail-if-unverified`` fails this stream (never verified, not within
        ``max_age_s``, or differences left unrepaired), or None."""
        if not self.verifiable or not self.freshness.expected:
            return None
        check = self.verification
        if check is None or check.verified_at is None:
            return "never verified"
        if check.outcome in ("differs", "failed"):
            return f"its last verify {check.outcome}"
        if (now - check.verified_at).total_seconds() > max_age_s:
            return f"last verified {format_age((now - check.verified_at).total_seconds())} ago"
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


CountRows = Callable[[Connection, str, str], Awaitable[tuple[int, datetime | None]]]


async def record_counts(conn: Connection, schema: str, stream: str) -> tuple[int, datetime | None]:
    """A record table's live rows and its newest record's ``updated_at`` (none while the table
    is not made yet: a stream new to this release, before its source's first sync)."""
    if await conn.fetchval("select to_regclass($1)", f'"{schema}"."{stream}"') is None:
        return 0, None
    row = await conn.fetchrow(
        f'select count(*) as n, max(updated_at) as newest from "{schema}"."{stream}"'
        " where _deleted_at is null"
    )
    assert row is not None
    return row["n"], row["newest"]


async def snapshot_counts(
    conn: Connection, schema: str, stream: str
) -> tuple[int, datetime | None]:
    """A report's rows (every period) and when the newest of them was pulled."""
    if await conn.fetchval("select to_regclass($1)", f'"{schema}"."{stream}"') is None:
        return 0, None
    row = await conn.fetchrow(
        f'select count(*) as n, max(_synced_at) as newest from "{schema}"."{stream}"'
    )
    assert row is not None
    return row["n"], row["newest"]


async def no_rows(conn: Connection, schema: str, stream: str) -> tuple[int, datetime | None]:
    """The counts of a table that does not exist yet (a source never synced)."""
    return 0, None


async def stream_statuses(
    conn: Connection,
    source: str,
    schema: str,
    tables: Sequence[str],
    *,
    count_rows: CountRows | None = None,
    stale_after_s: float,
    configured: Collection[str] | None = None,
    now: datetime | None = None,
) -> list[StreamStatus]:
    """Every table of the source (``tables`` in ``schema``); only ``configured`` streams (None:
    all) can be stale. ``count_rows`` counts a table's rows (default: :func:`record_counts`).

    ``now`` defaults to the database's clock, the one ``last_success_at`` was written with.
    """
    count = count_rows or record_counts
    if now is None:
        now = await conn.fetchval("select now()")
    counts, newest = {}, {}
    for name in tables:
        counts[name], newest[name] = await count(conn, schema, name)
    rows = await conn.fetch(
        """
        select n.stream, s.watermark, s.walk is not null as in_progress, s.last_success_at,
               r.outcome, r.started_at, r.error,
               (select count(*) from syncer.rejected_records j
                 where j.source = $1 and j.stream = n.stream) as rejected
        from unnest($2::text[]) as n(stream)
        left join syncer.streams s on s.source = $1 and s.stream = n.stream
        left join lateral (
            select sr.outcome, sr.started_at, sr.error from syncer.stream_runs sr
            join syncer.runs ru on ru.id = sr.run_id and ru.source = $1
            where sr.stream = n.stream order by sr.started_at desc limit 1
        ) r on true
        order by n.stream
        """,
        source,
        list(tables),
    )
    return [
        StreamStatus(
            source=source,
            stream=r["stream"],
            watermark=r["watermark"],
            in_progress=bool(r["in_progress"]),
            last_success_at=r["last_success_at"],
            last_run_outcome=r["outcome"],
            last_run_at=r["started_at"],
            last_error=r["error"],
            rows=counts[r["stream"]],
            rejected=r["rejected"],
            newest_record_at=newest[r["stream"]],
            freshness=freshness(
                now,
                newest[r["stream"]],
                r["last_success_at"],
                stale_after_s,
                expected=configured is None or r["stream"] in configured,
            ),
            configured=configured is None or r["stream"] in configured,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ModelStatus:
    model: str
    pending: int  # rows the next load would consider (new, changed, or retried dead letters)
    sent: int  # rows acknowledged by the destination
    dead_letters: dict[str, int]  # rule -> rows
    examples: list[str]  # one reason per rule, to show what went wrong
    unanswered: int = 0  # keys not acknowledged yet with a send that got no answer
    held: int = 0  # of those, held for `syncer load --release-held` (on_lost_answer = "hold")
    possibly_duplicated: int = 0  # events: sends counted as possible duplicates, all runs
    truncated: dict[str, int] = field(default_factory=dict)  # the last load: attribute -> rows

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pending": self.pending,
            "sent": self.sent,
            "dead_letters": self.dead_letters,
            "examples": self.examples,
            "unanswered": self.unanswered,
            "held": self.held,
            "possibly_duplicated": self.possibly_duplicated,
            "truncated": self.truncated,
        }


def json_object(value: Any) -> dict[str, Any]:
    import orjson

    parsed = orjson.loads(value) if isinstance(value, str | bytes) else value
    return parsed if isinstance(parsed, dict) else {}
