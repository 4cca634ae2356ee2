"""The loader's state: pending rows (a diff against acknowledged sends), acks, dead letters,
the in-flight journal that tells, after a crash, which rows may have been sent, per key the
sends whose answer never came (``syncer.lost_answers``), and each load run's counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from syncer.store.status import json_object
from syncer.store.types import Connection


def pending_query(
    model: str, sql: str, *, key: str, order: str, once: bool = False, hold: bool = False
) -> str:
    """Rows of ``model`` not yet acknowledged as they are now and not dead-lettered as they are
    now, ordered by ``order`` (byte order, the same as Python's; nulls last) for merging, with
    that value as ``_order``. $1: destination. ``key`` and ``order`` are SQL expressions over
    the model's row (``model.<column>``), given by the destination.

    A row's hash is that of its whole model output, so any change of it counts as a change.
    Rows of a model sent ``once`` are sent until acknowledged and never after, whatever their
    row becomes. With ``hold``, such rows with an unanswered send that was not released are
    left out.
    """
    acked = "true" if once else "a.hash = h._hash"
    held = ""
    if hold and once:
        held = f"""
          and not exists (
            select 1 from syncer.lost_answers l
            where l.destination = $1 and l.model = '{model}' and l.key = h._key
              and not l.released)"""
    return f"""
        with model as ({sql}),
        hashed as (
            select model.*, md5(to_jsonb(model)::text) as _hash,
                   coalesce({key}, '#' || md5(to_jsonb(model)::text)) as _key,
                   ({order})::text as _order
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
        order by h._order collate "C" nulls last, h._key collate "C",
                 h._hash collate "C"
    """


async def count_pending(conn: Connection, destination: str, query: str) -> int:
    """How many rows the pending-rows ``query`` (:func:`pending_query`) returns."""
    count: int = await conn.fetchval(f"select count(*) from ({query}) p", destination)
    return count


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
    conn: Connection, destination: str, run_id: int, acks: Sequence[Ack], batches: Sequence[str]
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
    conn: Connection, destination: str, run_id: int | None, letters: Sequence[DeadLetter]
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
    conn: Connection, destination: str, run_id: int, batch: str, rows: Sequence[tuple[str, str]]
) -> None:
    """Note (model, key) rows as sent in ``batch`` before the request leaves."""
    await conn.copy_records_to_table(
        "inflight",
        schema_name="syncer",
        columns=["destination", "batch", "model", "key", "run_id"],
        records=[(destination, batch, model, key, run_id) for model, key in rows],
    )


async def forget_inflight(conn: Connection, destination: str, batches: Sequence[str]) -> None:
    await conn.execute(
        "delete from syncer.inflight where destination = $1 and batch = any($2::text[])",
        destination,
        list(batches),
    )


async def recover_inflight(conn: Connection, destination: str, once: Sequence[str]) -> None:
    """Clear what a killed run left in flight, noting each of its rows of the models ``once``
    (those a second send may duplicate) as sent once without an answer
    (``syncer.lost_answers``).

    Their rows were never acknowledged, so they are sent again: for the other models that is
    harmless (upserts), these may arrive twice. Each such resend is counted as a possible
    duplicate when it happens, so nothing is counted here.
    """
    async with conn.transaction():
        await conn.execute(
            """
            insert into syncer.lost_answers as l (destination, model, key, sends, run_id)
            select destination, model, key, count(*), max(run_id) from syncer.inflight
            where destination = $1 and model = any($2::text[])
            group by destination, model, key
            on conflict (destination, model, key) do update
                set sends = l.sends + excluded.sends, released = false, last_at = now()
            """,
            destination,
            list(once),
        )
        await conn.execute("delete from syncer.inflight where destination = $1", destination)


async def note_lost_answer(
    conn: Connection, destination: str, run_id: int, batch: str, rows: Sequence[tuple[str, str]]
) -> None:
    """One send of each (model, key) in ``rows`` got no answer: count it, hold it again (until
    released, if the destination holds such rows), and clear the batch from the journal."""
    async with conn.transaction():
        await conn.execute(
            """
            insert into syncer.lost_answers as l (destination, model, key, sends, run_id)
            select $1, k.model, k.key, 1, $3 from unnest($2::text[], $4::text[]) as k(model, key)
            on conflict (destination, model, key) do update
                set sends = l.sends + 1, released = false, run_id = excluded.run_id,
                    last_at = now()
            """,
            destination,
            [model for model, _key in rows],
            run_id,
            [key for _model, key in rows],
        )
        await forget_inflight(conn, destination, [batch])


async def unanswered(conn: Connection, destination: str, rows: Sequence[tuple[str, str]]) -> int:
    """How many of the (model, key) ``rows`` were sent before without an answer: the rows a
    send of them may duplicate."""
    count: int = await conn.fetchval(
        "select count(*) from syncer.lost_answers l"
        " join unnest($2::text[], $3::text[]) as k(model, key)"
        " on l.model = k.model and l.key = k.key"
        " where l.destination = $1",
        destination,
        [model for model, _key in rows],
        [key for _model, key in rows],
    )
    return count


async def release_held(conn: Connection, destination: str) -> int:
    """Let the next load send the rows held after unanswered sends; how many there were."""
    status: str = await conn.execute(
        "update syncer.lost_answers set released = true where destination = $1 and not released",
        destination,
    )
    return int(status.rsplit(" ", 1)[-1])


async def record_batch(
    conn: Connection,
    *,
    run_id: int,
    destination: str,
    outcome: str,
    size: int,
    units: Mapping[str, int],
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
        units.get("users", 0),  # the columns name MoEngage's units; other units are not kept
        units.get("events", 0),
        attempts,
        ambiguous,
        request_id,
        error,
    )


async def model_counts(
    conn: Connection, destination: str, models: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per model: rows acknowledged, dead letters by rule, keys with unanswered sends (and how
    many of them are held)."""
    out: dict[str, dict[str, Any]] = {
        m: {"sent": 0, "dead_letters": {}, "unanswered": 0, "held": 0} for m in models
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


async def record_run_counts(conn: Connection, run_id: int, counts: Mapping[str, Any]) -> None:
    """What the load run ``run_id`` did (``syncer.runs.counts``)."""
    await conn.execute(
        "update syncer.runs set counts = $2::jsonb where id = $1",
        run_id,
        orjson.dumps(counts).decode(),
    )


async def last_run_counts(conn: Connection, destination: str) -> dict[str, Any]:
    """The counts of the last load of ``destination`` that recorded any; empty if none did."""
    last = await conn.fetchrow(
        "select counts from syncer.runs where kind = 'load' and source = $1"
        " and counts is not null order by id desc limit 1",
        destination,
    )
    return json_object(last["counts"]) if last else {}


async def possibly_duplicated(conn: Connection, destination: str) -> int:
    """Sends counted as possible duplicates by every load of ``destination``."""
    total = await conn.fetchval(
        "select coalesce(sum((counts->>'possibly_duplicated_events')::bigint), 0)"
        " from syncer.runs where kind = 'load' and source = $1",
        destination,
    )
    return int(total)


async def dead_letter_examples(conn: Connection, destination: str, model: str) -> list[str]:
    """One reason per rule of the model's dead letters, the newest (``rule: reason``)."""
    return [
        f"{r['rule']}: {r['reason']}"
        for r in await conn.fetch(
            "select distinct on (rule) rule, reason from syncer.dead_letters"
            " where destination = $1 and model = $2 order by rule, last_at desc",
            destination,
            model,
        )
    ]
