"""The loader's state: pending rows (a diff against acknowledged sends), acks, dead letters,
the in-flight journal that tells, after a crash, which rows may have been sent, and per key the
sends whose answer never came (``syncer.lost_answers``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KEY_EXPRESSIONS = {
    "users": "model.customer_id::text",
    "devices": "model.customer_id::text || chr(31) || model.device_id::text",
    "events": "model.event_key::text",
}


def pending_query(model: str, sql: str, *, hold: bool = False) -> str:
    """Rows of ``model`` not yet acknowledged as they are now and not dead-lettered as they are
    now, ordered by customer (byte order, the same as Python's) for merging. $1: destination.

    A row's hash is that of its whole model output, so any change of it counts as a change.
    Events are sent until acknowledged and never after, whatever their row becomes. With
    ``hold``, events with an unanswered send that was not released are left out.
    """
    key = KEY_EXPRESSIONS[model]
    acked = "true" if model == "events" else "a.hash = h._hash"
    held = ""
    if hold and model == "events":
        held = f"""
          and not exists (
            select 1 from syncer.lost_answers l
            where l.destination = $1 and l.model = '{model}' and l.key = h._key
              and not l.released)"""
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
              and d.hash = h._hash){held}
        order by h.customer_id::text collate "C" nulls last, h._key collate "C",
                 h._hash collate "C"
    """


DUPLICATE_KEY = "duplicate_key"  # the rule of a row whose key an earlier row of the run had


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
        # A later row of the same key, refused in this run as a duplicate, stays refused.
        await conn.execute(
            """
            delete from syncer.dead_letters d using unnest($2::text[], $3::text[]) as k(model, key)
            where d.destination = $1 and d.model = k.model and d.key = k.key
              and (d.rule <> $4 or d.run_id is distinct from $5)
            """,
            destination,
            [a.model for a in acks],
            [a.key for a in acks],
            DUPLICATE_KEY,
            run_id,
        )
        await conn.execute(
            """
            delete from syncer.lost_answers l using unnest($2::text[], $3::text[]) as k(model, key)
            where l.destination = $1 and l.model = k.model and l.key = k.key
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
    """Clear what a killed run left in flight, noting each of its events as sent once without
    an answer (``syncer.lost_answers``); returns 0.

    Their rows were never acknowledged, so they are sent again: users and devices are upserts
    (harmless), events may arrive twice (MoEngage does not deduplicate). Each such resend is
    counted as a possible duplicate when it happens, so nothing is counted here.
    """
    async with conn.transaction():
        await conn.execute(
            """
            insert into syncer.lost_answers as l (destination, model, key, sends, run_id)
            select destination, model, key, count(*), max(run_id) from syncer.inflight
            where destination = $1 and model = 'events'
            group by destination, model, key
            on conflict (destination, model, key) do update
                set sends = l.sends + excluded.sends, released = false, last_at = now()
            """,
            destination,
        )
        await conn.execute("delete from syncer.inflight where destination = $1", destination)
    return 0


async def note_lost_answer(
    conn: Any, destination: str, run_id: int, batch: str, keys: Sequence[str]
) -> None:
    """One send of each event key in ``keys`` got no answer: count it, hold it again (until
    released, if the destination holds such events), and clear the batch from the journal."""
    async with conn.transaction():
        await conn.execute(
            """
            insert into syncer.lost_answers as l (destination, model, key, sends, run_id)
            select $1, 'events', k, 1, $3 from unnest($2::text[]) as k
            on conflict (destination, model, key) do update
                set sends = l.sends + 1, released = false, run_id = excluded.run_id,
                    last_at = now()
            """,
            destination,
            list(keys),
            run_id,
        )
        await forget_inflight(conn, destination, [batch])


async def unanswered(conn: Any, destination: str, keys: Sequence[str]) -> int:
    """How many of the event ``keys`` were sent before without an answer: the events a send of
    them may duplicate."""
    count: int = await conn.fetchval(
        "select count(*) from syncer.lost_answers"
        " where destination = $1 and model = 'events' and key = any($2::text[])",
        destination,
        list(keys),
    )
    return count


async def release_held(conn: Any, destination: str) -> int:
    """Let the next load send the events held after unanswered sends; how many there were."""
    status: str = await conn.execute(
        "update syncer.lost_answers set released = true"
        " where destination = $1 and model = 'events' and not released",
        destination,
    )
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
    """Per model: rows acknowledged, dead letters by rule, keys with unanswered sends (and how
    many of them are held)."""
    out: dict[str, dict[str, Any]] = {
        m: {"sent": 0, "dead_letters": {}, "unanswered": 0, "held": 0}
        for m in ("users", "devices", "events")
    }
    for r in await conn.fetch(
        "select model, count(*) as n, count(*) filter (where not released) as held"
        " from syncer.lost_answers where destination = $1 group by model",
        destination,
    ):
        if r["model"] in out:
            out[r["model"]]["unanswered"] = r["n"]
            out[r["model"]]["held"] = r["held"]
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
