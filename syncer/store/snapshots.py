"""A report's rows per period: pulling a period again replaces exactly that period's rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from syncer.store.pages import Row
from syncer.store.types import Connection

__all__ = ["replace_period"]


async def replace_period(
    conn: Connection,
    schema: str,
    table: str,
    period: tuple[date, date],
    rows: Sequence[Row],
) -> int:
    """Replace ``period``'s rows of ``schema.table`` with ``rows`` (keyed by their natural
    key); the rows stored. Call it in a transaction: the old rows go only with the new ones."""
    target = f'"{schema}"."{table}"'
    await conn.execute(f"delete from {target} where period_start = $1 and period_end = $2", *period)
    if rows:
        await conn.copy_records_to_table(
            table,
            schema_name=schema,
            records=[(period[0], period[1], str(r.id), r.data) for r in rows],
            columns=["period_start", "period_end", "key", "data"],
        )
    return len(rows)
