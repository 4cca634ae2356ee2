"""One MOCO webhook delivery applied to its warehouse row: the rule (pure) and the SQL.

MOCO does not guarantee the order of its webhooks and retries any it thinks failed, so a
delivery may arrive late, early or twice. Each row is therefore kept as the *join* of every
delivery seen for its id, which is the same whatever the order:

- its version (``updated_at``, ``data``) is the newest record seen, from create, update and
  delete bodies alike; a record never replaces a newer one (on equal ``updated_at`` the later
  arrival wins, as in polling, and the next poll settles it);
- it is deleted (``_deleted_at`` set) exactly when the newest deletion time is not before that
  version: a delete at time D marks the row unless it was updated after D, and a record newer
  than ``_deleted_at`` restores the row (an older one does not resurrect it).

A delete for an id the table has never seen inserts the row already deleted, with the delete's
body as its data, so that an older create or update arriving later cannot resurrect it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncer.store.types import Connection


@dataclass(frozen=True)
class Change:
    """What one verified delivery says about one record."""

    id: int
    deleted: bool  # a delete event
    # The record's version: its ``updated_at``; for create and update, the event time when the
    # body carries none (so that ordering still holds); for a delete body without one, None.
    updated_at: datetime | None
    event_at: datetime  # X-Moco-Timestamp
    data: str  # the body as JSON text

    @property
    def deleted_at(self) -> datetime:
        """When a delete happened: its event time, and never before its body's last update
        (so that a delete body never counts as an update made after the deletion)."""
        if self.updated_at is not None and self.updated_at > self.event_at:
            return self.updated_at
        return self.event_at


@dataclass(frozen=True)
class RowState:
    """The stored row, as far as the rule needs it."""

    updated_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class Merged:
    """The row after a change: its version, whether the change's data is taken, its deletion."""

    updated_at: datetime | None
    take_data: bool
    deleted_at: datetime | None


def merge(row: RowState | None, change: Change) -> Merged:
    """The row after ``change`` (see the module docstring); ``row`` None means no row yet."""
    if row is None:
        return Merged(change.updated_at, True, change.deleted_at if change.deleted else None)
    take = row.updated_at is None or (
        change.updated_at is not None and change.updated_at >= row.updated_at
    )
    version = change.updated_at if take else row.updated_at
    deleted_at: datetime | None
    if change.deleted:
        at = change.deleted_at
        if version is not None and version > at:
            deleted_at = row.deleted_at  # updated after the deletion: not deleted by it
        else:
            deleted_at = at if row.deleted_at is None else max(at, row.deleted_at)
    else:
        restored = row.deleted_at is not None and version is not None and version > row.deleted_at
        deleted_at = None if restored else row.deleted_at
    return Merged(version, take, deleted_at)


async def apply_change(
    conn: Connection,
    schema: str,
    table: str,
    change: Change,
    volatile: tuple[str, ...] = (),
    *,
    parent: str | None = None,
    per_parent: bool = False,
) -> bool:
    """Apply ``change`` to ``<schema>.<table>`` (the source's schema) in one short transaction;
    True if the row changed.

    The row is locked while the rule decides, so concurrent deliveries for one id serialize.
    ``volatile`` keys (invoices' signed ``file_url``) do not count as a change of data.
    """
    target = f'"{schema}"."{table}"'
    # A per-parent list's row keeps its parent's id: the body's where it names it, else the
    # row's own (a new row without one gets it from the next sync).
    parent_column = ", _parent_id" if per_parent else ""
    parent_value = ", $5::bigint" if per_parent else ""
    parent_args = [int(parent) if parent is not None else None] if per_parent else []
    async with conn.transaction():
        fresh = merge(None, change)
        inserted = await conn.fetchval(
            f"insert into {target} (id, updated_at, data, _synced_at, _deleted_at{parent_column})"
            f" values ($1, $2, $3::jsonb, now(), $4{parent_value})"
            " on conflict (id) do nothing returning true",
            change.id,
            fresh.updated_at,
            change.data,
            fresh.deleted_at,
            *parent_args,
        )
        if inserted:
            return True
        row = await conn.fetchrow(
            f"select updated_at, _deleted_at from {target} where id = $1 for update", change.id
        )
        assert row is not None  # inserted or present: the insert conflicted on it
        merged = merge(RowState(row["updated_at"], row["_deleted_at"]), change)
        keep_parent = ", _parent_id = coalesce($7::bigint, _parent_id)" if per_parent else ""
        status: str = await conn.execute(
            f"""
            update {target} set
                updated_at = $2,
                data = case when $4 then $3::jsonb else data end,
                _deleted_at = $5,
                _synced_at = now(){keep_parent}
            where id = $1
              and (updated_at is distinct from $2
                   or _deleted_at is distinct from $5
                   or ($4 and (data - $6::text[]) is distinct from ($3::jsonb - $6::text[])))
            """,
            change.id,
            merged.updated_at,
            change.data,
            merged.take_data,
            merged.deleted_at,
            list(volatile),
            *parent_args,
        )
    return status == "UPDATE 1"
