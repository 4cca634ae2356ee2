"""The loader's state: pending rows (a diff against acknowledged sends), acks, dead letters,
and the in-flight journal that tells, after a crash, which events may have been sent twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KEY_EXPRESSIONS = {
    "users": "model.customer_id::text",
    "devices": "model.customer_id::text || chr(31) || model.device_id::text",
    "events": "model.event_key::text",
}


def pending_query(model: str, sql: str) -> str:
    """Rows of ``model`` not yet acknowledged as they are now and not dead-lettered as they are
    now, ordered by customer (byte order, the same as Python's) for merging. $1: destination.

    A row's hash is that of its whole model output, so any change of it counts as a change.
    Events are sent until acknowledged and never after, whatever their row becomes.
    """
    key = KEY_EXPRESSIONS[model]
    acked = "true" if model == "events" else "a.hash = h._hash"
    return f"""
        with model as ({sql}),
        hashed as (
            select model.*, md5(to_jsonb(model)::text) as _hash,
                   coalesce({key}, '#' || md5(to_jsonb(model)::text)) as _key
            from model
        )
        select h.* from hashed h
        where not exists (
            select 1 from syncer.acks a
            where a.destination = $1 and a.model = '{model}' and a.key = h._key and {acked})
          and not exists (
            select 1 from syncer.dead_letters d
            where d.destination = $1 and d.model = '{model}' and d.key = h._key
              and d.hash = h._hash)
        order by h.customer_id::text collate "C" nulls last, h._key collate "C"
    """


@dataclass(frozen=True)
class Ack:
    model: str
    key: str
    hash: str


@dataclass(frozen=True)
class DeadLetter:
    model: str
    key: str
    hash: str
    rule: str
    reason: str
    row: str  # the model's row as JSON


async def record_acks(
    conn: Any, destination: str, run_id: int, acks: Sequence[Ack], batches: Sequence[str]
) -> None:
    """The rows of an acknowledged request: acked, no longer dead, no longer in flight."""
    async with conn.transaction():
        await conn.executemany(
            """
            insert into syncer.acks (destination, model, key, hash, run_id)
            values ($1, $2, $3, $4, $5)
            on conflict (destination, model, key) do update
                set hash = excluded.hash, run_id = excluded.run_id, acked_at = now()
            """,
            [(destination, a.model, a.key, a.hash, run_id) for a in acks],
        )
        await conn.execute(
            """
            delete from syncer.dead_letters d using unnest($2::text[], $3::text[]) as k(model, key)
            where d.destination = $1 and d.model = k.model and d.key = k.key
            """,
            destination,
            [a.model for a in acks],
            [a.key for a in acks],
        )
        await forget_inflight(conn, destination, batches)


async def record_dead_letters(
    conn: Any, destination: str, run_id: int | None, letters: Sequence[DeadLetter]
) -> None:
    if not letters:
        return
    await conn.executemany(
        """
        insert into syncer.dead_letters
            (destination, model, key, hash, rule, reason, row, run_id)
        values ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
        on conflict (destination, model, key) do update set
            hash = excluded.hash, rule = excluded.rule, reason = excluded.reason,
            row = excluded.row, run_id = excluded.run_id, last_at = now()
        """,
        [(destination, d.model, d.key, d.hash, d.rule, d.reason, d.row, run_id) for d in letters],
    )


async def journal_inflight(
    conn: Any, destination: str, run_id: int, batch: str, rows: Sequence[tuple[str, str]]
) -> None:
    """Note (model, key) rows as sent in ``batch`` before the request leaves."""
    await conn.copy_records_to_table(
        "inflight",
        schema_name="syncer",
        columns=["destination", "batch", "model", "key", "run_id"],
        records=[(destination, batch, model, key, run_id) for model, key in rows],
    )


async def forget_inflight(conn: Any, destination: str, batches: Sequence[str]) -> None:
    await conn.execute(
        "delete from syncer.inflight where destination = $1 and batch = any($2::text[])",
        destination,
        list(batches),
    )


async def recover_inflight(conn: Any, destination: str) -> int:
    """Clear what a killed run left in flight; the number of events that may have arrived.

    Their rows were never acknowledged, so this run sends them again: users and devices are
    upserts (harmless), events may arrive twice (MoEngage does not deduplicate).
    """
    status: str = await conn.execute(
        "delete from syncer.inflight where destination = $1 and model = 'events'", destination
    )
    await conn.execute("delete from syncer.inflight where destination = $1", destination)
    return int(status.rsplit(" ", 1)[-1])


async def record_batch(
    conn: Any,
    *,
    run_id: int,
    destination: str,
    outcome: str,
    size: int,
    users: int,
    events: int,
    attempts: int,
    ambiguous: bool,
    request_id: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        """
        insert into syncer.load_batches
            (run_id, destination, outcome, bytes, users, events, attempts, ambiguous,
             request_id, error)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """,
        run_id,
        destination,
        outcome,
        size,
        users,
        events,
        attempts,
        ambiguous,
        request_id,
        error,
    )


async def model_counts(conn: Any, destination: str) -> dict[str, dict[str, Any]]:
    """Per model: rows acknowledged, and dead letters by rule."""
    out: dict[str, dict[str, Any]] = {
        m: {"sent": 0, "dead_letters": {}} for m in ("users", "devices", "events")
    }
    for r in await conn.fetch(
        "select model, count(*) as n from syncer.acks where destination = $1 group by model",
        destination,
    ):
        out.setdefault(r["model"], {"sent": 0, "dead_letters": {}})["sent"] = r["n"]
    for r in await conn.fetch(
        "select model, rule, count(*) as n from syncer.dead_letters where destination = $1"
        " group by model, rule order by model, rule",
        destination,
    ):
        out.setdefault(r["model"], {"sent": 0, "dead_letters": {}})["dead_letters"][r["rule"]] = r[
            "n"
        ]
    return out
