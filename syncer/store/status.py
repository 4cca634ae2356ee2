"""What ``syncer status`` shows: per stream, its position, last run, rows and lag; per
destination model, what is pending, sent and dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncer.config import MoengageSettings
from syncer.sources import moca, moco
from syncer.store.tables import MOCA_SCHEMA, MOCO_SCHEMA


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

    def to_json(self) -> dict[str, Any]:
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
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def warehouse_tables(source_type: str) -> tuple[str, list[str]]:
    """The schema of a source type and its tables, one per stream."""
    if source_type == "moca":
        return MOCA_SCHEMA, [*moca.STREAMS, "analytics"]
    return MOCO_SCHEMA, list(moco.STREAMS)


async def stream_statuses(
    conn: Any, source: str = "moco", source_type: str = "moco"
) -> list[StreamStatus]:
    schema, tables = warehouse_tables(source_type)
    counts = {}
    for name in tables:
        live = "true" if name == "analytics" else "_deleted_at is null"
        counts[name] = await conn.fetchval(f'select count(*) from "{schema}"."{name}" where {live}')
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

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "pending": self.pending,
            "sent": self.sent,
            "dead_letters": self.dead_letters,
            "examples": self.examples,
        }


async def destination_status(conn: Any, settings: MoengageSettings) -> list[ModelStatus]:
    """Per model of the destination: pending, sent and dead letters by reason."""
    from syncer.destinations import models
    from syncer.store import loads

    counts = await loads.model_counts(conn, settings.name)
    out = []
    for model in ("users", "devices", "events"):
        configured = getattr(settings, model)
        sql = models.model_sql(model, configured.sql if configured else None)
        try:
            pending = await conn.fetchval(
                f"select count(*) from ({loads.pending_query(model, sql)}) p", settings.name
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
            )
        )
    return out
