"""``syncer status`` for a MoEngage destination: per model, what is pending, sent,
dead-lettered, unanswered or held, and what the last load truncated."""

from __future__ import annotations

from syncer.destinations.moengage import models
from syncer.destinations.moengage.settings import MoengageSettings
from syncer.store import loads
from syncer.store.status import ModelStatus, json_object
from syncer.store.types import Connection

__all__ = ["destination_status"]


async def destination_status(conn: Connection, settings: MoengageSettings) -> list[ModelStatus]:
    """Per model of the destination: pending, sent and dead letters by reason."""
    counts = await loads.model_counts(conn, settings.name)
    hold = settings.on_lost_answer == "hold"
    last = await conn.fetchrow(
        "select counts from syncer.runs where kind = 'load' and source = $1"
        " and counts is not null order by id desc limit 1",
        settings.name,
    )
    last_counts = json_object(last["counts"]) if last else {}
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
