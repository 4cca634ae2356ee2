"""What ``syncer status`` shows: per stream, its position, last run, rows, freshness; per
destination model, what is pending, sent, dead-lettered, unanswered or held, and truncated.

Freshness is judged by the last successful sync alone: a quiet stream whose newest record is
weeks old is fresh if it synced recently, because no change at the source is not a fault. The
newest record's age is shown beside it, for the reader to judge.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncer.config import DEFAULT_STALE_AFTER_S, MoengageSettings
from syncer.sources.moca import api as moca
from syncer.sources.moco import api as moco
from syncer.store.tables import MOCA_SCHEMA, MOCO_SCHEMA


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


def format_age(seconds: float) -> str:
    """An age for people, at most two units, rounded down: "45s", "3m", "2h 5m", "4d 3h"."""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        (major, minor), units = divmod(whole // 60, 60), ("h", "m")
    else:
        (major, minor), units = divmod(whole // 3600, 24), ("d", "h")
    return f"{major}{units[0]}" + (f" {minor}{units[1]}" if minor else "")


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

    def to_json(self) -> dict[str, Any]:
        fresh = self.freshness
        return {
            "source": self.source,
            "stream": self.stream,
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
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _newest_column(table: str) -> str:
    """What dates a table's newest record: ``updated_at``; analytics rows by their bucket."""
    return "bucket_start" if table == "analytics" else "updated_at"


def warehouse_tables(source_type: str) -> tuple[str, list[str]]:
    """The schema of a source type and its tables, one per stream."""
    if source_type == "moca":
        return MOCA_SCHEMA, [*moca.STREAMS, "analytics"]
    return MOCO_SCHEMA, list(moco.STREAMS)


async def stream_statuses(
    conn: Any,
    source: str = "moco",
    source_type: str = "moco",
    *,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
    configured: Collection[str] | None = None,
    now: datetime | None = None,
) -> list[StreamStatus]:
    """Every table of the source type; only ``configured`` streams (None: all) can be stale.

    ``now`` defaults to the database's clock, the one ``last_success_at`` was written with.
    """
    schema, tables = warehouse_tables(source_type)
    if now is None:
        now = await conn.fetchval("select now()")
    counts, newest = {}, {}
    for name in tables:
        live = "true" if name == "analytics" else "_deleted_at is null"
        row = await conn.fetchrow(
            f"select count(*) as n, max({_newest_column(name)}) as newest"
            f' from "{schema}"."{name}" where {live}'
        )
        counts[name], newest[name] = row["n"], row["newest"]
        if name == "analytics":  # and the aggregates over a range (migration 0010)
            ranges = await conn.fetchrow(
                f'select count(*) as n, max(range_end) as newest from "{schema}".analytics_ranges'
            )
            counts[name] += ranges["n"]
            newest[name] = max((t for t in (newest[name], ranges["newest"]) if t), default=None)
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
        tables,
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


async def destination_status(conn: Any, settings: MoengageSettings) -> list[ModelStatus]:
    """Per model of the destination: pending, sent and dead letters by reason."""
    from syncer.destinations.moengage import models
    from syncer.store import loads

    counts = await loads.model_counts(conn, settings.name)
    hold = settings.on_lost_answer == "hold"
    last = await conn.fetchrow(
        "select counts from syncer.runs where kind = 'load' and source = $1"
        " and counts is not null order by id desc limit 1",
        settings.name,
    )
    last_counts = _json_object(last["counts"]) if last else {}
    truncated = last_counts.get("truncated") or {}
    duplicated = await conn.fetchval(
        "select coalesce(sum((counts->>'possibly_duplicated_events')::bigint), 0)"
        " from syncer.runs where kind = 'load' and source = $1",
        settings.name,
    )
    out = []
    for model in ("users", "devices", "events"):
        configured = getattr(settings, model)
        sql = models.model_sql(model, configured.sql if configured else None)
        try:
            pending = await conn.fetchval(
                f"select count(*) from ({loads.pending_query(model, sql, hold=hold)}) p",
                settings.name,
            )
        except Exception:  # a broken model is reported by `syncer load`, not here
            pending = -1
        examples = [
            f"{r['rule']}: {r['reason']}"
            for r in await conn.fetch(
                "select distinct on (rule) rule, reason from syncer.dead_letters"
                " where destination = $1 and model = $2 order by rule, last_at desc",
                settings.name,
                model,
            )
        ]
        out.append(
            ModelStatus(
                model,
                pending,
                counts[model]["sent"],
                counts[model]["dead_letters"],
                examples,
                unanswered=counts[model]["unanswered"],
                held=counts[model]["held"] if hold else 0,
                possibly_duplicated=int(duplicated) if model == "events" else 0,
                truncated={
                    label.split(".", 1)[1]: int(n)
                    for label, n in truncated.items()
                    if label.startswith(f"{model}.")
                },
            )
        )
    return out


def _json_object(value: Any) -> dict[str, Any]:
    import orjson

    parsed = orjson.loads(value) if isinstance(value, str | bytes) else value
    return parsed if isinstance(parsed, dict) else {}
