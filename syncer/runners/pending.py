"""The rows a load sends: each model's SQL checked, and its pending rows read, merged.

A model's pending rows are those its SQL returns that are not acknowledged as they are now,
nor dead-lettered as they are now (``store.loads.pending_query``). A load reads them in one
snapshot, every model's cursor at once, merged by the models' order expressions (byte order,
nulls last; ties go to the model listed first), so a destination's related rows (a user, its
devices, its events) go in the same bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg

from syncer.destinations.base import Model
from syncer.errors import ConfigError
from syncer.store import leases, loads
from syncer.store.types import Connection, Pool

__all__ = ["FETCH_ROWS", "check_model", "once", "pending_query", "pending_rows"]

FETCH_ROWS = 500


def once(models: Sequence[Model]) -> list[str]:
    """The models whose rows a second send may duplicate."""
    return [m.name for m in models if not m.idempotent]


def pending_query(model: Model, *, hold: bool = False) -> str:
    """The SQL of ``model``'s pending rows ($1: the destination)."""
    return loads.pending_query(
        model.name,
        model.sql,
        key=model.key,
        order=model.order or model.key,
        once=not model.idempotent,
        hold=hold,
    )


async def pending_rows(
    pool: Pool, destination: str, models: Sequence[Model], *, hold: bool = False
) -> AsyncIterator[tuple[Model, dict[str, Any]]]:
    """Every pending row of every model, merged by the models' order expressions.

    A model whose SQL fails while it runs (a cast of a bad value, a division by zero) is a
    ConfigError naming the model and the database's message."""
    # Released quietly: after a lost connection, the generator may be closed long after.
    conn = await pool.acquire()
    snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
    try:
        await snapshot.start()
        cursors = {}
        for model in models:
            with _model_errors(destination, model.name):
                query = pending_query(model, hold=hold)
                cursors[model.name] = await conn.cursor(query, destination)
        by_name = {m.name: m for m in models}
        rank = {m.name: i for i, m in enumerate(models)}
        buffers: dict[str, list[dict[str, Any]]] = {m: [] for m in cursors}
        done: set[str] = set()

        async def head(model: str) -> dict[str, Any] | None:
            if not buffers[model] and model not in done:
                with _model_errors(destination, model):
                    rows = await cursors[model].fetch(FETCH_ROWS)
                if len(rows) < FETCH_ROWS:
                    done.add(model)
                buffers[model] = [dict(r) for r in reversed(rows)]
            return buffers[model][-1] if buffers[model] else None

        while True:
            heads = {m: await head(m) for m in cursors}
            live = {m: r for m, r in heads.items() if r is not None}
            if not live:
                return

            def order(m: str, live: dict[str, dict[str, Any]] = live) -> tuple[bool, str, int]:
                value = live[m]["_order"]
                # The same order as the SQL's: byte order of the text, nulls last.
                return (value is None, "" if value is None else str(value), rank[m])

            first = min(live, key=order)
            yield by_name[first], buffers[first].pop()
    finally:
        await leases.release_quietly(pool, conn, snapshot)


# Failures of the database itself, not of a model's SQL: reported as such by the caller.
_NOT_THE_MODEL = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@contextmanager
def _model_errors(destination: str, model: str) -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresError as exc:
        if isinstance(exc, _NOT_THE_MODEL):
            raise
        raise ConfigError(
            f"destinations.{destination}.{model}.sql: the {model} model failed while running "
            f"({type(exc).__name__}: {exc}); fix the model's SQL, then load again (rows "
            "already acknowledged stay so)"
        ) from None


async def check_model(conn: Connection, destination: str, model: Model) -> tuple[str, ...]:
    """The optional columns the model has; ConfigError naming the column or the SQL error."""
    where = f"destinations.{destination}.{model.name}.sql"
    try:
        statement = await conn.prepare(f"select * from ({model.sql}) as model limit 0")
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"{where}: the query fails: {exc}; fix the SQL") from None
    found = {a.name: a.type.name for a in statement.get_attributes()}
    problems = []
    present = []
    for column in model.columns:
        kind = found.get(column.name)
        if kind is None:
            if column.required:
                problems.append(
                    f"{where}: no column {column.name!r}; the {model.name} model needs "
                    f"{', '.join(c.name for c in model.columns if c.required)}"
                )
            continue
        if kind not in column.types:
            problems.append(
                f"{where}: column {column.name!r} is {kind}; it must be one of "
                f"{', '.join(column.types)} (cast it, e.g. ::{column.types[0]})"
            )
            continue
        present.append(column)
    if problems:
        raise ConfigError(problems)
    return tuple(c.name for c in present if not c.required)
