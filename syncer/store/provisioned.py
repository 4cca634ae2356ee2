"""Which layout of a source's tables and views each schema was provisioned with
(``syncer.provisioned``; ``warehouse.py`` decides what to make)."""

from __future__ import annotations

from syncer.store.types import Connection


async def fingerprint(conn: Connection, schema: str) -> str | None:
    """The layout digest ``schema`` was last provisioned with; None if never."""
    value = await conn.fetchval(
        "select fingerprint from syncer.provisioned where schema = $1", schema
    )
    return value if isinstance(value, str) else None


async def record(conn: Connection, schema: str, source_type: str, digest: str) -> None:
    """``schema`` now holds the layout ``digest`` of ``source_type``."""
    await conn.execute(
        """
        insert into syncer.provisioned (schema, source_type, fingerprint)
        values ($1, $2, $3)
        on conflict (schema) do update set source_type = excluded.source_type,
            fingerprint = excluded.fingerprint, provisioned_at = now()
        """,
        schema,
        source_type,
        digest,
    )


async def has_sync_state(conn: Connection, source: str) -> bool:
    """Whether ``source`` was ever synced (it has a row in ``syncer.streams``)."""
    return bool(
        await conn.fetchval("select exists (select from syncer.streams where source = $1)", source)
    )
