"""Records that could not be stored, kept with the reason in ``syncer.rejected_records``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from syncer.store.types import Connection

__all__ = ["record_rejected"]


class Rejected(Protocol):
    """A record that cannot be stored (``syncer.extract.records.Rejected``), kept to inspect."""

    @property
    def reason(self) -> str: ...

    @property
    def record(self) -> str: ...


async def record_rejected(
    conn: Connection,
    run_id: int | None,
    source: str,
    stream: str,
    rejected: Sequence[Rejected],
    *,
    once: bool = False,
) -> None:
    """Keep ``rejected`` with their reasons. ``once``: a record already kept for the stream is
    not kept again (re-reading history must not count the same record twice)."""
    if not rejected:
        return
    guard = (
        " where not exists (select 1 from syncer.rejected_records"
        " where source = $2 and stream = $3 and record = $5)"
        if once
        else ""
    )
    await conn.executemany(
        "insert into syncer.rejected_records (run_id, source, stream, reason, record)"
        f" select $1::bigint, $2, $3, $4, $5{guard}",
        [(run_id, source, stream, r.reason, r.record) for r in rejected],
    )
